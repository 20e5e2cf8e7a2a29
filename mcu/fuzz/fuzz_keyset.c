/*
 * libFuzzer target: the key set of GET /v1/keys (ota_keyset_update), whose
 * outer JSON is parsed before anything is authenticated.
 *
 * The device trusts the Ed25519 and P-256 keys of
 * testdata/conformance/6-keysets.json at serial 1. An input is used twice:
 *
 *  - as a GET /v1/keys body, checked as sent;
 *  - as a payload itself (when it starts with '{'), in a body signed by the
 *    trusted P-256 key, so the strict payload parser and the per-key
 *    signature rule see mutated payloads. Such a body is never refused for
 *    its signature or key.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "ota_keyset.h"

static const char domain[] = "otaflow-keyset/v1\n";

static ota_pubkey trusted[2];
static ota_trust trust;
static char p256_id[65];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_keys_init(trusted, p256_id);
	trust.keys = trusted;
	trust.n = 2;
	return 0;
}

static int is_verdict(int r)
{
	return r == OTA_OK || r == OTA_ERR_MALFORMED || r == OTA_ERR_BAD_SIGNATURE || r == OTA_ERR_UNTRUSTED_KEY ||
	       r == OTA_ERR_STALE;
}

/* What an accepted set must leave: 1 to 16 keys, ordered by key ID, none
 * twice, and a newer serial (or the same set). */
static void check_accepted(uint64_t serial, const ota_pubkey *keys, size_t n)
{
	size_t i;
	REQUIRE(serial >= 1 && serial < ((uint64_t)1 << 53));
	REQUIRE(n >= 1 && n <= OTA_KEYSET_MAX_KEYS);
	for (i = 0; i < n; i++) {
		REQUIRE(keys[i].alg == OTA_ALG_ED25519 || keys[i].alg == OTA_ALG_P256);
		REQUIRE(keys[i].pub_len == (keys[i].alg == OTA_ALG_ED25519 ? 32 : 65));
		if (i)
			REQUIRE(memcmp(keys[i - 1].key_id, keys[i].key_id, 32) < 0);
	}
}

static int update(const char *body, size_t len, uint64_t *serial, ota_pubkey *keys, size_t *n)
{
	static uint8_t scratch[OTA_KEYSET_MAX_PAYLOAD];
	int r;
	*serial = 1;
	r = ota_keyset_update(&trust, serial, body, len, scratch, sizeof scratch, keys, OTA_KEYSET_MAX_KEYS, n);
	REQUIRE(is_verdict(r));
	if (r == OTA_OK)
		check_accepted(*serial, keys, *n);
	else
		REQUIRE(*serial == 1);
	return r;
}

/* The payload in a body signed by the trusted P-256 key alone. */
static void update_signed(const uint8_t *payload, size_t n)
{
	static char body[OTA_KEYSET_MAX_PAYLOAD * 4 / 3 + 512];
	static const char head[] = "{\"payload\":\"";
	uint8_t der[80];
	ota_pubkey keys[OTA_KEYSET_MAX_KEYS];
	size_t der_len, len, k, nk;
	uint64_t serial;
	int r;
	if (n > OTA_KEYSET_MAX_PAYLOAD)
		return;
	der_len = fuzz_sign_p256(domain, payload, n, der, sizeof der);
	memcpy(body, head, sizeof head - 1);
	len = sizeof head - 1;
	REQUIRE(ota_b64_encode(payload, n, body + len, sizeof body - len, &k) == OTA_OK);
	len += k;
	len += (size_t)snprintf(body + len, sizeof body - len, "\",\"signatures\":[{\"keyID\":\"%s\",\"signature\":\"",
	                        p256_id);
	REQUIRE(ota_b64_encode(der, der_len, body + len, sizeof body - len, &k) == OTA_OK);
	len += k;
	REQUIRE(len + 4 < sizeof body);
	memcpy(body + len, "\"}]}", 4);
	len += 4;
	r = update(body, len, &serial, keys, &nk);
	REQUIRE(r != OTA_ERR_BAD_SIGNATURE && r != OTA_ERR_UNTRUSTED_KEY);
	/* One signature: only a set of the signing key alone can pass. */
	if (r == OTA_OK)
		REQUIRE(nk == 1 && memcmp(keys[0].key_id, trusted[1].key_id, 32) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ota_pubkey keys[OTA_KEYSET_MAX_KEYS];
	uint64_t serial;
	size_t n, i = 0;
	update((const char *)data, size, &serial, keys, &n);
	while (i < size && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r'))
		i++;
	if (i < size && data[i] == '{')
		update_signed(data, size);
	return 0;
}
