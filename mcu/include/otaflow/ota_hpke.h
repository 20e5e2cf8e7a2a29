/*
 * HPKE (RFC 9180) base mode, receiver side only: DHKEM(X25519, HKDF-SHA256)
 * or DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, single-shot open
 * with empty AAD. Used to unwrap the content key (docs/envelope.md §2) and
 * to open the sealed bearer token (docs/protocol.md).
 */
#ifndef OTAFLOW_OTA_HPKE_H
#define OTAFLOW_OTA_HPKE_H

#include "ota_crypto.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_WRAPPED_KEY_X25519 80
#define OTA_WRAPPED_KEY_P256 113
#define OTA_TOKEN_MAX 512

/* ota_hpke_enc_len is 32 (X25519) or 65 (P-256), 0 for an unknown KEM. */
size_t ota_hpke_enc_len(int kem);

/* ota_hpke_open opens enc ‖ ciphertext (sealed, sealed_len bytes) with the
 * device key and info; the plaintext (sealed_len - enc - 16 bytes) goes to
 * out. Any failure is OTA_ERR_UNWRAP (OTA_ERR_BUFFER when cap is short). */
int ota_hpke_open(const ota_device_key *k, const uint8_t *info, size_t info_len, const uint8_t *sealed,
                  size_t sealed_len, uint8_t *out, size_t cap, size_t *out_len);

/* ota_unwrap_key: the content key K of a blob, from the assignment's
 * wrappedKey. info = "otaflow-enc/v1 key" ‖ blob_digest ‖ device_id. */
int ota_unwrap_key(const ota_device_key *k, const uint8_t blob_digest[32], const char *device_id,
                   const uint8_t *wrapped, size_t wrapped_len, uint8_t key[32]);

/* ota_open_token: the bearer token sealed in an enroll answer. info =
 * "otaflow-token/v1 bearer" ‖ key_id ‖ device_id. The result must be 1–512
 * characters of RFC 6750's b64token; it is NUL-terminated in token (cap ≥
 * its length + 1). */
int ota_open_token(const ota_device_key *k, const uint8_t key_id[32], const char *device_id,
                   const uint8_t *sealed, size_t sealed_len, char *token, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
