/* The vendor's signature over the plaintext, checked while it streams. */
#include <string.h>

#include "ota_vendorsig.h"

int ota_vendor_begin(ota_vendor_stream *s, const ota_pubkey *key, const uint8_t *sig, size_t sig_len)
{
	if (!s)
		return OTA_ERR_ARG;
	memset(s, 0, sizeof *s);
	s->key = key;
	s->sig = sig;
	s->sig_len = sig_len;
	ota_sha256_init(&s->sha256);
	if (!key)
		return OTA_OK;
	if (!sig || sig_len == 0)
		return OTA_ERR_VENDOR_SIG;
	if (key->alg == OTA_ALG_ED25519) {
		if (sig_len != 64)
			return OTA_ERR_VENDOR_SIG;
		/* Pure Ed25519 hashes R ‖ A ‖ message: seed it now, stream
		 * the image into it (internal/vendorsig.Ed25519Stream). */
		ota_sha512_init(&s->sha512);
		ota_sha512_update(&s->sha512, sig, 32);
		ota_sha512_update(&s->sha512, key->pub, 32);
	} else if (key->alg != OTA_ALG_P256 || sig_len > 72 /* DER ECDSA P-256 at most */) {
		return OTA_ERR_VENDOR_SIG;
	}
	return OTA_OK;
}

void ota_vendor_update(ota_vendor_stream *s, const uint8_t *p, size_t n)
{
	ota_sha256_update(&s->sha256, p, n);
	if (s->key && s->key->alg == OTA_ALG_ED25519)
		ota_sha512_update(&s->sha512, p, n);
	s->size += n;
}

int ota_vendor_end(ota_vendor_stream *s, uint64_t want_size, const uint8_t want_sha256[32])
{
	uint8_t d[32], h[64];
	int ed = s->key && s->key->alg == OTA_ALG_ED25519;
	ota_sha256_final(&s->sha256, d);
	if (ed)
		ota_sha512_final(&s->sha512, h);
	if (s->size != want_size || !ota_ct_equal(d, want_sha256, 32))
		return OTA_ERR_PLAIN_DIGEST;
	if (!s->key)
		return OTA_OK;
	if (ed)
		return ota_ed25519_check(s->key->pub, s->sig, h) == OTA_OK ? OTA_OK : OTA_ERR_VENDOR_SIG;
	/* ECDSA signs the SHA-256 of the image: the digest just checked. */
	return ota_p256_verify(s->key->pub, d, s->sig, s->sig_len) == OTA_OK ? OTA_OK : OTA_ERR_VENDOR_SIG;
}
