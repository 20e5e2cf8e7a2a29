/* Error names, encodings and public keys shared by the library. */
#include <string.h>

#include "ota_crypto.h"

const char *ota_err_code(int err)
{
	switch (err) {
	case OTA_OK: return "ok";
	case OTA_ERR_ARG: return "invalid-argument";
	case OTA_ERR_BUFFER: return "buffer-too-small";
	case OTA_ERR_CRYPTO: return "crypto-backend";
	case OTA_ERR_UNSUPPORTED_ALG: return "unsupported-algorithm";
	case OTA_ERR_FORMAT: return "format";
	case OTA_ERR_UNSUPPORTED: return "unsupported";
	case OTA_ERR_WRONG_KEY: return "wrong-key";
	case OTA_ERR_AUTH: return "auth";
	case OTA_ERR_TRUNCATED: return "truncated";
	case OTA_ERR_TRAILING: return "trailing-data";
	case OTA_ERR_UNWRAP: return "unwrap-failed";
	case OTA_ERR_MALFORMED: return "malformed";
	case OTA_ERR_BAD_SIGNATURE: return "bad-signature";
	case OTA_ERR_WRONG_DEVICE: return "wrong-device";
	case OTA_ERR_EXPIRED: return "expired";
	case OTA_ERR_NOT_YET_VALID: return "not-yet-valid";
	case OTA_ERR_NONCE: return "nonce-mismatch";
	case OTA_ERR_BELOW_FLOOR: return "below-floor";
	case OTA_ERR_SUITE: return "unsupported-suite";
	case OTA_ERR_KEM: return "kem-mismatch";
	case OTA_ERR_ROLLOUT: return "rollout-mismatch";
	case OTA_ERR_COMMIT: return "commit-mismatch";
	case OTA_ERR_UNTRUSTED_KEY: return "untrusted-signing-key";
	case OTA_ERR_STALE: return "stale";
	case OTA_ERR_BLOB: return "blob-invalid";
	case OTA_ERR_CHUNK_AUTH: return "chunk-auth";
	case OTA_ERR_PLAIN_DIGEST: return "plain-digest";
	case OTA_ERR_VENDOR_SIG: return "vendor-signature";
	case OTA_ERR_INSTALL: return "install-failed";
	case OTA_ERR_IO: return "io";
	case OTA_ERR_HTTP: return "http";
	case OTA_ERR_STORAGE: return "storage";
	case OTA_ERR_AUTHN: return "unauthenticated";
	case OTA_ERR_CANCELED: return "canceled";
	default: return "error";
	}
}

int ota_ct_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
	uint8_t d = 0;
	size_t i;
	for (i = 0; i < len; i++)
		d |= (uint8_t)(a[i] ^ b[i]);
	return d == 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int ota_hex_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *n)
{
	size_t i;
	if (len % 2 != 0)
		return OTA_ERR_FORMAT;
	if (len / 2 > cap)
		return OTA_ERR_BUFFER;
	for (i = 0; i < len; i += 2) {
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return OTA_ERR_FORMAT;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	if (n)
		*n = len / 2;
	return OTA_OK;
}

int ota_hex32_decode(const char *s, size_t len, uint8_t out[32])
{
	size_t i;
	if (len != 64)
		return OTA_ERR_FORMAT;
	for (i = 0; i < 64; i++)
		if (s[i] >= 'A' && s[i] <= 'F')
			return OTA_ERR_FORMAT;
	return ota_hex_decode(s, 64, out, 32, NULL);
}

void ota_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;
	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = 0;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int ota_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *n)
{
	size_t i, o = 0, pad = 0;
	if (len % 4 != 0)
		return OTA_ERR_FORMAT;
	if (len >= 1 && s[len - 1] == '=')
		pad++;
	if (len >= 2 && s[len - 2] == '=')
		pad++;
	if (len / 4 * 3 - pad > cap)
		return OTA_ERR_BUFFER;
	for (i = 0; i < len; i += 4) {
		int v[4], k, last = i + 4 == len;
		uint32_t w = 0;
		for (k = 0; k < 4; k++) {
			if (last && s[i + k] == '=' && k >= 4 - (int)pad)
				v[k] = 0;
			else if ((v[k] = b64val(s[i + k])) < 0)
				return OTA_ERR_FORMAT;
			w = w << 6 | (uint32_t)v[k];
		}
		out[o++] = (uint8_t)(w >> 16);
		if (!last || pad < 2)
			out[o++] = (uint8_t)(w >> 8);
		if (!last || pad < 1)
			out[o++] = (uint8_t)w;
		/* Canonical: the bits padding drops must be zero (as Go's
		 * StdEncoding.Strict, which the server's keys pass). */
		if (last && ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0)))
			return OTA_ERR_FORMAT;
	}
	if (n)
		*n = o;
	return OTA_OK;
}

int ota_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap, size_t *n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0, need = (len + 2) / 3 * 4;
	if (need + 1 > cap)
		return OTA_ERR_BUFFER;
	for (i = 0; i < len; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			w |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			w |= in[i + 2];
		out[o++] = a[w >> 18 & 63];
		out[o++] = a[w >> 12 & 63];
		out[o++] = i + 1 < len ? a[w >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? a[w & 63] : '=';
	}
	out[o] = 0;
	if (n)
		*n = o;
	return OTA_OK;
}

/* SubjectPublicKeyInfo prefixes of the two key types, followed by the raw
 * key: id-Ed25519, and id-ecPublicKey with prime256v1. */
static const uint8_t spki_ed25519[] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
static const uint8_t spki_p256[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
                                    0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
                                    0x07, 0x03, 0x42, 0x00};

int ota_pubkey_from_raw(ota_pubkey *k, int alg, const uint8_t *raw, size_t len)
{
	ota_sha256_ctx h;
	if (!k || !raw)
		return OTA_ERR_ARG;
	if (alg == OTA_ALG_ED25519 && len == 32) {
		ota_sha256_init(&h);
		ota_sha256_update(&h, spki_ed25519, sizeof spki_ed25519);
	} else if (alg == OTA_ALG_P256 && len == 65 && raw[0] == 0x04) {
		ota_sha256_init(&h);
		ota_sha256_update(&h, spki_p256, sizeof spki_p256);
	} else {
		return OTA_ERR_FORMAT;
	}
	memset(k, 0, sizeof *k);
	ota_sha256_update(&h, raw, len);
	ota_sha256_final(&h, k->key_id);
	k->alg = (uint8_t)alg;
	memcpy(k->pub, raw, len);
	k->pub_len = (uint8_t)len;
	return OTA_OK;
}

int ota_pubkey_from_spki(ota_pubkey *k, const uint8_t *der, size_t len)
{
	if (len == sizeof spki_ed25519 + 32 && memcmp(der, spki_ed25519, sizeof spki_ed25519) == 0)
		return ota_pubkey_from_raw(k, OTA_ALG_ED25519, der + sizeof spki_ed25519, 32);
	if (len == sizeof spki_p256 + 65 && memcmp(der, spki_p256, sizeof spki_p256) == 0)
		return ota_pubkey_from_raw(k, OTA_ALG_P256, der + sizeof spki_p256, 65);
	return OTA_ERR_UNSUPPORTED_ALG;
}

int ota_pubkey_from_pem(ota_pubkey *k, const char *pem, size_t len)
{
	static const char begin[] = "-----BEGIN PUBLIC KEY-----";
	static const char end[] = "-----END PUBLIC KEY-----";
	char b64[200];
	uint8_t der[128];
	size_t i, j = 0, n, bl = sizeof begin - 1, el = sizeof end - 1;
	const char *p = NULL, *q = NULL;
	for (i = 0; i + bl <= len; i++)
		if (memcmp(pem + i, begin, bl) == 0) {
			p = pem + i + bl;
			break;
		}
	if (!p)
		return OTA_ERR_FORMAT;
	for (i = (size_t)(p - pem); i + el <= len; i++)
		if (memcmp(pem + i, end, el) == 0) {
			q = pem + i;
			break;
		}
	if (!q)
		return OTA_ERR_FORMAT;
	for (; p < q; p++) {
		if (*p == '\n' || *p == '\r' || *p == ' ' || *p == '\t')
			continue;
		if (j + 1 >= sizeof b64)
			return OTA_ERR_FORMAT;
		b64[j++] = *p;
	}
	if (ota_b64_decode(b64, j, der, sizeof der, &n) != OTA_OK)
		return OTA_ERR_FORMAT;
	return ota_pubkey_from_spki(k, der, n);
}

int ota_device_key_from_priv(ota_device_key *k, int kem, const uint8_t priv[32])
{
	int r;
	if (!k || !priv)
		return OTA_ERR_ARG;
	memcpy(k->priv, priv, 32);
	if (kem == OTA_KEM_X25519) {
		r = ota_x25519_public(k->pub, priv);
		k->pub_len = 32;
	} else if (kem == OTA_KEM_P256) {
		r = ota_p256_public(k->pub, priv);
		k->pub_len = 65;
	} else {
		return OTA_ERR_ARG;
	}
	k->kem = (uint8_t)kem;
	return r;
}

int ota_device_key_generate(ota_device_key *k, int kem)
{
	uint8_t priv[32];
	int r, tries;
	for (tries = 0; tries < 8; tries++) {
		if ((r = ota_crypto_random(priv, sizeof priv)) != OTA_OK)
			return r;
		/* A P-256 scalar must be in [1, n-1]; retry the rare miss. */
		if ((r = ota_device_key_from_priv(k, kem, priv)) == OTA_OK)
			break;
	}
	memset(priv, 0, sizeof priv);
	return r;
}
