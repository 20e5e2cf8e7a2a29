/*
 * Enrollment (docs/protocol.md "POST /v1/enroll"): the request a device
 * builds, checked against the server's rules before it is sent, and the
 * answer, whose sealed token only the device key opens.
 */
#ifndef OTAFLOW_OTA_ENROLL_H
#define OTAFLOW_OTA_ENROLL_H

#include "ota_hpke.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_MAX_LABELS 32

typedef struct {
	const char *device_id;
	const char *bootstrap_token;
	const ota_device_key *key;
	const char *device_type;
	const char *const *label_keys; /* n_labels each, NULL when none */
	const char *const *label_values;
	size_t n_labels;
	const char *version;
	uint64_t security_floor;
} ota_enroll_req;

/* ota_enroll_validate applies the server's field rules in its order, so
 * a bad configuration is refused on the device. OTA_ERR_ARG with *field
 * naming the first bad field ("deviceID", "bootstrapToken", "kem",
 * "publicKey", "deviceType", "labels", "version", "securityFloor"). */
int ota_enroll_validate(const ota_enroll_req *r, const char **field);

/* ota_check_public_key: the server's rules for a device public key
 * (X25519: 32 bytes, canonical, not of small order; P-256: an uncompressed
 * point on the curve). */
int ota_check_public_key(int kem, const uint8_t *pub, size_t len);

/* ota_enroll_body writes the JSON body (NUL-terminated) after validating. */
int ota_enroll_body(const ota_enroll_req *r, char *buf, size_t cap, size_t *len, const char **field);

/* ota_enroll_answer parses a 200/201 answer: its deviceID must be the
 * device's and it must not carry a clear token; the sealed token is opened
 * with the device key (OTA_ERR_UNWRAP) into token (NUL-terminated), and the
 * server's assignment key ID returned. */
int ota_enroll_answer(const ota_device_key *k, const char *device_id, const char *body, size_t len, char *token,
                      size_t cap, uint8_t key_id[32]);

#ifdef __cplusplus
}
#endif
#endif
