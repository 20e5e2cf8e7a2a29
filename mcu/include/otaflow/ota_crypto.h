/*
 * The crypto port: the primitives the library needs from a backend.
 *
 * The backend's header (selected with -DOTA_CRYPTO_PORT_H="...", default
 * the mbedTLS port) defines the context types ota_sha256_ctx,
 * ota_sha512_ctx and ota_gcm_ctx, so contexts live in caller memory. A port
 * for PSA Crypto or a hardware engine implements the same functions.
 *
 * Everything else (HMAC, HKDF, HPKE, the envelope, key IDs) is built on
 * these in portable C. Ed25519 verification is portable C too
 * (src/ed25519.c), because mbedTLS has none; a backend that has it may
 * replace ota_ed25519_check.
 */
#ifndef OTAFLOW_OTA_CRYPTO_H
#define OTAFLOW_OTA_CRYPTO_H

#include "ota.h"

#ifndef OTA_CRYPTO_PORT_H
#define OTA_CRYPTO_PORT_H "ota_port_mbedtls.h"
#endif
#include OTA_CRYPTO_PORT_H

#ifdef __cplusplus
extern "C" {
#endif

void ota_sha256_init(ota_sha256_ctx *c);
void ota_sha256_update(ota_sha256_ctx *c, const void *p, size_t n);
void ota_sha256_final(ota_sha256_ctx *c, uint8_t out[32]); /* also frees */

void ota_sha512_init(ota_sha512_ctx *c);
void ota_sha512_update(ota_sha512_ctx *c, const void *p, size_t n);
void ota_sha512_final(ota_sha512_ctx *c, uint8_t out[64]);

/* AES-256-GCM with a 12-byte nonce and 16-byte tag. The key is set once
 * and used for many messages (one per chunk). */
int ota_gcm_init(ota_gcm_ctx *c, const uint8_t key[32]);
/* ota_gcm_open decrypts buf in place and returns OTA_OK, or OTA_ERR_AUTH
 * with buf zeroed when the tag does not verify. */
int ota_gcm_open(ota_gcm_ctx *c, const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                 uint8_t *buf, size_t len, const uint8_t tag[16]);
void ota_gcm_free(ota_gcm_ctx *c);

/* X25519 (RFC 7748): out = scalar * point. Fails (OTA_ERR_UNWRAP) when the
 * result is all zeros (a small-order point). */
int ota_x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t point[32]);
int ota_x25519_public(uint8_t pub[32], const uint8_t priv[32]);

/* P-256: ECDH x-coordinate with a 65-byte uncompressed peer point, which
 * must be on the curve (OTA_ERR_UNWRAP otherwise); public key derivation;
 * ECDSA verification of an ASN.1 DER signature over a SHA-256 digest
 * (OTA_ERR_BAD_SIGNATURE when it does not verify or is not DER). */
int ota_p256_ecdh(uint8_t out[32], const uint8_t priv[32], const uint8_t peer[65]);
int ota_p256_public(uint8_t pub[65], const uint8_t priv[32]);
int ota_p256_verify(const uint8_t pub[65], const uint8_t hash[32], const uint8_t *der, size_t der_len);

/* Ed25519 (RFC 8032, as Go's crypto/ed25519 checks it): h is
 * SHA-512(R ‖ A ‖ message), computed by the caller so that long messages
 * stream. OTA_OK or OTA_ERR_BAD_SIGNATURE. */
int ota_ed25519_check(const uint8_t pub[32], const uint8_t sig[64], const uint8_t h[64]);

/* Random bytes for keys and nonces: from the platform (a TRNG). */
int ota_crypto_random(void *buf, size_t n);

/* Built on the above (src/kdf.c). */
void ota_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *const *parts, const size_t *lens,
                     size_t nparts, uint8_t out[32]);
/* HKDF-SHA256 (RFC 5869) with output of at most 255*32 bytes. */
int ota_hkdf_extract(const uint8_t *salt, size_t salt_len, const uint8_t *const *ikm, const size_t *ikm_lens,
                     size_t nikm, uint8_t prk[32]);
int ota_hkdf_expand(const uint8_t prk[32], const uint8_t *const *info, const size_t *info_lens, size_t ninfo,
                    uint8_t *out, size_t len);

#ifdef __cplusplus
}
#endif
#endif
