/*
 * The OTA server's answer to GET /v1/update and its signed assignment
 * (docs/protocol.md "The signed assignment", docs/envelope.md §3), checked
 * in the order docs/conformance.md gives for 3-assignments.json.
 */
#ifndef OTAFLOW_OTA_ASSIGNMENT_H
#define OTAFLOW_OTA_ASSIGNMENT_H

#include "ota_crypto.h"
#include "ota_hpke.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_MAX_PAYLOAD 65536 /* the protocol's limit on payload bytes */
#define OTA_DEVICE_ID_MAX 128
#define OTA_ROLLOUT_MAX 317 /* namespace (63) / name (253) */
#define OTA_VERSION_MAX 128
#define OTA_URL_MAX 1024
#define OTA_NONCE_MAX 128
#define OTA_VENDOR_SIG_MAX 72 /* DER ECDSA P-256 at most; Ed25519 is 64 */
#define OTA_REASON_MAX 512

enum { OTA_ACTION_NONE = 0, OTA_ACTION_INSTALL, OTA_ACTION_ROLLBACK, OTA_ACTION_CANCEL, OTA_ACTION_COMMIT };

/* A verified assignment payload. */
typedef struct {
	char device_id[OTA_DEVICE_ID_MAX + 1];
	char rollout[OTA_ROLLOUT_MAX + 1];
	char release[OTA_ROLLOUT_MAX + 1];
	char version[OTA_VERSION_MAX + 1];
	uint64_t security_version;
	uint8_t plain_sha256[32];
	uint64_t plain_size;
	uint8_t enc_sha256[32];
	uint64_t enc_size;
	char blob_url[OTA_URL_MAX + 1];
	uint8_t kem;
	uint8_t wrapped_key[OTA_WRAPPED_KEY_P256];
	uint8_t wrapped_len;
	/* vendor_sig_len 0: no signature. A signature longer than
	 * OTA_VENDOR_SIG_MAX (RSA, say) sets vendor_sig_too_long and is refused
	 * as vendor-signature later, not as malformed. */
	uint8_t vendor_sig[OTA_VENDOR_SIG_MAX];
	uint8_t vendor_sig_len;
	uint8_t vendor_sig_too_long;
	uint8_t rollback, commit;
	char nonce[OTA_NONCE_MAX + 1];
	int64_t issued_at, expires_at; /* Unix seconds */
	int32_t issued_ns, expires_ns; /* and nanoseconds */
} ota_assignment;

/* What the device knows when it checks an answer. */
typedef struct {
	const char *device_id;
	int kem;
	const char *nonce;           /* the nonce its request sent; NULL or "" for none */
	const char *running_version; /* for commit answers */
	uint64_t security_floor;     /* committed floor */
	int64_t now;                 /* Unix seconds; OTA_NO_CLOCK without a clock */
	uint32_t skew;               /* allowed clock skew in seconds */
} ota_device_state;

#define OTA_NO_CLOCK INT64_MIN

/* The parsed 200 answer of GET /v1/update. payload points into the
 * caller's scratch buffer (base64-decoded). */
typedef struct {
	int action;
	char rollout[OTA_ROLLOUT_MAX + 1];
	char reason[OTA_REASON_MAX + 1]; /* cancel */
	int has_assignment;
	uint8_t *payload;
	size_t payload_len;
	uint8_t signature[80];
	size_t signature_len; /* 0 also for one longer than the buffer: it cannot verify */
	char key_id[65]; /* as sent (up to 64 characters): ota_assignment_verify checks it */
} ota_update_answer;

/* Trusted assignment keys (provisioned or from an accepted key set). */
typedef struct {
	const ota_pubkey *keys;
	size_t n;
} ota_trust;

/* ota_trust_find returns the trusted key whose key ID is id, or NULL. */
const ota_pubkey *ota_trust_find(const ota_trust *trust, const uint8_t id[32]);

/* ota_answer_parse parses the body strictly (step 1) and base64-decodes
 * the payload into scratch; a payload over the scratch or OTA_MAX_PAYLOAD
 * is OTA_ERR_MALFORMED (step 2). */
int ota_answer_parse(const char *body, size_t len, ota_update_answer *a, uint8_t *scratch, size_t scratch_cap);

/* ota_assignment_verify is the generic stage (Verifier.Verify): key ID
 * among the trusted keys (OTA_ERR_UNTRUSTED_KEY when it names none of
 * them) and signature over "otaflow-assignment/v1\n" ‖ payload
 * (OTA_ERR_BAD_SIGNATURE), strict parse (OTA_ERR_MALFORMED,
 * OTA_ERR_SUITE), device ID, validity window. */
int ota_assignment_verify(const ota_trust *trust, const char *key_id_hex, const uint8_t *payload, size_t payload_len,
                          const uint8_t *sig, size_t sig_len, const ota_device_state *dev, ota_assignment *out);

/* ota_signature_verify checks sig over domain_sep ‖ msg with key: Ed25519
 * (64 bytes), or ECDSA P-256 (ASN.1 DER) over the SHA-256. Assignments
 * and key sets are signed so, each with its own domain separation string.
 * OTA_OK or OTA_ERR_BAD_SIGNATURE. */
int ota_signature_verify(const ota_pubkey *key, const char *domain_sep, const uint8_t *msg, size_t len,
                         const uint8_t *sig, size_t sig_len);

/* ota_answer_check runs every check of an install, rollback or commit
 * answer in the documented order and fills out. For an accepted commit,
 * *new_floor is max(floor, securityVersion); otherwise the floor. */
int ota_answer_check(const ota_trust *trust, const ota_update_answer *a, const ota_device_state *dev,
                     ota_assignment *out, uint64_t *new_floor);

/* ota_parse_time parses RFC 3339 as Go's time.RFC3339 does (offsets and
 * fractional seconds allowed) into Unix seconds and nanoseconds. */
int ota_parse_time(const char *s, size_t len, int64_t *sec, int32_t *nsec);

#ifdef __cplusplus
}
#endif
#endif
