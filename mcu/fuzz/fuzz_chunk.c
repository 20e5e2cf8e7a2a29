/*
 * libFuzzer target: the chunk decoder (ota_env_init/feed/finish) on a
 * mutated valid blob.
 *
 * At start-up a 3-chunk blob (C = 1 KiB, last chunk short) is sealed here
 * with mbedTLS directly, from docs/envelope.md §1.3-1.5, independently of
 * the library. The input then describes a mutation:
 *
 *   [0]  bits 0-1 declared size (0: the blob's, 1: the mutated length,
 *        2: one more, 3: one less), bits 2-3 start chunk (resume; 3 = 0),
 *        bits 4-6 the feed split (piece size limit), bit 7 unused
 *   [1]  split seed
 *   then operations of 4 bytes, op = byte % 6:
 *        0 xor a byte, 1 truncate, 2 insert bytes, 3 swap chunks 0 and 1,
 *        4 duplicate a chunk, 5 delete a chunk
 *
 * The decoder must never crash, must release only plaintext equal to the
 * original chunk at that index, in order, and must accept exactly the
 * unmodified blob.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/gcm.h>
#include <mbedtls/md.h>

#include "fuzz.h"
#include "ota_envelope.h"



#define LOG2 10
#define C (1u << LOG2)
#define S (C + OTA_ENV_TAG_SIZE)
#define NCHUNKS 3
#define PLAIN (2 * C + 700)
#define BLOB (OTA_ENV_HEADER_SIZE + PLAIN + NCHUNKS * OTA_ENV_TAG_SIZE)
#define WORK_MAX (4 * BLOB)

static const uint8_t key[32] = {0x3c, 0x11, 0x8e, 0x42, 0x07, 0xd9, 0x65, 0xa0, 0x5b, 0x2e, 0xf4,
                                0x90, 0x13, 0x77, 0xc8, 0x2a, 0x61, 0x0f, 0xbd, 0x54, 0x98, 0xe3,
                                0x26, 0x7a, 0x4d, 0xb1, 0x09, 0xee, 0x35, 0x82, 0xcf, 0x1b};
static const uint8_t salt[16] = {0xa5, 0x5a, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e};

static uint8_t plain[PLAIN];
static uint8_t blob[BLOB];

static void hmac(const uint8_t *k, size_t kl, const uint8_t *m, size_t ml, uint8_t out[32])
{
	REQUIRE(mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), k, kl, m, ml, out) == 0);
}

/* HKDF-SHA256 with 32 bytes of output: one HMAC block (§1.3). */
static void expand(const uint8_t prk[32], const char *info, uint8_t out[32])
{
	uint8_t m[64];
	size_t n = strlen(info);
	memcpy(m, info, n);
	m[n] = 0x01;
	hmac(prk, 32, m, n + 1, out);
}

static size_t chunk_plain_len(unsigned i)
{
	return i + 1 < NCHUNKS ? C : PLAIN - (NCHUNKS - 1) * C;
}

static void seal_blob(void)
{
	uint8_t prk[32], commitment[32], pk[32], c2[32], pk2[32];
	mbedtls_gcm_context gcm;
	unsigned i;
	size_t off = OTA_ENV_HEADER_SIZE;

	for (i = 0; i < PLAIN; i++)
		plain[i] = (uint8_t)(i * 7 + 3);
	hmac(salt, sizeof salt, key, sizeof key, prk);
	expand(prk, "otaflow-enc/v1 commit", commitment);
	expand(prk, "otaflow-enc/v1 payload", pk);
	/* The library derives the same keys. */
	ota_env_derive(key, salt, c2, pk2);
	REQUIRE(memcmp(c2, commitment, 32) == 0 && memcmp(pk2, pk, 32) == 0);

	memcpy(blob, "OTAFLOW\x01", 8);
	blob[8] = 0x01;
	blob[9] = LOG2;
	memcpy(blob + 10, salt, 16);
	memcpy(blob + 26, commitment, 32);
	mbedtls_gcm_init(&gcm);
	REQUIRE(mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, pk, 256) == 0);
	for (i = 0; i < NCHUNKS; i++) {
		uint8_t nonce[12] = {0};
		size_t n = chunk_plain_len(i);
		nonce[10] = (uint8_t)i;
		nonce[11] = i + 1 == NCHUNKS;
		REQUIRE(mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, n, nonce, 12, blob, OTA_ENV_HEADER_SIZE,
		                                  plain + i * C, blob + off, 16, blob + off + n) == 0);
		off += n + 16;
	}
	REQUIRE(off == BLOB);
	mbedtls_gcm_free(&gcm);
}

struct run {
	uint64_t next;
	unsigned released;
};

static int sink(void *arg, uint64_t index, const uint8_t *p, size_t n)
{
	struct run *r = arg;
	/* In order, and exactly the original plaintext of that chunk. */
	REQUIRE(index == r->next && index < NCHUNKS);
	REQUIRE(n == chunk_plain_len((unsigned)index));
	REQUIRE(memcmp(p, plain + index * C, n) == 0);
	r->next++;
	r->released++;
	return 0;
}

/* Decodes work[0..len) declared as enc bytes from chunk start, fed in
 * pieces; returns the verdict. */
static int decode(const uint8_t *work, size_t len, uint64_t enc, unsigned start, unsigned split, unsigned seed,
                  struct run *run)
{
	static uint8_t buf[ota_env_buf_size(LOG2)];
	uint8_t hdr[OTA_ENV_HEADER_SIZE];
	ota_env_dec d;
	size_t off, k;
	int r;
	static const size_t limits[8] = {1, 3, 16, 100, S - 1, S, S + 1, WORK_MAX};

	run->next = start;
	run->released = 0;
	if (len < OTA_ENV_HEADER_SIZE)
		return OTA_ERR_TRUNCATED; /* no header: never starts */
	memcpy(hdr, work, sizeof hdr);
	r = ota_env_init(&d, hdr, key, enc, start, buf, sizeof buf);
	if (r != OTA_OK)
		return r;
	off = (size_t)ota_env_chunk_offset(&d, start);
	for (k = 0; off < len; k++) {
		size_t piece = 1 + ((seed + 1) * 2654435761u * (k + 1) >> 7) % limits[split];
		if (piece > len - off)
			piece = len - off;
		if ((r = ota_env_feed(&d, work + off, piece, sink, run)) != OTA_OK)
			break;
		off += piece;
	}
	r = ota_env_finish(&d);
	ota_env_free(&d);
	return r;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct run run;
	unsigned split;
	(void)argc;
	(void)argv;
	seal_blob();
	/* The untouched blob decodes, however it is split and from any chunk. */
	for (split = 0; split < 8; split++) {
		REQUIRE(decode(blob, BLOB, BLOB, 0, split, split, &run) == OTA_OK && run.released == NCHUNKS);
		REQUIRE(decode(blob, BLOB, BLOB, 2, split, split, &run) == OTA_OK && run.released == 1);
	}
	return 0;
}

static size_t take16(const uint8_t *p)
{
	return (size_t)p[0] | (size_t)p[1] << 8;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t work[WORK_MAX];
	size_t len = BLOB, i;
	unsigned mode, start;
	uint64_t enc;
	struct run run;
	int r, same;

	if (size < 2)
		return 0;
	memcpy(work, blob, BLOB);
	mode = data[0];
	for (i = 2; i + 4 <= size; i += 4) {
		const uint8_t *o = data + i;
		switch (o[0] % 6) {
		case 0: /* xor one byte */
			if (len)
				work[take16(o + 1) % len] ^= (uint8_t)(o[3] ? o[3] : 1);
			break;
		case 1: /* truncate */
			len = take16(o + 1) % (len + 1);
			break;
		case 2: { /* insert o[3] % 64 + 1 bytes of value o[2] */
			size_t at = o[1] * 16u % (len + 1), n = o[3] % 64u + 1;
			if (len + n > WORK_MAX)
				break;
			memmove(work + at + n, work + at, len - at);
			memset(work + at, o[2], n);
			len += n;
			break;
		}
		case 3: /* swap chunks 0 and 1 (both full) */
			if (len >= OTA_ENV_HEADER_SIZE + 2 * S) {
				uint8_t tmp[S];
				memcpy(tmp, work + OTA_ENV_HEADER_SIZE, S);
				memmove(work + OTA_ENV_HEADER_SIZE, work + OTA_ENV_HEADER_SIZE + S, S);
				memcpy(work + OTA_ENV_HEADER_SIZE + S, tmp, S);
			}
			break;
		case 4: { /* insert a copy of original chunk o[1] % 3 at boundary o[2] % 4 */
			unsigned c = o[1] % NCHUNKS;
			size_t n = chunk_plain_len(c) + 16, at = OTA_ENV_HEADER_SIZE + (o[2] % 4u) * S;
			if (at > len || len + n > WORK_MAX)
				break;
			memmove(work + at + n, work + at, len - at);
			memcpy(work + at, blob + OTA_ENV_HEADER_SIZE + c * S, n);
			len += n;
			break;
		}
		case 5: { /* delete the bytes of chunk o[1] % 3 */
			size_t at = OTA_ENV_HEADER_SIZE + (o[1] % NCHUNKS) * S, end = at + S;
			if (at >= len)
				break;
			if (end > len)
				end = len;
			memmove(work + at, work + end, len - end);
			len -= end - at;
			break;
		}
		}
	}

	switch (mode & 3) {
	case 0: enc = BLOB; break;
	case 1: enc = len; break;
	case 2: enc = (uint64_t)len + 1; break;
	default: enc = len ? (uint64_t)len - 1 : 0; break;
	}
	start = (mode >> 2 & 3) % 3;
	r = decode(work, len, enc, start, mode >> 4 & 7, data[1], &run);

	/* Unmodified as far as the decoder reads it: the header, and the
	 * bytes from the start chunk's offset on. */
	{
		size_t off = OTA_ENV_HEADER_SIZE + start * S;
		same = enc == BLOB && len == BLOB && memcmp(work, blob, OTA_ENV_HEADER_SIZE) == 0 &&
		       memcmp(work + off, blob + off, BLOB - off) == 0;
	}
	if (same)
		REQUIRE(r == OTA_OK);
	if (r == OTA_OK)
		REQUIRE(same && run.released == NCHUNKS - start);
	return 0;
}
