/*
 * libFuzzer target: the otaflow-enc/v1 header, the size arithmetic and the
 * decoder set-up (ota_env_parse_header, ota_env_plain_size, ota_env_init),
 * with a fixed content key. Inputs:
 *
 *   [0,58)   header (zero-padded when the input is shorter)
 *   [58,66)  encryptedSize, little-endian
 *   [66]     flags: bit 0 writes the key's true commitment into the header,
 *            bit 1 takes encryptedSize from the input length (58 + body),
 *            bits 2-3 start chunk (0, 1, 2, last), bit 4 a one-byte-short
 *            buffer, bits 5-7 the feed piece size (1 << k)
 *   [67,...) the blob body fed to the decoder
 *
 * The key is the one of the conformance vector "hello", so its blob (and
 * the others made with that key) decodes as a seed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ota_envelope.h"



static const uint8_t key[32] = {0xb1, 0x9d, 0x2d, 0x00, 0xf5, 0xf7, 0x74, 0x70, 0x90, 0x29, 0xb8,
                                0x63, 0x5e, 0x45, 0x87, 0x4f, 0xea, 0xfd, 0x25, 0x4f, 0x02, 0x8b,
                                0xb2, 0x83, 0x1c, 0x95, 0x46, 0x21, 0x8b, 0xb0, 0xcb, 0x06};

struct expect {
	const ota_env_dec *d;
	uint64_t next;
};

/* Chunks arrive in order, each with its exact plaintext size. */
static int sink(void *arg, uint64_t index, const uint8_t *plain, size_t n)
{
	struct expect *e = arg;
	uint64_t c = (uint64_t)1 << e->d->chunk_log2;
	REQUIRE(index == e->next && index < e->d->n_chunks);
	if (index + 1 < e->d->n_chunks)
		REQUIRE(n == c);
	else
		REQUIRE(n == e->d->plain_size - (e->d->n_chunks - 1) * c);
	REQUIRE(n == 0 || plain != NULL);
	e->next++;
	return 0;
}

/* ota_env_plain_size against the forward formula of §1.5. */
static void check_sizes(unsigned log2, uint64_t enc)
{
	uint64_t n = 0, p = 0, c;
	int r = ota_env_plain_size(log2, enc, &n, &p);
	if (log2 < OTA_ENV_MIN_LOG2 || log2 > OTA_ENV_MAX_LOG2) {
		REQUIRE(r == OTA_ERR_UNSUPPORTED);
		return;
	}
	c = (uint64_t)1 << log2;
	if (r != OTA_OK) {
		REQUIRE(r == OTA_ERR_FORMAT);
		return;
	}
	REQUIRE(n >= 1 && n <= (uint64_t)1 << 40);
	REQUIRE(p <= n * c && (n == 1 || p > (n - 1) * c));
	REQUIRE(OTA_ENV_HEADER_SIZE + p + OTA_ENV_TAG_SIZE * n == enc);
}

/* The forward direction: every plaintext size has exactly one blob size,
 * and plain_size inverts it. */
static void check_forward(unsigned log2, uint64_t p)
{
	uint64_t c = (uint64_t)1 << log2, n, n2 = 0, p2 = 0, e;
	p &= ((uint64_t)1 << 50) - 1; /* keeps n below 2^40 */
	n = p == 0 ? 1 : (p + c - 1) / c;
	e = OTA_ENV_HEADER_SIZE + p + OTA_ENV_TAG_SIZE * n;
	REQUIRE(ota_env_plain_size(log2, e, &n2, &p2) == OTA_OK && n2 == n && p2 == p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[ota_env_buf_size(OTA_ENV_MAX_LOG2)];
	uint8_t hdr[OTA_ENV_HEADER_SIZE];
	uint64_t enc = 0, start = 0;
	unsigned log2 = 0, flags = 0, piece;
	const uint8_t *body = NULL;
	size_t body_len = 0, cap, off;
	ota_env_dec d;
	struct expect e;
	int r, rh, i;

	memset(hdr, 0, sizeof hdr);
	memcpy(hdr, data, size < sizeof hdr ? size : sizeof hdr);
	for (i = 0; i < 8; i++)
		if (OTA_ENV_HEADER_SIZE + (size_t)i < size)
			enc |= (uint64_t)data[OTA_ENV_HEADER_SIZE + i] << (8 * i);
	if (size > 66)
		flags = data[66];
	if (size > 67) {
		body = data + 67;
		body_len = size - 67;
	}

	rh = ota_env_parse_header(hdr, &log2);
	if (rh == OTA_OK) {
		REQUIRE(memcmp(hdr, "OTAFLOW\x01\x01", 9) == 0 && log2 == hdr[9]);
		REQUIRE(log2 >= OTA_ENV_MIN_LOG2 && log2 <= OTA_ENV_MAX_LOG2);
	} else {
		REQUIRE(rh == OTA_ERR_FORMAT || rh == OTA_ERR_UNSUPPORTED);
		REQUIRE((rh == OTA_ERR_FORMAT) == (memcmp(hdr, "OTAFLOW\x01", 8) != 0));
	}
	check_sizes(hdr[9], enc);
	check_sizes(hdr[9] % 24, enc);
	check_forward(OTA_ENV_MIN_LOG2 + hdr[9] % 11, enc);

	if (flags & 1) {
		uint8_t commitment[32], pk[32];
		ota_env_derive(key, hdr + 10, commitment, pk);
		memcpy(hdr + 26, commitment, 32);
	}
	if (flags & 2)
		enc = OTA_ENV_HEADER_SIZE + (uint64_t)body_len;
	cap = sizeof buf;
	if (rh == OTA_OK && (flags & 16))
		cap = ota_env_buf_size(log2) - 1;
	switch (flags >> 2 & 3) {
	case 0: start = 0; break;
	case 1: start = 1; break;
	case 2: start = 2; break;
	default: start = UINT64_MAX; break; /* the last chunk, below */
	}
	if (start == UINT64_MAX) {
		uint64_t n = 0;
		start = rh == OTA_OK && ota_env_plain_size(log2, enc, &n, NULL) == OTA_OK ? n - 1 : 0;
	}

	r = ota_env_init(&d, hdr, key, enc, start, buf, cap);
	if (rh != OTA_OK) {
		REQUIRE(r == rh);
		return 0;
	}
	if (r != OTA_OK) {
		REQUIRE(r == OTA_ERR_FORMAT || r == OTA_ERR_BUFFER || r == OTA_ERR_ARG || r == OTA_ERR_WRONG_KEY);
		if (flags & 1)
			REQUIRE(r != OTA_ERR_WRONG_KEY);
		REQUIRE(ota_env_feed(&d, body, body_len, sink, NULL) != OTA_OK);
		REQUIRE(ota_env_finish(&d) != OTA_OK);
		return 0;
	}
	REQUIRE(cap >= ota_env_buf_size(log2) && start < d.n_chunks);
	REQUIRE(ota_env_chunk_offset(&d, start) == OTA_ENV_HEADER_SIZE + start * (((uint64_t)1 << log2) + 16));

	e.d = &d;
	e.next = start;
	piece = 1u << (flags >> 5);
	for (off = 0; off < body_len; off += piece) {
		size_t take = body_len - off < piece ? body_len - off : piece;
		r = ota_env_feed(&d, body + off, take, sink, &e);
		if (r != OTA_OK)
			break;
	}
	r = ota_env_finish(&d);
	/* Accepted only when every chunk from start on was released and the
	 * body ended exactly at the declared size. */
	if (r == OTA_OK)
		REQUIRE(e.next == d.n_chunks && ota_env_chunk_offset(&d, start) + body_len == enc);
	else
		REQUIRE(r == OTA_ERR_AUTH || r == OTA_ERR_TRUNCATED || r == OTA_ERR_TRAILING || r == OTA_ERR_FORMAT);
	/* Errors are sticky. */
	if (r != OTA_OK)
		REQUIRE(ota_env_feed(&d, body, body_len, sink, &e) == r && ota_env_finish(&d) == r);
	ota_env_free(&d);
	return 0;
}
