/*
 * otaflow-enc/v1 decoding (docs/envelope.md §1): the known-size decoder.
 *
 * The caller knows the blob's size (the assignment's encryptedSize), so the
 * last chunk is known before it is opened. Bytes are fed in any pieces; each
 * chunk is collected in the caller's buffer of ota_env_buf_size(chunk_log2)
 * bytes (C + 16: 16400 for the default 16 KiB chunks), decrypted in place,
 * and released to the sink only after its tag verified.
 *
 * Resuming: keep the 58 header bytes, and ota_env_init(..., start_chunk = k)
 * then feed from byte ota_env_chunk_offset(k) of the blob.
 */
#ifndef OTAFLOW_OTA_ENVELOPE_H
#define OTAFLOW_OTA_ENVELOPE_H

#include "ota_crypto.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_ENV_HEADER_SIZE 58
#define OTA_ENV_TAG_SIZE 16
#define OTA_ENV_MIN_LOG2 10
#define OTA_ENV_MAX_LOG2 20
#define OTA_ENV_DEFAULT_LOG2 14

/* ota_env_parse_header checks magic, version, suite and chunk size:
 * OTA_ERR_FORMAT (magic or version) or OTA_ERR_UNSUPPORTED (suite or chunk
 * size out of 10..20). */
int ota_env_parse_header(const uint8_t hdr[OTA_ENV_HEADER_SIZE], unsigned *chunk_log2);

/* ota_env_plain_size is the inverse of EncryptedSize (§1.5): the number of
 * chunks and plaintext bytes of a blob of enc_size bytes, or OTA_ERR_FORMAT
 * when no blob has that size. */
int ota_env_plain_size(unsigned chunk_log2, uint64_t enc_size, uint64_t *n_chunks, uint64_t *plain_size);

/* The sealed-chunk buffer a decoder needs for a chunk size. */
#define ota_env_buf_size(chunk_log2) (((size_t)1 << (chunk_log2)) + OTA_ENV_TAG_SIZE)

/* ota_env_sink receives verified plaintext of chunk `index` (n may be 0 for
 * the empty blob's only chunk). A non-zero return stops decoding with that
 * value. */
typedef int (*ota_env_sink)(void *arg, uint64_t index, const uint8_t *plain, size_t n);

typedef struct {
	uint8_t header[OTA_ENV_HEADER_SIZE];
	unsigned chunk_log2;
	uint64_t n_chunks, plain_size;
	uint64_t next;   /* index of the chunk being collected */
	uint8_t *buf;    /* caller's chunk buffer */
	size_t buf_cap;
	size_t fill;     /* bytes of the current sealed chunk collected */
	int err;         /* sticky: once failed, always failed */
	int gcm_ready;
	ota_gcm_ctx gcm;
} ota_env_dec;

/* ota_env_init checks the header and the key commitment (constant time;
 * OTA_ERR_WRONG_KEY), checks enc_size against the header's chunk size, and
 * positions the decoder at chunk start_chunk (0 for a fresh download;
 * OTA_ERR_ARG past the last chunk). buf must hold ota_env_buf_size. */
int ota_env_init(ota_env_dec *d, const uint8_t hdr[OTA_ENV_HEADER_SIZE], const uint8_t key[32], uint64_t enc_size,
                 uint64_t start_chunk, uint8_t *buf, size_t buf_cap);

/* The blob offset where chunk i starts: 58 + i·(C + 16). */
uint64_t ota_env_chunk_offset(const ota_env_dec *d, uint64_t i);

/* ota_env_feed consumes blob bytes (after the header, from the current
 * chunk's start), calling sink for each chunk that verifies. Errors:
 * OTA_ERR_AUTH (a chunk does not verify; nothing of it was released),
 * OTA_ERR_TRAILING (bytes beyond the last chunk), OTA_ERR_FORMAT (a
 * non-canonical empty last chunk), or the sink's value. Errors are sticky. */
int ota_env_feed(ota_env_dec *d, const uint8_t *p, size_t n, ota_env_sink sink, void *arg);

/* ota_env_finish: OTA_OK when every chunk verified, OTA_ERR_TRUNCATED when
 * the stream ended early, or the sticky error. */
int ota_env_finish(ota_env_dec *d);

/* ota_env_free wipes the payload key. */
void ota_env_free(ota_env_dec *d);

/* Key derivation (§1.3), exposed for tests. */
void ota_env_derive(const uint8_t key[32], const uint8_t salt[16], uint8_t commitment[32], uint8_t payload_key[32]);

#ifdef __cplusplus
}
#endif
#endif
