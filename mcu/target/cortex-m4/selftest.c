/*
 * Self-test of the Cortex-M4 pipeline: cross-built mbedTLS, semihosting
 * stdio and file access, exit status, and the measurement helpers.
 *
 *   selftest FILE SHA256HEX
 *
 * hashes FILE (read from the host through semihosting) and compares with
 * SHA256HEX, then checks known answers of SHA-512, AES-256-GCM, P-256
 * (public key, ECDSA verification of a DER signature) and X25519 on the
 * cross-built mbedTLS. Prints "RESULT: PASS" and exits 0, or
 * "RESULT: FAIL" and exits 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/gcm.h>
#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>

#include "measure.h"

static int failures;

static void check(int ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
	if (!ok)
		failures++;
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
	size_t i;
	for (i = 0; i < 2 * n; i++) {
		int c = s[i], v;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v = c - 'A' + 10;
		else
			return -1;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	return s[2 * n] == '\0' ? 0 : -1;
}

static int hash_file(const char *path, uint8_t out[32], unsigned long *size)
{
	static uint8_t buf[4096];
	mbedtls_sha256_context c;
	size_t n;
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	*size = 0;
	mbedtls_sha256_init(&c);
	mbedtls_sha256_starts_ret(&c, 0);
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		mbedtls_sha256_update_ret(&c, buf, n);
		*size += n;
	}
	mbedtls_sha256_finish_ret(&c, out);
	mbedtls_sha256_free(&c);
	return fclose(f) == 0 ? 0 : -1;
}

/* Blinding randomness for mbedtls_ecp_mul; a fixed sequence is fine here. */
static int test_rng(void *ctx, unsigned char *out, size_t n)
{
	uint32_t *s = ctx;
	while (n--) {
		*s = *s * 1103515245u + 12345u;
		*out++ = (unsigned char)(*s >> 16);
	}
	return 0;
}

/* d·G on group id, written as the uncompressed point (P-256) or u (X25519). */
static int ecp_public(mbedtls_ecp_group_id id, const uint8_t *d, size_t dlen, int le, uint8_t *out, size_t cap,
                      size_t *olen)
{
	mbedtls_ecp_group g;
	mbedtls_ecp_point q;
	mbedtls_mpi k;
	uint32_t seed = 1;
	int r;
	mbedtls_ecp_group_init(&g);
	mbedtls_ecp_point_init(&q);
	mbedtls_mpi_init(&k);
	r = mbedtls_ecp_group_load(&g, id);
	if (r == 0)
		r = le ? mbedtls_mpi_read_binary_le(&k, d, dlen) : mbedtls_mpi_read_binary(&k, d, dlen);
	if (r == 0)
		r = mbedtls_ecp_mul(&g, &q, &k, &g.G, test_rng, &seed);
	if (r == 0)
		r = mbedtls_ecp_point_write_binary(&g, &q, MBEDTLS_ECP_PF_UNCOMPRESSED, olen, out, cap);
	mbedtls_mpi_free(&k);
	mbedtls_ecp_point_free(&q);
	mbedtls_ecp_group_free(&g);
	return r;
}

static void known_answers(void)
{
	/* SHA-512("abc"), FIPS 180-2. */
	static const char sha512_abc[] = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
	                                 "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
	/* AES-256-GCM, zero key and nonce, 16 zero bytes (GCM spec case 14). */
	static const char gcm_ct[] = "cea7403d4d606b6e074ec5d3baf39d18";
	static const char gcm_tag[] = "d0d1c8a799996bf0265b98b5d48ab919";
	/* P-256 key of RFC 6979 A.2.5. */
	static const char p256_d[] = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
	static const char p256_q[] = "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"
	                             "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";
	/* Its ECDSA signature of SHA-256("sample") (RFC 6979 A.2.5), DER. */
	static const char p256_hash[] = "af2bdbe1aa9b6ec1e2ade1d694f41fc71a831d0268e9891562113d8a62add1bf";
	static const char p256_sig[] = "3046022100efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716"
	                               "022100f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8";
	/* X25519, RFC 7748 §6.1 (Alice). */
	static const char x_priv[] = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
	static const char x_pub[] = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
	uint8_t want[65], got[65], key[32] = {0}, nonce[12] = {0}, buf[16], tag[16], hash[32], sig[72];
	size_t olen = 0;
	mbedtls_gcm_context gcm;
	mbedtls_ecdsa_context ecdsa;
	int r;

	unhex(sha512_abc, want, 64);
	mbedtls_sha512_ret((const unsigned char *)"abc", 3, got, 0);
	check(memcmp(got, want, 64) == 0, "SHA-512 known answer");

	unhex(gcm_ct, buf, 16);
	unhex(gcm_tag, tag, 16);
	mbedtls_gcm_init(&gcm);
	r = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 256);
	if (r == 0)
		r = mbedtls_gcm_auth_decrypt(&gcm, 16, nonce, 12, NULL, 0, tag, 16, buf, buf);
	check(r == 0 && memcmp(buf, key, 16) == 0, "AES-256-GCM known answer");
	unhex(gcm_ct, buf, 16);
	tag[0] ^= 1;
	r = mbedtls_gcm_auth_decrypt(&gcm, 16, nonce, 12, NULL, 0, tag, 16, buf, buf);
	check(r == MBEDTLS_ERR_GCM_AUTH_FAILED, "AES-256-GCM refuses a wrong tag");
	mbedtls_gcm_free(&gcm);

	unhex(p256_d, key, 32);
	unhex(p256_q, want, 65);
	r = ecp_public(MBEDTLS_ECP_DP_SECP256R1, key, 32, 0, got, sizeof got, &olen);
	check(r == 0 && olen == 65 && memcmp(got, want, 65) == 0, "P-256 public key known answer");

	unhex(p256_hash, hash, 32);
	unhex(p256_sig, sig, 72);
	mbedtls_ecdsa_init(&ecdsa);
	r = mbedtls_ecp_group_load(&ecdsa.grp, MBEDTLS_ECP_DP_SECP256R1);
	if (r == 0)
		r = mbedtls_ecp_point_read_binary(&ecdsa.grp, &ecdsa.Q, want, 65);
	if (r == 0)
		r = mbedtls_ecdsa_read_signature(&ecdsa, hash, 32, sig, 72);
	check(r == 0, "P-256 ECDSA verifies a known signature");
	hash[31] ^= 1;
	r = mbedtls_ecdsa_read_signature(&ecdsa, hash, 32, sig, 72);
	check(r == MBEDTLS_ERR_ECP_VERIFY_FAILED, "P-256 ECDSA refuses another digest");
	mbedtls_ecdsa_free(&ecdsa);

	unhex(x_priv, key, 32);
	unhex(x_pub, want, 32);
	/* mbedTLS clamps nothing itself: RFC 7748 clamping first. */
	key[0] &= 248;
	key[31] &= 127;
	key[31] |= 64;
	r = ecp_public(MBEDTLS_ECP_DP_CURVE25519, key, 32, 1, got, sizeof got, &olen);
	check(r == 0 && olen == 32 && memcmp(got, want, 32) == 0, "X25519 public key known answer");
}

int main(int argc, char **argv)
{
	uint8_t want[32], got[32];
	unsigned long size = 0;

	printf("otaflow Cortex-M4 self-test (mbedTLS on mps2-an386, semihosting)\n");
	ota_heap_init();
	ota_stack_paint();
	if (argc != 3 || unhex(argv[2], want, 32) != 0) {
		printf("usage: selftest FILE SHA256HEX (got %d arguments)\n", argc - 1);
		failures++;
	} else if (hash_file(argv[1], got, &size) != 0) {
		printf("FAIL: cannot read %s through semihosting\n", argv[1]);
		failures++;
	} else {
		printf("read %lu bytes of %s\n", size, argv[1]);
		check(memcmp(got, want, 32) == 0, "SHA-256 of the file matches");
	}
	known_answers();
	printf("stack peak: %u bytes, mbedTLS heap peak: %u bytes (%u in use)\n", (unsigned)ota_stack_peak(),
	       (unsigned)ota_heap_peak(), (unsigned)ota_heap_peak_payload());
	check(ota_stack_peak() > 0 && ota_heap_peak() > 0, "measurements recorded");
	printf("RESULT: %s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
