/*
 * Following a rotation of the server's assignment keys (docs/protocol.md
 * "Assignment keys and their rotation"): the signed key set of GET
 * /v1/keys, accepted in the order of assignment.Trust.Update.
 */
#ifndef OTAFLOW_OTA_KEYSET_H
#define OTAFLOW_OTA_KEYSET_H

#include "ota_assignment.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_KEYSET_MAX_KEYS 16
#define OTA_KEYSET_MAX_PAYLOAD 16384

/* ota_keyset_update checks the body of GET /v1/keys against the trusted
 * keys at serial *serial. On OTA_OK, keys[0..*n) are exactly the listed
 * keys and *serial the set's: store both durably before verifying
 * anything with them. A set at the trusted serial with the trusted keys is
 * OTA_OK and changes nothing. Refusals: OTA_ERR_UNTRUSTED_KEY (no
 * signature names a trusted key), OTA_ERR_BAD_SIGNATURE, OTA_ERR_MALFORMED,
 * OTA_ERR_STALE (a replay or rollback). scratch holds the decoded payload
 * (at most OTA_KEYSET_MAX_PAYLOAD bytes are needed). */
int ota_keyset_update(const ota_trust *trust, uint64_t *serial, const char *body, size_t len, uint8_t *scratch,
                      size_t scratch_cap, ota_pubkey *keys, size_t keys_cap, size_t *n);

#ifdef __cplusplus
}
#endif
#endif
