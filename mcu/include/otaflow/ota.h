/*
 * otaflow device library for microcontrollers: common definitions.
 *
 * C99, no dynamic allocation: every context is a caller-provided struct and
 * every buffer is passed in with its capacity. Functions return OTA_OK (0) or
 * a negative ota_err.
 */
#ifndef OTAFLOW_OTA_H
#define OTAFLOW_OTA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
	OTA_OK = 0,
	/* Arguments and buffers. */
	OTA_ERR_ARG = -1,    /* invalid argument (NULL, out of range) */
	OTA_ERR_BUFFER = -2, /* a caller-provided buffer is too small */
	OTA_ERR_CRYPTO = -3, /* the crypto backend failed (not a verdict) */
	OTA_ERR_UNSUPPORTED_ALG = -4, /* the backend lacks an algorithm */
	/* otaflow-enc/v1 (docs/envelope.md §1.6). */
	OTA_ERR_FORMAT = -10,
	OTA_ERR_UNSUPPORTED = -11,
	OTA_ERR_WRONG_KEY = -12,
	OTA_ERR_AUTH = -13,
	OTA_ERR_TRUNCATED = -14,
	OTA_ERR_TRAILING = -15,
	/* Key unwrap and sealed token (HPKE). */
	OTA_ERR_UNWRAP = -20,
	/* Assignment refusals: agent/refusal.go codes, in docs order. */
	OTA_ERR_MALFORMED = -30,
	OTA_ERR_BAD_SIGNATURE = -31,
	OTA_ERR_WRONG_DEVICE = -32,
	OTA_ERR_EXPIRED = -33,
	OTA_ERR_NOT_YET_VALID = -34,
	OTA_ERR_NONCE = -35,
	OTA_ERR_BELOW_FLOOR = -36,
	OTA_ERR_SUITE = -37,
	OTA_ERR_KEM = -38,
	OTA_ERR_ROLLOUT = -39,
	OTA_ERR_COMMIT = -40,
	OTA_ERR_UNTRUSTED_KEY = -41,
	OTA_ERR_STALE = -42, /* key set serial not above the trusted one */
	/* After download. */
	OTA_ERR_BLOB = -50,         /* blob header, size or digest wrong */
	OTA_ERR_CHUNK_AUTH = -51,   /* a chunk failed authentication */
	OTA_ERR_PLAIN_DIGEST = -52, /* plaintext size or SHA-256 differs */
	OTA_ERR_VENDOR_SIG = -53,   /* vendor signature missing or invalid */
	OTA_ERR_INSTALL = -54,      /* the installer port failed */
	/* Client and platform. */
	OTA_ERR_IO = -60,      /* network or storage failure: retry later */
	OTA_ERR_HTTP = -61,    /* unexpected HTTP status */
	OTA_ERR_STORAGE = -62, /* persistent storage failed */
	OTA_ERR_AUTHN = -63,   /* unused: a 401 after enrolling again is OTA_ERR_HTTP */
	OTA_ERR_CANCELED = -64 /* the server canceled the update */
} ota_err;

/* ota_err_code names an error: the agent's refusal code where one exists
 * ("bad-signature", "chunk-auth", ...), otherwise a short lowercase word. */
const char *ota_err_code(int err);

/* Key encapsulation of the device key (docs/envelope.md §2). */
enum { OTA_KEM_X25519 = 1, OTA_KEM_P256 = 2 };
/* Signature algorithms of assignment, key-set and vendor keys. */
enum { OTA_ALG_ED25519 = 1, OTA_ALG_P256 = 2 };

/* The device's HPKE key pair. pub is 32 bytes (X25519) or the 65-byte
 * uncompressed point (P-256). */
typedef struct {
	uint8_t kem;
	uint8_t priv[32];
	uint8_t pub[65];
	uint8_t pub_len;
} ota_device_key;

/* A public key for signatures: Ed25519 (32 bytes) or P-256 (65 bytes),
 * with its key ID, the SHA-256 of its PKIX DER. */
typedef struct {
	uint8_t alg;
	uint8_t pub[65];
	uint8_t pub_len;
	uint8_t key_id[32];
} ota_pubkey;

/* ota_pubkey_from_raw fills k from a raw key and computes its key ID. */
int ota_pubkey_from_raw(ota_pubkey *k, int alg, const uint8_t *raw, size_t len);
/* ota_pubkey_from_spki parses a PKIX SubjectPublicKeyInfo DER of an Ed25519
 * or uncompressed P-256 key (what `openssl pkey -pubout -outform DER` and
 * cosign write). */
int ota_pubkey_from_spki(ota_pubkey *k, const uint8_t *der, size_t len);
/* ota_pubkey_from_pem is ota_pubkey_from_spki of a "PUBLIC KEY" PEM block. */
int ota_pubkey_from_pem(ota_pubkey *k, const char *pem, size_t len);

/* ota_device_key_from_priv derives the public key of a private key. */
int ota_device_key_from_priv(ota_device_key *k, int kem, const uint8_t priv[32]);
/* ota_device_key_generate makes a new key pair from the platform's random
 * source (ota_crypto_random). */
int ota_device_key_generate(ota_device_key *k, int kem);

/* Encodings. Lengths are in bytes; decoders refuse invalid input. */
int ota_hex_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *n);
void ota_hex_encode(const uint8_t *in, size_t len, char *out); /* writes 2*len chars + NUL */
/* ota_hex32_decode reads a SHA-256 as the protocol writes digests and key
 * IDs: exactly 64 lowercase hex digits. OTA_OK or OTA_ERR_FORMAT. */
int ota_hex32_decode(const char *s, size_t len, uint8_t out[32]);
/* Standard base64 with padding (RFC 4648 §4), canonical: refuses
 * non-zero padding bits, missing padding and characters outside the
 * alphabet. */
int ota_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *n);
int ota_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap, size_t *n);

/* ota_ct_equal compares in constant time: 1 when equal. */
int ota_ct_equal(const uint8_t *a, const uint8_t *b, size_t len);

#ifdef __cplusplus
}
#endif
#endif
