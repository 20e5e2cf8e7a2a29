/* otaflow-enc/v1 known-size decoder (docs/envelope.md §1). */
#include <string.h>

#include "ota_envelope.h"

static const uint8_t magic[8] = {'O', 'T', 'A', 'F', 'L', 'O', 'W', 0x01};
static const char info_commit[] = "otaflow-enc/v1 commit";
static const char info_payload[] = "otaflow-enc/v1 payload";

/* Chunk counters stay below 2^40 (§1.4). */
#define MAX_CHUNKS ((uint64_t)1 << 40)

int ota_env_parse_header(const uint8_t hdr[OTA_ENV_HEADER_SIZE], unsigned *chunk_log2)
{
	if (memcmp(hdr, magic, 7) != 0 || hdr[7] != 0x01)
		return OTA_ERR_FORMAT;
	if (hdr[8] != 0x01 || hdr[9] < OTA_ENV_MIN_LOG2 || hdr[9] > OTA_ENV_MAX_LOG2)
		return OTA_ERR_UNSUPPORTED;
	if (chunk_log2)
		*chunk_log2 = hdr[9];
	return OTA_OK;
}

int ota_env_plain_size(unsigned chunk_log2, uint64_t enc_size, uint64_t *n_chunks, uint64_t *plain_size)
{
	uint64_t c, body, full, rem, n, p;
	if (chunk_log2 < OTA_ENV_MIN_LOG2 || chunk_log2 > OTA_ENV_MAX_LOG2)
		return OTA_ERR_UNSUPPORTED;
	if (enc_size < OTA_ENV_HEADER_SIZE + OTA_ENV_TAG_SIZE)
		return OTA_ERR_FORMAT;
	c = (uint64_t)1 << chunk_log2;
	body = enc_size - OTA_ENV_HEADER_SIZE;
	full = body / (c + OTA_ENV_TAG_SIZE);
	rem = body % (c + OTA_ENV_TAG_SIZE);
	if (rem == 0) {
		n = full;
		p = full * c;
	} else if (rem < OTA_ENV_TAG_SIZE || (rem == OTA_ENV_TAG_SIZE && full > 0)) {
		return OTA_ERR_FORMAT;
	} else {
		n = full + 1;
		p = full * c + (rem - OTA_ENV_TAG_SIZE);
	}
	if (n > MAX_CHUNKS)
		return OTA_ERR_FORMAT;
	if (n_chunks)
		*n_chunks = n;
	if (plain_size)
		*plain_size = p;
	return OTA_OK;
}

void ota_env_derive(const uint8_t key[32], const uint8_t salt[16], uint8_t commitment[32], uint8_t payload_key[32])
{
	uint8_t prk[32];
	const uint8_t *ikm[1];
	size_t ikm_len[1] = {32};
	const uint8_t *info[1];
	size_t info_len[1];
	ikm[0] = key;
	ota_hkdf_extract(salt, 16, ikm, ikm_len, 1, prk);
	info[0] = (const uint8_t *)info_commit;
	info_len[0] = sizeof info_commit - 1;
	ota_hkdf_expand(prk, info, info_len, 1, commitment, 32);
	info[0] = (const uint8_t *)info_payload;
	info_len[0] = sizeof info_payload - 1;
	ota_hkdf_expand(prk, info, info_len, 1, payload_key, 32);
	memset(prk, 0, sizeof prk);
}

int ota_env_init(ota_env_dec *d, const uint8_t hdr[OTA_ENV_HEADER_SIZE], const uint8_t key[32], uint64_t enc_size,
                 uint64_t start_chunk, uint8_t *buf, size_t buf_cap)
{
	uint8_t commitment[32], pk[32];
	int r;
	if (!d || !hdr || !key || !buf)
		return OTA_ERR_ARG;
	memset(d, 0, sizeof *d);
	d->err = OTA_ERR_ARG; /* until initialized */
	if ((r = ota_env_parse_header(hdr, &d->chunk_log2)) != OTA_OK)
		return d->err = r;
	if ((r = ota_env_plain_size(d->chunk_log2, enc_size, &d->n_chunks, &d->plain_size)) != OTA_OK)
		return d->err = r;
	if (buf_cap < ota_env_buf_size(d->chunk_log2))
		return d->err = OTA_ERR_BUFFER;
	if (start_chunk >= d->n_chunks)
		return d->err = OTA_ERR_ARG;
	ota_env_derive(key, hdr + 10, commitment, pk);
	if (!ota_ct_equal(commitment, hdr + 26, 32)) {
		memset(pk, 0, sizeof pk);
		return d->err = OTA_ERR_WRONG_KEY;
	}
	r = ota_gcm_init(&d->gcm, pk);
	memset(pk, 0, sizeof pk);
	if (r != OTA_OK)
		return d->err = r;
	d->gcm_ready = 1;
	memcpy(d->header, hdr, OTA_ENV_HEADER_SIZE);
	d->next = start_chunk;
	d->buf = buf;
	d->buf_cap = buf_cap;
	d->err = OTA_OK;
	return OTA_OK;
}

uint64_t ota_env_chunk_offset(const ota_env_dec *d, uint64_t i)
{
	return OTA_ENV_HEADER_SIZE + i * (((uint64_t)1 << d->chunk_log2) + OTA_ENV_TAG_SIZE);
}

/* The sealed length of chunk i: C + 16 except for the last one. */
static size_t sealed_len(const ota_env_dec *d, uint64_t i)
{
	uint64_t c = (uint64_t)1 << d->chunk_log2;
	if (i + 1 < d->n_chunks)
		return (size_t)(c + OTA_ENV_TAG_SIZE);
	return (size_t)(d->plain_size - (d->n_chunks - 1) * c + OTA_ENV_TAG_SIZE);
}

static int open_chunk(ota_env_dec *d, ota_env_sink sink, void *arg)
{
	uint8_t nonce[12];
	uint64_t i = d->next;
	size_t len = d->fill - OTA_ENV_TAG_SIZE;
	int k, r;
	/* nonce = i as 11-byte big-endian ‖ last flag */
	memset(nonce, 0, sizeof nonce);
	for (k = 0; k < 8; k++)
		nonce[10 - k] = (uint8_t)(i >> (8 * k));
	nonce[11] = i + 1 == d->n_chunks ? 1 : 0;
	r = ota_gcm_open(&d->gcm, nonce, d->header, OTA_ENV_HEADER_SIZE, d->buf, len, d->buf + len);
	if (r != OTA_OK)
		return r;
	/* Only the empty blob has an empty (last) chunk; the size formula
	 * already refuses one after a full chunk. */
	if (len == 0 && i > 0)
		return OTA_ERR_FORMAT;
	d->next++;
	d->fill = 0;
	if (sink && (r = sink(arg, i, d->buf, len)) != 0)
		return r;
	return OTA_OK;
}

int ota_env_feed(ota_env_dec *d, const uint8_t *p, size_t n, ota_env_sink sink, void *arg)
{
	if (!d)
		return OTA_ERR_ARG;
	if (d->err)
		return d->err;
	while (n > 0) {
		size_t want, take;
		int r;
		if (d->next >= d->n_chunks)
			return d->err = OTA_ERR_TRAILING;
		want = sealed_len(d, d->next) - d->fill;
		take = n < want ? n : want;
		memcpy(d->buf + d->fill, p, take);
		d->fill += take;
		p += take;
		n -= take;
		if (d->fill == sealed_len(d, d->next) && (r = open_chunk(d, sink, arg)) != OTA_OK)
			return d->err = r;
	}
	return OTA_OK;
}

int ota_env_finish(ota_env_dec *d)
{
	if (!d)
		return OTA_ERR_ARG;
	if (d->err)
		return d->err;
	if (d->next < d->n_chunks)
		return d->err = OTA_ERR_TRUNCATED;
	return OTA_OK;
}

void ota_env_free(ota_env_dec *d)
{
	if (!d)
		return;
	if (d->gcm_ready)
		ota_gcm_free(&d->gcm);
	d->gcm_ready = 0;
	if (d->buf)
		memset(d->buf, 0, d->buf_cap);
}
