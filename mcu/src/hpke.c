/* HPKE (RFC 9180) base mode, receiver, single-shot open: the content key
 * and the sealed bearer token (docs/envelope.md §2, docs/protocol.md). */
#include <string.h>

#include "ota_hpke.h"

static const char v1[] = "HPKE-v1";

typedef struct {
	const uint8_t *suite;
	size_t suite_len;
} labels;

static void labeled_extract(const labels *l, const uint8_t *salt, size_t salt_len, const char *label,
                            const uint8_t *ikm, size_t ikm_len, uint8_t prk[32])
{
	const uint8_t *p[4];
	size_t n[4];
	p[0] = (const uint8_t *)v1;
	n[0] = sizeof v1 - 1;
	p[1] = l->suite;
	n[1] = l->suite_len;
	p[2] = (const uint8_t *)label;
	n[2] = strlen(label);
	p[3] = ikm;
	n[3] = ikm_len;
	ota_hkdf_extract(salt, salt_len, p, n, 4, prk);
}

static void labeled_expand(const labels *l, const uint8_t prk[32], const char *label, const uint8_t *info,
                           size_t info_len, uint8_t *out, size_t len)
{
	uint8_t l2[2];
	const uint8_t *p[5];
	size_t n[5];
	l2[0] = (uint8_t)(len >> 8);
	l2[1] = (uint8_t)len;
	p[0] = l2;
	n[0] = 2;
	p[1] = (const uint8_t *)v1;
	n[1] = sizeof v1 - 1;
	p[2] = l->suite;
	n[2] = l->suite_len;
	p[3] = (const uint8_t *)label;
	n[3] = strlen(label);
	p[4] = info;
	n[4] = info_len;
	ota_hkdf_expand(prk, p, n, 5, out, len);
}

size_t ota_hpke_enc_len(int kem)
{
	return kem == OTA_KEM_X25519 ? 32 : kem == OTA_KEM_P256 ? 65 : 0;
}

int ota_hpke_open(const ota_device_key *k, const uint8_t *info, size_t info_len, const uint8_t *sealed,
                  size_t sealed_len, uint8_t *out, size_t cap, size_t *out_len)
{
	uint8_t kem_suite[5] = {'K', 'E', 'M', 0, 0};
	uint8_t hpke_suite[10] = {'H', 'P', 'K', 'E', 0, 0, 0, 0x01, 0, 0x02}; /* HKDF-SHA256, AES-256-GCM */
	uint8_t dh[32], kem_ctx[130], prk[32], shared[32], ctx[65], key[32], nonce[12];
	labels kl, sl;
	size_t enc_len = k ? ota_hpke_enc_len(k->kem) : 0, ct_len;
	ota_gcm_ctx gcm;
	int r;
	if (!enc_len || !sealed || !out || (info_len && !info))
		return OTA_ERR_ARG;
	if (sealed_len < enc_len + 16)
		return OTA_ERR_UNWRAP;
	ct_len = sealed_len - enc_len - 16;
	if (ct_len > cap)
		return OTA_ERR_BUFFER;
	kem_suite[4] = hpke_suite[5] = k->kem == OTA_KEM_X25519 ? 0x20 : 0x10;
	kl.suite = kem_suite;
	kl.suite_len = sizeof kem_suite;
	sl.suite = hpke_suite;
	sl.suite_len = sizeof hpke_suite;

	/* Decap: dh = DH(skR, pkE); kem_context = enc ‖ pkRm. */
	r = k->kem == OTA_KEM_X25519 ? ota_x25519(dh, k->priv, sealed) : ota_p256_ecdh(dh, k->priv, sealed);
	if (r != OTA_OK)
		return r == OTA_ERR_CRYPTO ? r : OTA_ERR_UNWRAP;
	memcpy(kem_ctx, sealed, enc_len);
	memcpy(kem_ctx + enc_len, k->pub, k->pub_len);
	labeled_extract(&kl, NULL, 0, "eae_prk", dh, sizeof dh, prk);
	labeled_expand(&kl, prk, "shared_secret", kem_ctx, enc_len + k->pub_len, shared, sizeof shared);

	/* KeySchedule, mode base: context = 0x00 ‖ psk_id_hash ‖ info_hash. */
	ctx[0] = 0x00;
	labeled_extract(&sl, NULL, 0, "psk_id_hash", NULL, 0, ctx + 1);
	labeled_extract(&sl, NULL, 0, "info_hash", info, info_len, ctx + 33);
	labeled_extract(&sl, shared, sizeof shared, "secret", NULL, 0, prk);
	labeled_expand(&sl, prk, "key", ctx, sizeof ctx, key, sizeof key);
	labeled_expand(&sl, prk, "base_nonce", ctx, sizeof ctx, nonce, sizeof nonce);

	r = ota_gcm_init(&gcm, key);
	if (r == OTA_OK) {
		memcpy(out, sealed + enc_len, ct_len);
		r = ota_gcm_open(&gcm, nonce, NULL, 0, out, ct_len, sealed + enc_len + ct_len);
		ota_gcm_free(&gcm);
		if (r == OTA_ERR_AUTH)
			r = OTA_ERR_UNWRAP;
	}
	memset(dh, 0, sizeof dh);
	memset(prk, 0, sizeof prk);
	memset(shared, 0, sizeof shared);
	memset(key, 0, sizeof key);
	if (r != OTA_OK)
		return r;
	if (out_len)
		*out_len = ct_len;
	return OTA_OK;
}

/* info = prefix ‖ 32 bytes ‖ device ID, in a bounded buffer. */
static int build_info(uint8_t *info, size_t cap, const char *prefix, const uint8_t mid[32], const char *device_id,
                      size_t *len)
{
	size_t pl = strlen(prefix), dl = device_id ? strlen(device_id) : 0;
	if (!device_id || !mid || dl == 0 || dl > 128 || pl + 32 + dl > cap)
		return OTA_ERR_ARG;
	memcpy(info, prefix, pl);
	memcpy(info + pl, mid, 32);
	memcpy(info + pl + 32, device_id, dl);
	*len = pl + 32 + dl;
	return OTA_OK;
}

int ota_unwrap_key(const ota_device_key *k, const uint8_t blob_digest[32], const char *device_id,
                   const uint8_t *wrapped, size_t wrapped_len, uint8_t key[32])
{
	uint8_t info[18 + 32 + 128];
	size_t info_len, n;
	int r;
	if ((r = build_info(info, sizeof info, "otaflow-enc/v1 key", blob_digest, device_id, &info_len)) != OTA_OK)
		return r;
	if (!k || wrapped_len != ota_hpke_enc_len(k->kem) + 32 + 16)
		return OTA_ERR_UNWRAP;
	return ota_hpke_open(k, info, info_len, wrapped, wrapped_len, key, 32, &n);
}

/* RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static int b64token(const char *t, size_t n)
{
	size_t i = 0;
	while (i < n && ((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') ||
	                 t[i] == '-' || t[i] == '.' || t[i] == '_' || t[i] == '~' || t[i] == '+' || t[i] == '/'))
		i++;
	if (i == 0)
		return 0;
	while (i < n && t[i] == '=')
		i++;
	return i == n;
}

int ota_open_token(const ota_device_key *k, const uint8_t key_id[32], const char *device_id, const uint8_t *sealed,
                   size_t sealed_len, char *token, size_t cap)
{
	uint8_t info[23 + 32 + 128];
	size_t info_len, n;
	int r;
	if (!token || cap == 0)
		return OTA_ERR_ARG;
	if ((r = build_info(info, sizeof info, "otaflow-token/v1 bearer", key_id, device_id, &info_len)) != OTA_OK)
		return r;
	if (cap < 2)
		return OTA_ERR_BUFFER;
	r = ota_hpke_open(k, info, info_len, sealed, sealed_len, (uint8_t *)token, cap - 1, &n);
	if (r != OTA_OK)
		return r;
	if (n < 1 || n > OTA_TOKEN_MAX || !b64token(token, n)) {
		memset(token, 0, cap);
		return OTA_ERR_UNWRAP;
	}
	token[n] = 0;
	return OTA_OK;
}
