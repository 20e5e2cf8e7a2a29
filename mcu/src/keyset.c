/* Key sets (assignment.Trust.Update in Go). */
#include <string.h>

#include "ota_enroll.h"
#include "ota_json.h"
#include "ota_keyset.h"

static const char domain[] = "otaflow-keyset/v1\n";

#define SIG_TOKENS (1 + 2 + 2 + 1 + OTA_KEYSET_MAX_KEYS * 5 + 8)
#define SET_TOKENS (1 + 4 + 1 + OTA_KEYSET_MAX_KEYS * 7 + 8)

static int verify(const ota_pubkey *k, const uint8_t *payload, size_t len, const uint8_t *sig, size_t sig_len)
{
	return ota_signature_verify(k, domain, payload, len, sig, sig_len) == OTA_OK;
}

/* A signature entry: its key ID (raw, when well formed) and bytes. */
typedef struct {
	uint8_t id[32];
	int id_ok;
	uint8_t sig[80];
	size_t sig_len;
} entry;

static int decode_sig(const char *js, const ota_json_tok *t, int nt, int e, entry *s)
{
	static const char *const f[] = {"keyID", "signature"};
	uint32_t seen;
	char kid[66];
	size_t n;
	int v;
	memset(s, 0, sizeof *s);
	if (t[e].type != OTA_JSON_OBJECT || ota_json_check_keys(js, t, nt, e, f, 2, &seen) != OTA_OK || seen != 3)
		return OTA_ERR_MALFORMED;
	v = ota_json_get(js, t, nt, e, "keyID");
	if (t[v].type != OTA_JSON_STRING)
		return OTA_ERR_MALFORMED;
	s->id_ok = ota_json_str(js, &t[v], kid, sizeof kid, &n) == OTA_OK && ota_hex32_decode(kid, n, s->id) == OTA_OK;
	v = ota_json_get(js, t, nt, e, "signature");
	if (t[v].type != OTA_JSON_STRING)
		return OTA_ERR_MALFORMED;
	if (ota_b64_decode(js + t[v].start, t[v].end - t[v].start, s->sig, sizeof s->sig, &s->sig_len) != OTA_OK)
		s->sig_len = 0; /* too long for any key: it cannot verify */
	return OTA_OK;
}

static const ota_pubkey *find(const ota_pubkey *keys, size_t n, const uint8_t id[32])
{
	ota_trust t;
	t.keys = keys, t.n = n;
	return ota_trust_find(&t, id);
}

static int parse_set(const char *js, size_t len, uint64_t *serial, ota_pubkey *keys, size_t cap, size_t *n)
{
	static const char *const top[] = {"serial", "keys"};
	static const char *const kf[] = {"keyID", "algorithm", "publicKey"};
	ota_json_tok t[SET_TOKENS];
	uint32_t seen;
	int nt, v, e, i, arr;
	nt = ota_json_parse(js, len, t, SET_TOKENS, 3);
	if (nt < 1 || t[0].type != OTA_JSON_OBJECT || ota_json_check_keys(js, t, nt, 0, top, 2, &seen) != OTA_OK ||
	    seen != 3)
		return OTA_ERR_MALFORMED;
	v = ota_json_get(js, t, nt, 0, "serial");
	if (ota_json_u64(js, &t[v], serial) != OTA_OK || *serial < 1 || *serial > ((uint64_t)1 << 53) - 1)
		return OTA_ERR_MALFORMED;
	arr = ota_json_get(js, t, nt, 0, "keys");
	if (t[arr].type != OTA_JSON_ARRAY || t[arr].size < 1 || t[arr].size > OTA_KEYSET_MAX_KEYS || t[arr].size > cap)
		return OTA_ERR_MALFORMED;
	*n = 0;
	for (i = 0, e = arr + 1; i < (int)t[arr].size; i++, e = (int)t[e].next) {
		char kid[66], alg[24];
		uint8_t der[128], id[32];
		size_t dl, kl;
		int a, k;
		if (t[e].type != OTA_JSON_OBJECT || ota_json_check_keys(js, t, nt, e, kf, 3, &seen) != OTA_OK || seen != 7)
			return OTA_ERR_MALFORMED;
		k = ota_json_get(js, t, nt, e, "keyID");
		a = ota_json_get(js, t, nt, e, "algorithm");
		v = ota_json_get(js, t, nt, e, "publicKey");
		if (t[k].type != OTA_JSON_STRING || t[a].type != OTA_JSON_STRING || t[v].type != OTA_JSON_STRING ||
		    ota_json_str(js, &t[k], kid, sizeof kid, &kl) != OTA_OK ||
		    ota_json_str(js, &t[a], alg, sizeof alg, NULL) != OTA_OK ||
		    ota_b64_decode(js + t[v].start, t[v].end - t[v].start, der, sizeof der, &dl) != OTA_OK)
			return OTA_ERR_MALFORMED;
		/* Canonical PKIX of an Ed25519 or P-256 key only. */
		if (ota_pubkey_from_spki(&keys[*n], der, dl) != OTA_OK)
			return OTA_ERR_MALFORMED;
		if (keys[*n].alg == OTA_ALG_P256 && ota_check_public_key(OTA_KEM_P256, keys[*n].pub, 65) != OTA_OK)
			return OTA_ERR_MALFORMED; /* not on the curve */
		if (strcmp(alg, keys[*n].alg == OTA_ALG_ED25519 ? "ed25519" : "ecdsa-p256-sha256") != 0)
			return OTA_ERR_MALFORMED;
		if (ota_hex32_decode(kid, kl, id) != OTA_OK || memcmp(id, keys[*n].key_id, 32) != 0)
			return OTA_ERR_MALFORMED;
		if (find(keys, *n, keys[*n].key_id))
			return OTA_ERR_MALFORMED; /* listed twice */
		if (*n > 0 && memcmp(keys[*n - 1].key_id, keys[*n].key_id, 32) > 0)
			return OTA_ERR_MALFORMED; /* ordered by keyID */
		(*n)++;
	}
	return OTA_OK;
}

/* outer parses the body's outer object into t: the payload and signature
 * array tokens. */
static int outer(const char *body, size_t len, ota_json_tok *t, int *nt, int *p, int *sigs)
{
	static const char *const top[] = {"payload", "signatures"};
	uint32_t seen;
	*nt = ota_json_parse(body, len, t, SIG_TOKENS, 3);
	if (*nt < 1 || t[0].type != OTA_JSON_OBJECT || ota_json_check_keys(body, t, *nt, 0, top, 2, &seen) != OTA_OK ||
	    seen != 3)
		return OTA_ERR_MALFORMED;
	*p = ota_json_get(body, t, *nt, 0, "payload");
	*sigs = ota_json_get(body, t, *nt, 0, "signatures");
	if (t[*p].type != OTA_JSON_STRING || t[*sigs].type != OTA_JSON_ARRAY || t[*sigs].size < 1 ||
	    t[*sigs].size > OTA_KEYSET_MAX_KEYS)
		return OTA_ERR_MALFORMED;
	return OTA_OK;
}

/* authentic decodes the payload into scratch and checks step 1: a trusted
 * key signed it, before anything is parsed. The body's tokens live only
 * here and in all_signed, so their frames do not add up with parse_set's. */
static int authentic(const ota_trust *trust, const char *body, size_t len, uint8_t *scratch, size_t scratch_cap,
                     size_t *plen, int *signer)
{
	ota_json_tok t[SIG_TOKENS];
	entry s;
	int nt, p, sigs, e, k, r, named_trusted = 0;
	if ((r = outer(body, len, t, &nt, &p, &sigs)) != OTA_OK)
		return r;
	if (ota_b64_decode(body + t[p].start, t[p].end - t[p].start, scratch,
	                   scratch_cap < OTA_KEYSET_MAX_PAYLOAD ? scratch_cap : OTA_KEYSET_MAX_PAYLOAD, plen) != OTA_OK)
		return OTA_ERR_MALFORMED;
	for (k = 0, e = sigs + 1; k < (int)t[sigs].size; k++, e = (int)t[e].next) {
		const ota_pubkey *tk;
		if ((r = decode_sig(body, t, nt, e, &s)) != OTA_OK)
			return r;
		tk = s.id_ok ? find(trust->keys, trust->n, s.id) : NULL;
		named_trusted |= tk != NULL;
		if (tk && verify(tk, scratch, *plen, s.sig, s.sig_len)) {
			*signer = k;
			return OTA_OK;
		}
	}
	return named_trusted ? OTA_ERR_BAD_SIGNATURE : OTA_ERR_UNTRUSTED_KEY;
}

/* all_signed checks step 3: exactly one valid signature per listed key.
 * Entry signer verified in step 1 already, by the same key (a key ID is the
 * hash of the key). */
static int all_signed(const char *body, size_t len, const uint8_t *payload, size_t plen, const ota_pubkey *keys,
                      size_t n, int signer)
{
	ota_json_tok t[SIG_TOKENS];
	entry s;
	uint32_t signed_mask = 0;
	int nt, p, sigs, e, k, r;
	if ((r = outer(body, len, t, &nt, &p, &sigs)) != OTA_OK)
		return r;
	for (k = 0, e = sigs + 1; k < (int)t[sigs].size; k++, e = (int)t[e].next) {
		const ota_pubkey *lk;
		if ((r = decode_sig(body, t, nt, e, &s)) != OTA_OK)
			return r;
		lk = s.id_ok ? find(keys, n, s.id) : NULL;
		if (!lk || (signed_mask >> (lk - keys) & 1))
			return OTA_ERR_MALFORMED;
		if (k != signer && !verify(lk, payload, plen, s.sig, s.sig_len))
			return OTA_ERR_BAD_SIGNATURE;
		signed_mask |= 1u << (lk - keys);
	}
	return signed_mask == (1u << n) - 1 ? OTA_OK : OTA_ERR_MALFORMED;
}

int ota_keyset_update(const ota_trust *trust, uint64_t *serial, const char *body, size_t len, uint8_t *scratch,
                      size_t scratch_cap, ota_pubkey *keys, size_t keys_cap, size_t *n)
{
	size_t plen, i;
	uint64_t set_serial;
	int r, signer = -1;
	if (!trust || !serial || !body || !scratch || !keys || !n)
		return OTA_ERR_ARG;
	/* 1. Authentic. */
	if ((r = authentic(trust, body, len, scratch, scratch_cap, &plen, &signer)) != OTA_OK)
		return r;
	/* 2. The payload. */
	if ((r = parse_set((const char *)scratch, plen, &set_serial, keys, keys_cap, n)) != OTA_OK)
		return r;
	/* 3. Every listed key signed it. */
	if ((r = all_signed(body, len, scratch, plen, keys, *n, signer)) != OTA_OK)
		return r;
	/* 4. Newer, or the same set again. */
	if (set_serial < *serial)
		return OTA_ERR_STALE;
	if (set_serial == *serial) {
		if (*n != trust->n)
			return OTA_ERR_STALE;
		for (i = 0; i < *n; i++)
			if (!find(trust->keys, trust->n, keys[i].key_id))
				return OTA_ERR_STALE;
	}
	*serial = set_serial;
	return OTA_OK;
}
