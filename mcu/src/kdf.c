/* HMAC-SHA256 and HKDF-SHA256 (RFC 2104, RFC 5869) over the port's SHA-256,
 * with messages given as parts so that callers never concatenate. */
#include <string.h>

#include "ota_crypto.h"

void ota_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *const *parts, const size_t *lens,
                     size_t nparts, uint8_t out[32])
{
	uint8_t k[64], pad[64];
	ota_sha256_ctx h;
	size_t i;
	memset(k, 0, sizeof k);
	if (key_len > 64) {
		ota_sha256_init(&h);
		ota_sha256_update(&h, key, key_len);
		ota_sha256_final(&h, k);
	} else if (key_len) {
		memcpy(k, key, key_len);
	}
	for (i = 0; i < 64; i++)
		pad[i] = (uint8_t)(k[i] ^ 0x36);
	ota_sha256_init(&h);
	ota_sha256_update(&h, pad, 64);
	for (i = 0; i < nparts; i++)
		ota_sha256_update(&h, parts[i], lens[i]);
	ota_sha256_final(&h, out);
	for (i = 0; i < 64; i++)
		pad[i] = (uint8_t)(k[i] ^ 0x5c);
	ota_sha256_init(&h);
	ota_sha256_update(&h, pad, 64);
	ota_sha256_update(&h, out, 32);
	ota_sha256_final(&h, out);
	memset(k, 0, sizeof k);
	memset(pad, 0, sizeof pad);
}

int ota_hkdf_extract(const uint8_t *salt, size_t salt_len, const uint8_t *const *ikm, const size_t *ikm_lens,
                     size_t nikm, uint8_t prk[32])
{
	static const uint8_t zero[32];
	if (salt_len == 0) {
		salt = zero;
		salt_len = sizeof zero;
	}
	ota_hmac_sha256(salt, salt_len, ikm, ikm_lens, nikm, prk);
	return OTA_OK;
}

int ota_hkdf_expand(const uint8_t prk[32], const uint8_t *const *info, const size_t *info_lens, size_t ninfo,
                    uint8_t *out, size_t len)
{
	/* T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i): at most 8 info parts. */
	const uint8_t *parts[10];
	size_t lens[10], i, done = 0;
	uint8_t t[32], ctr = 0;
	if (len > 255 * 32 || ninfo > 8)
		return OTA_ERR_ARG;
	while (done < len) {
		size_t np = 0, take;
		ctr++;
		if (ctr > 1) {
			parts[np] = t;
			lens[np++] = 32;
		}
		for (i = 0; i < ninfo; i++) {
			parts[np] = info[i];
			lens[np++] = info_lens[i];
		}
		parts[np] = &ctr;
		lens[np++] = 1;
		ota_hmac_sha256(prk, 32, parts, lens, np, t);
		take = len - done < 32 ? len - done : 32;
		memcpy(out + done, t, take);
		done += take;
	}
	memset(t, 0, sizeof t);
	return OTA_OK;
}
