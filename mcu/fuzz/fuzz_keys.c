/* The conformance vectors' server keys for the fuzz targets (fuzz.h). */
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/sha256.h>

#include "fuzz.h"
#include "ota_crypto.h"

static const char ed_pub_hex[] = "5aec185c3487343532bb918349e88333332f5484bca9e01d24ee71f9b464c37c";
static const char p256_pub_hex[] = "04c698ddf639a38812da9e1356667ac4db012d0a76149d400472b89d11121067f7"
                                   "33b2dcbeedbd418bc8a6dfb280f4d58fe5557ca6f5057fbf2987fe280843026b";
static const char p256_priv_hex[] = "82d150d0338d78ba77b2dd46ccabce6f8f3c14e3fc90bf947419345f3aff01a9";

static mbedtls_ecdsa_context signer;

void fuzz_unhex(const char *s, uint8_t *out, size_t n)
{
	size_t k;
	REQUIRE(ota_hex_decode(s, strlen(s), out, n, &k) == OTA_OK && k == n);
}

static int rng(void *ctx, unsigned char *p, size_t n)
{
	(void)ctx;
	return ota_crypto_random(p, n) == OTA_OK ? 0 : -1;
}

void fuzz_keys_init(ota_pubkey keys[2], char p256_id[65])
{
	uint8_t raw[65];
	fuzz_unhex(ed_pub_hex, raw, 32);
	REQUIRE(ota_pubkey_from_raw(&keys[0], OTA_ALG_ED25519, raw, 32) == OTA_OK);
	fuzz_unhex(p256_pub_hex, raw, 65);
	REQUIRE(ota_pubkey_from_raw(&keys[1], OTA_ALG_P256, raw, 65) == OTA_OK);
	ota_hex_encode(keys[1].key_id, 32, p256_id);
	mbedtls_ecdsa_init(&signer);
	REQUIRE(mbedtls_ecp_group_load(&signer.grp, MBEDTLS_ECP_DP_SECP256R1) == 0);
	fuzz_unhex(p256_priv_hex, raw, 32);
	REQUIRE(mbedtls_mpi_read_binary(&signer.d, raw, 32) == 0);
	REQUIRE(mbedtls_ecp_mul(&signer.grp, &signer.Q, &signer.d, &signer.grp.G, rng, NULL) == 0);
}

size_t fuzz_sign_p256(const char *domain, const uint8_t *msg, size_t n, uint8_t *sig, size_t cap)
{
	mbedtls_sha256_context h;
	uint8_t hash[32], der[MBEDTLS_ECDSA_MAX_LEN];
	size_t len = 0;
	mbedtls_sha256_init(&h);
	REQUIRE(mbedtls_sha256_starts_ret(&h, 0) == 0);
	REQUIRE(mbedtls_sha256_update_ret(&h, (const uint8_t *)domain, strlen(domain)) == 0);
	REQUIRE(mbedtls_sha256_update_ret(&h, msg, n) == 0);
	REQUIRE(mbedtls_sha256_finish_ret(&h, hash) == 0);
	mbedtls_sha256_free(&h);
	REQUIRE(mbedtls_ecdsa_write_signature(&signer, MBEDTLS_MD_SHA256, hash, 32, der, &len, rng, NULL) == 0);
	REQUIRE(len <= cap);
	memcpy(sig, der, len);
	return len;
}
