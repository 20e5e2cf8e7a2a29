/*
 * The device client of protocol v1 (docs/protocol.md): enrollment, update
 * checks, the resumable verified download, status reports, confirmation
 * after reboot and the security floor.
 *
 * RAM: sizeof(ota_client) is 688 bytes on Cortex-M4 (776 on x86-64), 520
 * of them the bearer token; plus two caller buffers. The chunk buffer,
 * ota_env_buf_size(14) = 16400 bytes, is the only big one: it holds the
 * chunk being verified, and between chunks it is scratch (a check's parsed
 * answer and decoded payload, records being serialized, a refusal's
 * reason). The body buffer (OTA_CLIENT_BODY_MIN bytes) holds JSON bodies
 * and, in its last 1 KiB, request URLs. ota_client_check and
 * ota_client_poll take an ota_assignment (about 2.3 KiB) from the caller.
 * Stack on Cortex-M4 (-Os): ota_client_update's frame is 2.8 KiB (the
 * decoder, the hash contexts and the download state); a status report
 * adds about 1.6 KiB, an enrollment within it (after a 401) about 2.8 KiB
 * more plus the crypto backend's.
 *
 * Persistent records (ota_platform store_get/store_put): "token", "floor"
 * (committed and pending floor), "work" (the update in progress: the
 * assignment's digests, sizes, rollout and version, chunks verified, the
 * blob's 58 header bytes and ETag, the phase; at most 749 bytes),
 * "report" (the one status report not yet acknowledged, with its report
 * ID, as the JSON to send: at most the body buffer less 1 KiB) and "keys"
 * (below). A new
 * report replaces one not yet acknowledged: a later state supersedes an
 * earlier one (the server allows skipping states).
 *
 * Retrying is the caller's: a function that fails with OTA_ERR_IO (no
 * answer) or OTA_ERR_HTTP (ota_client.http_status says which; 429 and 5xx
 * are worth retrying with backoff, at least ota_client.retry_after
 * seconds; 401 means the server refused the device even after it enrolled
 * again) keeps what it achieved, and the next call goes on from there.
 *
 * Assignment keys (docs/protocol.md "Assignment keys and their rotation"):
 * with a key_store, the client follows the server's signed key set (GET
 * /v1/keys) as the Linux agent does: at the first check after start and
 * then every key_check_interval, when an enrollment answer names a key it
 * does not trust, and at once when an assignment does (the check is then
 * asked again). It trusts exactly the keys of the last set it accepted
 * and keeps them with the set's serial in the record "keys" (at most 1,602
 * bytes), written before anything is verified with them; provisioned keys
 * other than those the record was made from replace the stored ones (the
 * serial stays). The key set's body must fit the body buffer less 1 KiB:
 * 3 keys take up to 1.6 KB (the minimum buffer holds 5), 16 keys up to
 * 8.5 KB. Following it takes about 3.4 KiB of stack more than a check
 * (mostly the parse of the set) plus the crypto backend's; when an
 * assignment made it follow, the check is asked again after it, not from
 * within. Without a key_store the provisioned keys
 * stay, and an assignment signed by another key is refused as
 * untrusted-signing-key.
 */
#ifndef OTAFLOW_OTA_CLIENT_H
#define OTAFLOW_OTA_CLIENT_H

#include "ota_assignment.h"
#include "ota_keyset.h"
#include "ota_platform.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_CLIENT_BODY_MIN 4096
#define OTA_CLIENT_SKEW_DEFAULT 300
#define OTA_CLIENT_KEY_CHECK_DEFAULT 3600
#define OTA_CLIENT_KEY_CHECK_NEVER UINT32_MAX
#define OTA_CLIENT_KEY_CHECK_CHECKS 64

/* Status report states (POST /v1/status). */
enum {
	OTA_STATE_NONE = 0,
	OTA_STATE_DOWNLOADING,
	OTA_STATE_DOWNLOADED,
	OTA_STATE_INSTALLING,
	OTA_STATE_INSTALLED,
	OTA_STATE_SUCCEEDED,
	OTA_STATE_FAILED,
	OTA_STATE_ROLLEDBACK
};

/* The configuration; every pointer must stay valid while the client is
 * used. */
typedef struct {
	const char *server_url; /* base URL: "https://ota.example.com" */
	const char *device_id;  /* 1–128 of A-Z a-z 0-9 . _ : - */
	const char *device_type;
	const char *const *label_keys; /* n_labels each (Kubernetes label syntax) */
	const char *const *label_values;
	size_t n_labels;
	const char *version;         /* the running firmware version */
	const char *boot_id;         /* changes at every boot; NULL: not sent */
	const char *bootstrap_token; /* for enrollment */
	const ota_device_key *device_key;
	const ota_pubkey *assignment_keys; /* provisioned assignment keys */
	size_t n_assignment_keys;
	/* Room for the keys of a followed key set (up to OTA_KEYSET_MAX_KEYS,
	 * 99 bytes each); NULL: follow nothing. A set with more keys than
	 * key_store_cap is refused. */
	ota_pubkey *key_store;
	size_t key_store_cap;
	/* Seconds between key set checks; 0: OTA_CLIENT_KEY_CHECK_DEFAULT;
	 * OTA_CLIENT_KEY_CHECK_NEVER: only when a key is named that the device
	 * does not trust. Without a clock, every OTA_CLIENT_KEY_CHECK_CHECKS
	 * update checks. */
	uint32_t key_check_interval;
	const ota_pubkey *vendor_key; /* NULL: none */
	/* 1: refuse images without a verified vendor signature (needs
	 * vendor_key). 0: an unsigned image is installed after its digest
	 * checks, and a signed one is verified when vendor_key is set. */
	int require_vendor_signature;
	uint32_t clock_skew;     /* seconds; 0: OTA_CLIENT_SKEW_DEFAULT */
	uint64_t security_floor; /* provisioned floor; a higher stored one wins */
	/* ota_env_buf_size(14) bytes for the server's 16 KiB chunks (blobs of
	 * larger chunks are refused as blob-invalid); at least
	 * sizeof(ota_update_answer) + 1537 + 4096 bytes in any case. */
	uint8_t *chunk_buf;
	size_t chunk_cap;
	char *body_buf; /* OTA_CLIENT_BODY_MIN bytes or more */
	size_t body_cap;
} ota_client_config;

typedef struct {
	const ota_platform *plat;
	ota_client_config cfg;
	/* "Bearer <token>", the token from enrollment; "" when none. */
	char auth[7 + OTA_TOKEN_MAX + 1];
	uint64_t floor;         /* committed security floor */
	uint64_t pending_floor; /* running release's securityVersion until committed */
	/* The trusted assignment keys: the provisioned ones, or key_store's
	 * after a key set was followed (key_serial its serial, 0 before). */
	const ota_pubkey *keys;
	size_t n_keys;
	uint64_t key_serial;
	int64_t keys_checked_at;  /* clock at the last key set check */
	uint32_t checks_at_keys;  /* update checks answered by then */
	uint8_t keys_due;         /* check the key set before the next check */
	/* What the last calls saw, for the caller's loop. */
	int http_status;       /* of the last answer; 0 when none */
	uint32_t retry_after;  /* its Retry-After in seconds, 0 when none */
	uint32_t checks;       /* update checks answered */
	uint8_t last_action;   /* OTA_ACTION_* of the last check */
	uint8_t last_reported; /* OTA_STATE_* of the last acknowledged report */
	uint8_t installed;     /* installed during this boot: waiting for the reboot */
} ota_client;

/* ota_client_init checks the configuration and loads the token and floors
 * from storage. No network. */
int ota_client_init(ota_client *c, const ota_platform *p, const ota_client_config *cfg);

/* ota_client_enroll: POST /v1/enroll, open the sealed token with the
 * device key and store it. The other calls enroll when there is no token
 * and again once when the server answers 401. */
int ota_client_enroll(ota_client *c);

/* ota_client_check: GET /v1/update with a fresh nonce, the running
 * version, the committed floor and the boot ID, and the answer checked in
 * the documented order. *action is OTA_ACTION_NONE (204; retry_after may
 * say when to ask again), OTA_ACTION_INSTALL or OTA_ACTION_ROLLBACK (*a
 * holds the verified assignment: call ota_client_update), OTA_ACTION_CANCEL
 * (the download of that rollout was discarded) or OTA_ACTION_COMMIT (the
 * floor was raised and stored). An install or rollback refused by a check
 * is reported failed and returned as its error (OTA_ERR_BAD_SIGNATURE, …);
 * a refused commit is only returned. With a key_store it first follows the
 * key set when a check of it is due, and an answer signed by a key the
 * device does not trust makes it follow the set and ask again once; when
 * the server cannot be asked for the set, the error is returned and
 * nothing is refused. */
int ota_client_check(ota_client *c, ota_assignment *a, int *action);

/* ota_client_update: the whole update of a verified assignment. Reports
 * downloading, downloads the blob (resuming after the last verified chunk
 * with Range and If-Range), unwraps the content key, verifies every chunk
 * and writes it to the installer, checks the plaintext digest and the
 * vendor signature, finishes the installer, reports installed and asks
 * the platform to reboot. A refusal (chunk-auth, vendor-signature,
 * unwrap-failed, plain-digest, blob-invalid, install-failed) discards the
 * download, is reported failed with reason "<code>: <detail>" and is
 * returned. OTA_ERR_IO / OTA_ERR_HTTP keep the progress. OTA_ERR_CANCELED:
 * the server canceled the update. OTA_OK when installed (the reboot did
 * not happen: reboot, then ota_client_confirm). */
int ota_client_update(ota_client *c, const ota_assignment *a);

/* ota_client_confirm, at boot: when an installed update waits and the
 * running version is its version, report succeeded (rolledback for a
 * rollback) and keep its securityVersion as the pending floor; when the
 * device runs another version (the bootloader went back), forget it. */
int ota_client_confirm(ota_client *c);

/* ota_client_flush sends the pending report, if any. OTA_ERR_CANCELED
 * when the server answered that its update was canceled (the download is
 * discarded). */
int ota_client_flush(ota_client *c);

/* ota_client_sync_keys fetches the server's key set (GET /v1/keys) and
 * follows it when it is newer and signed by a trusted key: the keys and
 * serial are stored, then trusted. OTA_OK also when nothing changed.
 * Refusals (logged as keyset-refused): OTA_ERR_UNTRUSTED_KEY,
 * OTA_ERR_BAD_SIGNATURE, OTA_ERR_MALFORMED, OTA_ERR_STALE, OTA_ERR_BUFFER
 * (more keys than key_store_cap, or a body over the body buffer).
 * OTA_ERR_HTTP with http_status 404: the server publishes no key set.
 * OTA_ERR_ARG without a key_store. ota_client_check calls it when due. */
int ota_client_sync_keys(ota_client *c);

/* ota_client_poll is one round of a device's loop: confirm an installed
 * update after a reboot, flush the pending report, enroll when needed,
 * check, and run the update an install or rollback answer gives (a into
 * caller memory: about 2.3 KiB). Before the reboot into an installed
 * image it only asks the platform to reboot again: a check on the old
 * version would count as a revert. */
int ota_client_poll(ota_client *c, ota_assignment *a);

#ifdef __cplusplus
}
#endif
#endif
