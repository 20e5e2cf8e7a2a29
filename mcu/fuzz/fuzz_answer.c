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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/sha256.h>

#include "ota_assignment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define REQUIRE(c)                                                                                                   \
	do {                                                                                                         \
		if (!(c))                                                                                            \
			abort();                                                                                     \
	} while (0)

static const char ed_pub_hex[] = "5aec185c3487343532bb918349e88333332f5484bca9e01d24ee71f9b464c37c";
static const char p256_pub_hex[] = "04c698ddf639a38812da9e1356667ac4db012d0a76149d400472b89d11121067f7"
                                   "33b2dcbeedbd418bc8a6dfb280f4d58fe5557ca6f5057fbf2987fe280843026b";
static const char p256_priv_hex[] = "82d150d0338d78ba77b2dd46ccabce6f8f3c14e3fc90bf947419345f3aff01a9";
static const char domain[] = "otaflow-assignment/v1\n";

static ota_pubkey keys[2];
static ota_trust trust;
static ota_device_state dev;
static char p256_id[65];
static mbedtls_ecdsa_context signer;

static void unhex(const char *s, uint8_t *out, size_t n)
{
	size_t k;
	REQUIRE(ota_hex_decode(s, strlen(s), out, n, &k) == OTA_OK && k == n);
}

static int rng(void *ctx, unsigned char *p, size_t n)
{
	(void)ctx;
	return ota_crypto_random(p, n) == OTA_OK ? 0 : -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint8_t raw[65];
	int32_t ns;
	(void)argc;
	(void)argv;
	unhex(ed_pub_hex, raw, 32);
	REQUIRE(ota_pubkey_from_raw(&keys[0], OTA_ALG_ED25519, raw, 32) == OTA_OK);
	unhex(p256_pub_hex, raw, 65);
	REQUIRE(ota_pubkey_from_raw(&keys[1], OTA_ALG_P256, raw, 65) == OTA_OK);
	ota_hex_encode(keys[1].key_id, 32, p256_id);
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

	mbedtls_ecdsa_init(&signer);
	REQUIRE(mbedtls_ecp_group_load(&signer.grp, MBEDTLS_ECP_DP_SECP256R1) == 0);
	unhex(p256_priv_hex, raw, 32);
	REQUIRE(mbedtls_mpi_read_binary(&signer.d, raw, 32) == 0);
	REQUIRE(mbedtls_ecp_mul(&signer.grp, &signer.Q, &signer.d, &signer.grp.G, rng, NULL) == 0);
	return 0;
}

/* A deterministic (RFC 6979) DER signature over domain ‖ payload. */
static size_t sign(const uint8_t *payload, size_t n, uint8_t *sig, size_t cap)
{
	mbedtls_sha256_context h;
	uint8_t hash[32], der[MBEDTLS_ECDSA_MAX_LEN];
	size_t len = 0;
	mbedtls_sha256_init(&h);
	REQUIRE(mbedtls_sha256_starts_ret(&h, 0) == 0);
	REQUIRE(mbedtls_sha256_update_ret(&h, (const uint8_t *)domain, sizeof domain - 1) == 0);
	REQUIRE(mbedtls_sha256_update_ret(&h, payload, n) == 0);
	REQUIRE(mbedtls_sha256_finish_ret(&h, hash) == 0);
	mbedtls_sha256_free(&h);
	REQUIRE(mbedtls_ecdsa_write_signature(&signer, MBEDTLS_MD_SHA256, hash, 32, der, &len, rng, NULL) == 0);
	REQUIRE(len <= cap);
	memcpy(sig, der, len);
	return len;
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
	sl = sign(payload, n, sig, sizeof sig);
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
		a.signature_len = sign(a.payload, a.payload_len, a.signature, sizeof a.signature);
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
