/*
 * The vendor's signature over the plaintext image, checked while the image
 * streams (docs/signatures.md): ECDSA P-256 over SHA-256 with an ASN.1 DER
 * signature, as `cosign sign-blob` writes; or pure Ed25519, whose SHA-512
 * over R ‖ A ‖ image is seeded before the first byte. The same pass
 * computes the plaintext SHA-256 the assignment names. A resumed download
 * re-reads what it already wrote (the client does) to rebuild the hashes.
 */
#ifndef OTAFLOW_OTA_VENDORSIG_H
#define OTAFLOW_OTA_VENDORSIG_H

#include "ota_crypto.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
	const ota_pubkey *key; /* NULL: no vendor key, only the digest */
	const uint8_t *sig;
	size_t sig_len;
	uint64_t size;
	ota_sha256_ctx sha256;
	ota_sha512_ctx sha512; /* Ed25519 only */
} ota_vendor_stream;

/* ota_vendor_begin starts hashing. With a key, a signature of the wrong
 * length for it fails at once (OTA_ERR_VENDOR_SIG). */
int ota_vendor_begin(ota_vendor_stream *s, const ota_pubkey *key, const uint8_t *sig, size_t sig_len);
void ota_vendor_update(ota_vendor_stream *s, const uint8_t *p, size_t n);
/* ota_vendor_end: the plaintext size and SHA-256 must equal the
 * assignment's (OTA_ERR_PLAIN_DIGEST), then the signature must verify
 * (OTA_ERR_VENDOR_SIG). */
int ota_vendor_end(ota_vendor_stream *s, uint64_t want_size, const uint8_t want_sha256[32]);

#ifdef __cplusplus
}
#endif
#endif
