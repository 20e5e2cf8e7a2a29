/*
 * libFuzzer target: the update answer and the signed assignment
 * (ota_answer_parse, ota_assignment_verify, ota_answer_check).
 *
 * The device trusts the two server keys of
 * testdata/conformance/3-assignments.json and is the device of its
 * vectors. An input is used twice:
 *
 *  - as a GET /v1/update body: parsed, then verified as sent, and verified
 *    again after re-signing its payload with the trusted P-256 key, so the
 *    strict payload parser and the device checks see mutated payloads;
 *  - as a payload itself (when it starts with '{'), signed the same way.
 *
 * A re-signed payload must never be refused for its signature or key.
 */
#include <string.h>

#include "fuzz.h"
#include "ota_assignment.h"

static const char domain[] = "otaflow-assignment/v1\n";

static ota_pubkey keys[2];
static ota_trust trust;
static ota_device_state dev;
static char p256_id[65];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int32_t ns;
	(void)argc;
	(void)argv;
	fuzz_keys_init(keys, p256_id);
	trust.keys = keys;
	trust.n = 2;

	/* The device of the conformance vectors. */
	dev.device_id = "sensor-00042";
	dev.kem = OTA_KEM_X25519;
	dev.nonce = "8f1c0b5e2a9d4c7f3b6e1a0d5c8f2b4e";
	dev.running_version = "2.0.3";
	dev.security_floor = 4;
	dev.skew = 300;
	REQUIRE(ota_parse_time("2026-03-01T12:00:05Z", 20, &dev.now, &ns) == OTA_OK);
	return 0;
}

static int is_verdict(int r)
{
	return r == OTA_OK || (r <= OTA_ERR_MALFORMED && r >= OTA_ERR_STALE);
}

/* What an accepted assignment must look like. */
static void check_accepted(const ota_assignment *a)
{
	REQUIRE(strcmp(a->device_id, dev.device_id) == 0);
	REQUIRE(strlen(a->rollout) <= OTA_ROLLOUT_MAX && strlen(a->release) <= OTA_ROLLOUT_MAX);
	REQUIRE(strlen(a->version) <= OTA_VERSION_MAX && strlen(a->blob_url) <= OTA_URL_MAX);
	REQUIRE(strlen(a->nonce) <= OTA_NONCE_MAX);
	REQUIRE(a->kem == OTA_KEM_X25519 || a->kem == OTA_KEM_P256);
	REQUIRE(a->wrapped_len == (a->kem == OTA_KEM_X25519 ? OTA_WRAPPED_KEY_X25519 : OTA_WRAPPED_KEY_P256));
	REQUIRE(a->vendor_sig_len <= OTA_VENDOR_SIG_MAX);
	REQUIRE(!(a->rollback && a->commit));
	REQUIRE(a->expires_at > a->issued_at || (a->expires_at == a->issued_at && a->expires_ns > a->issued_ns));
	REQUIRE(a->issued_ns >= 0 && a->issued_ns < 1000000000 && a->expires_ns >= 0 && a->expires_ns < 1000000000);
}

/* Verified after signing with the trusted P-256 key: never a signature or
 * key refusal. */
static void verify_signed(const uint8_t *payload, size_t n)
{
	uint8_t sig[80];
	size_t sl;
	ota_assignment out;
	int r;
	if (n > OTA_MAX_PAYLOAD)
		return;
	sl = fuzz_sign_p256(domain, payload, n, sig, sizeof sig);
	r = ota_assignment_verify(&trust, p256_id, payload, n, sig, sl, &dev, &out);
	REQUIRE(is_verdict(r) && r != OTA_ERR_BAD_SIGNATURE && r != OTA_ERR_UNTRUSTED_KEY);
	if (r == OTA_OK)
		check_accepted(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t scratch[OTA_MAX_PAYLOAD];
	ota_update_answer a;
	ota_assignment out;
	uint64_t floor = 0;
	int r;

	r = ota_answer_parse((const char *)data, size, &a, scratch, sizeof scratch);
	REQUIRE(r == OTA_OK || r == OTA_ERR_MALFORMED);
	if (r == OTA_OK) {
		REQUIRE(a.action >= OTA_ACTION_INSTALL && a.action <= OTA_ACTION_COMMIT);
		REQUIRE(strchr(a.rollout, '/') != NULL && strlen(a.reason) <= OTA_REASON_MAX);
		REQUIRE(a.has_assignment || a.action == OTA_ACTION_CANCEL);
	}
	if (r == OTA_OK && a.has_assignment) {
		REQUIRE(a.payload == scratch && a.payload_len <= OTA_MAX_PAYLOAD);
		REQUIRE(a.signature_len <= sizeof a.signature && strlen(a.key_id) < sizeof a.key_id);

		/* As sent. */
		r = ota_assignment_verify(&trust, a.key_id, a.payload, a.payload_len, a.signature, a.signature_len, &dev,
		                          &out);
		REQUIRE(is_verdict(r));
		if (r == OTA_OK)
			check_accepted(&out);
		r = ota_answer_check(&trust, &a, &dev, &out, &floor);
		REQUIRE(is_verdict(r));
		if (r == OTA_OK) {
			check_accepted(&out);
			REQUIRE(floor >= dev.security_floor);
		}

		/* Re-signed: the payload's own checks decide. */
		a.signature_len = fuzz_sign_p256(domain, a.payload, a.payload_len, a.signature, sizeof a.signature);
		memcpy(a.key_id, p256_id, sizeof a.key_id);
		r = ota_answer_check(&trust, &a, &dev, &out, &floor);
		REQUIRE(is_verdict(r) && r != OTA_ERR_BAD_SIGNATURE && r != OTA_ERR_UNTRUSTED_KEY);
		if (r == OTA_OK) {
			check_accepted(&out);
			REQUIRE(strcmp(out.rollout, a.rollout) == 0);
			if (a.action == OTA_ACTION_COMMIT)
				REQUIRE(floor == (out.security_version > dev.security_floor ? out.security_version
				                                                            : dev.security_floor));
			else
				REQUIRE(floor == dev.security_floor && out.security_version >= dev.security_floor);
		}
	}

	/* The input as a payload. */
	{
		size_t i = 0;
		while (i < size && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r'))
			i++;
		if (i < size && data[i] == '{')
			verify_signed(data, size);
	}
	return 0;
}
