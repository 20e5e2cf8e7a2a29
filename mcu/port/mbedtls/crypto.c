/*
 * The crypto port on mbedTLS (2.28 as Debian, ESP-IDF 4 and Zephyr ship it;
 * 3.x too). mbedTLS allocates bignums: a device build gives it a static
 * arena (MBEDTLS_MEMORY_BUFFER_ALLOC_C), which the footprint counts.
 */
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/gcm.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/version.h>

#include "ota_crypto.h"

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define SHA256_STARTS(c) mbedtls_sha256_starts(c, 0)
#define SHA256_UPDATE mbedtls_sha256_update
#define SHA256_FINISH mbedtls_sha256_finish
#define SHA512_STARTS(c) mbedtls_sha512_starts(c, 0)
#define SHA512_UPDATE mbedtls_sha512_update
#define SHA512_FINISH mbedtls_sha512_finish
#else
#define SHA256_STARTS(c) mbedtls_sha256_starts_ret(c, 0)
#define SHA256_UPDATE mbedtls_sha256_update_ret
#define SHA256_FINISH mbedtls_sha256_finish_ret
#define SHA512_STARTS(c) mbedtls_sha512_starts_ret(c, 0)
#define SHA512_UPDATE mbedtls_sha512_update_ret
#define SHA512_FINISH mbedtls_sha512_finish_ret
#endif

/* Hashing cannot fail with a software SHA; a hardware port would have to
 * report it, so the return values are not silently meaningful here. */
void ota_sha256_init(ota_sha256_ctx *c)
{
	mbedtls_sha256_init(c);
	(void)SHA256_STARTS(c);
}

void ota_sha256_update(ota_sha256_ctx *c, const void *p, size_t n)
{
	(void)SHA256_UPDATE(c, (const unsigned char *)p, n);
}

void ota_sha256_final(ota_sha256_ctx *c, uint8_t out[32])
{
	(void)SHA256_FINISH(c, out);
	mbedtls_sha256_free(c);
}

void ota_sha512_init(ota_sha512_ctx *c)
{
	mbedtls_sha512_init(c);
	(void)SHA512_STARTS(c);
}

void ota_sha512_update(ota_sha512_ctx *c, const void *p, size_t n)
{
	(void)SHA512_UPDATE(c, (const unsigned char *)p, n);
}

void ota_sha512_final(ota_sha512_ctx *c, uint8_t out[64])
{
	(void)SHA512_FINISH(c, out);
	mbedtls_sha512_free(c);
}

int ota_gcm_init(ota_gcm_ctx *c, const uint8_t key[32])
{
	mbedtls_gcm_init(c);
	if (mbedtls_gcm_setkey(c, MBEDTLS_CIPHER_ID_AES, key, 256) != 0) {
		mbedtls_gcm_free(c);
		return OTA_ERR_CRYPTO;
	}
	return OTA_OK;
}

int ota_gcm_open(ota_gcm_ctx *c, const uint8_t nonce[12], const uint8_t *aad, size_t aad_len, uint8_t *buf,
                 size_t len, const uint8_t tag[16])
{
	/* In place: mbedTLS hashes each ciphertext block before it writes the
	 * plaintext over it, and zeroes the output when the tag fails. */
	int r = mbedtls_gcm_auth_decrypt(c, len, nonce, 12, aad, aad_len, tag, 16, buf, buf);
	if (r == MBEDTLS_ERR_GCM_AUTH_FAILED)
		return OTA_ERR_AUTH;
	return r == 0 ? OTA_OK : OTA_ERR_CRYPTO;
}

void ota_gcm_free(ota_gcm_ctx *c) { mbedtls_gcm_free(c); }

/* mbedTLS blinds scalar multiplications with this RNG. */
static int rng(void *ctx, unsigned char *out, size_t n)
{
	(void)ctx;
	return ota_crypto_random(out, n) == OTA_OK ? 0 : MBEDTLS_ERR_ECP_RANDOM_FAILED;
}

static int x25519_mul(uint8_t out[32], const uint8_t scalar[32], const uint8_t *point)
{
	mbedtls_ecp_group g;
	mbedtls_ecp_point p, r;
	mbedtls_mpi d;
	uint8_t e[32];
	size_t olen, i;
	uint8_t acc = 0;
	int ret = OTA_ERR_UNWRAP;
	memcpy(e, scalar, 32);
	e[0] &= 248; /* RFC 7748 clamping */
	e[31] &= 127;
	e[31] |= 64;
	mbedtls_ecp_group_init(&g);
	mbedtls_ecp_point_init(&p);
	mbedtls_ecp_point_init(&r);
	mbedtls_mpi_init(&d);
	if (mbedtls_ecp_group_load(&g, MBEDTLS_ECP_DP_CURVE25519) != 0 || mbedtls_mpi_read_binary_le(&d, e, 32) != 0) {
		ret = OTA_ERR_CRYPTO;
		goto out;
	}
	if (point) {
		if (mbedtls_ecp_point_read_binary(&g, &p, point, 32) != 0)
			goto out;
	} else if (mbedtls_ecp_copy(&p, &g.G) != 0) {
		goto out;
	}
	/* mbedTLS refuses the small-order points; X25519 callers must refuse
	 * an all-zero result, which is checked below too. */
	if (mbedtls_ecp_mul(&g, &r, &d, &p, rng, NULL) != 0)
		goto out;
	if (mbedtls_ecp_point_write_binary(&g, &r, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, out, 32) != 0 || olen != 32)
		goto out;
	for (i = 0; i < 32; i++)
		acc |= out[i];
	ret = acc ? OTA_OK : OTA_ERR_UNWRAP;
out:
	mbedtls_platform_zeroize(e, sizeof e);
	mbedtls_mpi_free(&d);
	mbedtls_ecp_point_free(&r);
	mbedtls_ecp_point_free(&p);
	mbedtls_ecp_group_free(&g);
	return ret;
}

int ota_x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t point[32])
{
	return x25519_mul(out, scalar, point);
}

int ota_x25519_public(uint8_t pub[32], const uint8_t priv[32])
{
	int r = x25519_mul(pub, priv, NULL);
	return r == OTA_OK ? OTA_OK : OTA_ERR_ARG;
}

static int p256_mul(const uint8_t priv[32], const uint8_t *peer, uint8_t *out, size_t out_len)
{
	mbedtls_ecp_group g;
	mbedtls_ecp_point p, r;
	mbedtls_mpi d;
	size_t olen;
	int ret = peer ? OTA_ERR_UNWRAP : OTA_ERR_ARG;
	mbedtls_ecp_group_init(&g);
	mbedtls_ecp_point_init(&p);
	mbedtls_ecp_point_init(&r);
	mbedtls_mpi_init(&d);
	if (mbedtls_ecp_group_load(&g, MBEDTLS_ECP_DP_SECP256R1) != 0 || mbedtls_mpi_read_binary(&d, priv, 32) != 0) {
		ret = OTA_ERR_CRYPTO;
		goto out;
	}
	if (mbedtls_ecp_check_privkey(&g, &d) != 0) {
		ret = OTA_ERR_ARG;
		goto out;
	}
	if (peer) {
		if (peer[0] != 0x04 || mbedtls_ecp_point_read_binary(&g, &p, peer, 65) != 0 ||
		    mbedtls_ecp_check_pubkey(&g, &p) != 0)
			goto out;
	} else if (mbedtls_ecp_copy(&p, &g.G) != 0) {
		goto out;
	}
	if (mbedtls_ecp_mul(&g, &r, &d, &p, rng, NULL) != 0)
		goto out;
	if (peer) {
		if (mbedtls_mpi_write_binary(&r.X, out, 32) != 0)
			goto out;
	} else if (mbedtls_ecp_point_write_binary(&g, &r, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, out, out_len) != 0 ||
	           olen != 65) {
		goto out;
	}
	ret = OTA_OK;
out:
	mbedtls_mpi_free(&d);
	mbedtls_ecp_point_free(&r);
	mbedtls_ecp_point_free(&p);
	mbedtls_ecp_group_free(&g);
	return ret;
}

int ota_p256_ecdh(uint8_t out[32], const uint8_t priv[32], const uint8_t peer[65])
{
	return p256_mul(priv, peer, out, 32);
}

int ota_p256_public(uint8_t pub[65], const uint8_t priv[32]) { return p256_mul(priv, NULL, pub, 65); }

int ota_p256_verify(const uint8_t pub[65], const uint8_t hash[32], const uint8_t *der, size_t der_len)
{
	mbedtls_ecdsa_context c;
	int ret = OTA_ERR_BAD_SIGNATURE;
	mbedtls_ecdsa_init(&c);
	if (mbedtls_ecp_group_load(&c.grp, MBEDTLS_ECP_DP_SECP256R1) != 0) {
		ret = OTA_ERR_CRYPTO;
		goto out;
	}
	if (pub[0] != 0x04 || mbedtls_ecp_point_read_binary(&c.grp, &c.Q, pub, 65) != 0 ||
	    mbedtls_ecp_check_pubkey(&c.grp, &c.Q) != 0)
		goto out;
	/* Any error, trailing bytes included, is a refusal. */
	if (mbedtls_ecdsa_read_signature(&c, hash, 32, der, der_len) == 0)
		ret = OTA_OK;
out:
	mbedtls_ecdsa_free(&c);
	return ret;
}
