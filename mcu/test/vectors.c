/* The conformance runner: every vector of testdata/conformance against
 * the library (docs/conformance.md says how each file is run). Portable
 * C99 with static buffers, so the same code runs under QEMU. */
#include <stdio.h>
#include <string.h>

#include "ota_assignment.h"
#include "ota_enroll.h"
#include "ota_envelope.h"
#include "ota_hpke.h"
#include "ota_json.h"
#include "ota_keyset.h"
#include "vectors.h"

const char *const vec_files[] = {"1-chunks.json", "2-unwrap.json", "3-assignments.json", "4-enroll.json",
                                 "5-sealed-token.json", "6-keysets.json", NULL};

#define MAX_TOKENS 40000
static ota_json_tok T[MAX_TOKENS];
static int NT;
static const char *J;

static uint8_t blob[131072];
static uint8_t chunkbuf[(1 << 20) + 16]; /* up to the largest chunk size */
static uint8_t scratch[OTA_MAX_PAYLOAD + 8];

/* --- access to the vector file's tokens ------------------------------- */

static int get(int obj, const char *key) { return obj < 0 ? -1 : ota_json_get(J, T, NT, obj, key); }

static int has(int obj, const char *key) { return get(obj, key) >= 0; }

static const char *str(int obj, const char *key, char *buf, size_t cap)
{
	int v = get(obj, key);
	buf[0] = 0;
	if (v >= 0 && T[v].type == OTA_JSON_STRING)
		ota_json_str(J, &T[v], buf, cap, NULL);
	return buf;
}

/* hex field into out; returns the length or -1 */
static long hex(int obj, const char *key, uint8_t *out, size_t cap)
{
	int v = get(obj, key);
	size_t n;
	if (v < 0 || T[v].type != OTA_JSON_STRING)
		return -1;
	if (ota_hex_decode(J + T[v].start, T[v].end - T[v].start, out, cap, &n) != OTA_OK)
		return -1;
	return (long)n;
}

static uint64_t num(int obj, const char *key)
{
	int v = get(obj, key);
	uint64_t x = 0;
	char b[32];
	if (v >= 0 && T[v].type == OTA_JSON_NUMBER)
		ota_json_u64(J, &T[v], &x);
	else if (v >= 0 && T[v].type == OTA_JSON_STRING && ota_json_str(J, &T[v], b, sizeof b, NULL) == OTA_OK) {
		const char *p;
		for (p = b; *p >= '0' && *p <= '9'; p++)
			x = x * 10 + (uint64_t)(*p - '0');
	}
	return x;
}

static int kem_of(const char *s) { return !strcmp(s, "x25519") ? OTA_KEM_X25519 : !strcmp(s, "p256") ? OTA_KEM_P256 : 0; }

static const char *verdict(int r) { return r == OTA_OK ? "accept" : ota_err_code(r); }

/* --- 1-chunks.json ------------------------------------------------------ */

typedef struct {
	ota_sha256_ctx h;
	uint64_t n;
	uint64_t next;
	int order_ok;
} sinkstate;

static int sink(void *arg, uint64_t index, const uint8_t *p, size_t n)
{
	sinkstate *s = arg;
	if (index != s->next)
		s->order_ok = 0;
	s->next = index + 1;
	ota_sha256_update(&s->h, p, n);
	s->n += n;
	return 0;
}

static int run_chunk(int v, char *why, size_t whycap)
{
	uint8_t key[32], hdr[OTA_ENV_HEADER_SIZE], want[32], got[32];
	long n = hex(v, "blob", blob, sizeof blob), off = 0;
	uint64_t enc = num(v, "encryptedSize"), start = 0;
	int res = get(v, "resume"), inter = get(v, "intermediates"), r;
	static const size_t pieces[] = {1, 13, 4096, 100, 57, 20000};
	size_t pos, i = 0;
	ota_env_dec d;
	sinkstate s;
	if (n < 0 || hex(v, "key", key, 32) != 32) {
		snprintf(why, whycap, "vector does not parse");
		return -999;
	}
	if (inter >= 0) {
		/* Key derivation before AES: commitment and payload key. */
		uint8_t salt[16], c[32], pk[32], wc[32], wpk[32];
		if (hex(inter, "salt", salt, 16) == 16 && hex(inter, "commitment", wc, 32) == 32 &&
		    hex(inter, "payloadKey", wpk, 32) == 32) {
			ota_env_derive(key, salt, c, pk);
			if (memcmp(c, wc, 32) || memcmp(pk, wpk, 32)) {
				snprintf(why, whycap, "key derivation differs from intermediates");
				return -999;
			}
		}
	}
	if (res >= 0) {
		if (hex(res, "header", hdr, sizeof hdr) != OTA_ENV_HEADER_SIZE)
			return OTA_ERR_FORMAT;
		start = num(res, "startChunk");
		off = (long)num(res, "offset");
	} else {
		if (n < OTA_ENV_HEADER_SIZE)
			return OTA_ERR_TRUNCATED;
		memcpy(hdr, blob, OTA_ENV_HEADER_SIZE);
		off = 0;
	}
	/* Known size: the bytes must be exactly what the size declares. */
	if ((uint64_t)n + (uint64_t)off != enc)
		return (uint64_t)n + (uint64_t)off < enc ? OTA_ERR_TRUNCATED : OTA_ERR_TRAILING;
	if ((r = ota_env_init(&d, hdr, key, enc, start, chunkbuf, sizeof chunkbuf)) != OTA_OK)
		return r;
	if (res >= 0 && (uint64_t)off != ota_env_chunk_offset(&d, start)) {
		ota_env_free(&d);
		return OTA_ERR_FORMAT; /* resuming must start at the chunk */
	}
	pos = res >= 0 ? 0 : OTA_ENV_HEADER_SIZE;
	memset(&s, 0, sizeof s);
	s.next = start;
	s.order_ok = 1;
	ota_sha256_init(&s.h);
	while (pos < (size_t)n) {
		size_t take = pieces[i++ % 6];
		if (take > (size_t)n - pos)
			take = (size_t)n - pos;
		if ((r = ota_env_feed(&d, blob + pos, take, sink, &s)) != OTA_OK)
			break;
		pos += take;
	}
	if (r == OTA_OK)
		r = ota_env_finish(&d);
	ota_env_free(&d);
	ota_sha256_final(&s.h, got);
	if (r != OTA_OK)
		return r;
	if (!s.order_ok) {
		snprintf(why, whycap, "chunks released out of order");
		return -999;
	}
	if (hex(v, "plaintextSHA256", want, 32) != 32 || memcmp(got, want, 32) ||
	    (has(v, "plaintextSize") && num(v, "plaintextSize") != s.n)) {
		snprintf(why, whycap, "accepted, but the plaintext differs (%lu bytes)", (unsigned long)s.n);
		return -999;
	}
	return OTA_OK;
}

/* --- 2-unwrap.json ------------------------------------------------------ */

static int device_key(int v, ota_device_key *k, char *why, size_t whycap)
{
	char b[16];
	uint8_t priv[32], pub[65];
	int kem = kem_of(str(v, "kem", b, sizeof b));
	long pl = hex(v, "publicKey", pub, sizeof pub);
	if (hex(v, "privateKey", priv, 32) != 32 || !kem || ota_device_key_from_priv(k, kem, priv) != OTA_OK) {
		snprintf(why, whycap, "device key does not load");
		return -1;
	}
	if (pl != k->pub_len || memcmp(pub, k->pub, (size_t)pl)) {
		snprintf(why, whycap, "public key derived from the private key differs");
		return -1;
	}
	return 0;
}

static int run_unwrap(int v, char *why, size_t whycap)
{
	ota_device_key k;
	uint8_t digest[32], wrapped[256], info[256], want_info[256], key[32], want[32];
	char id[200];
	long wl = hex(v, "wrapped", wrapped, sizeof wrapped), il = hex(v, "info", want_info, sizeof want_info);
	size_t idl;
	int r;
	if (device_key(v, &k, why, whycap) || hex(v, "blobDigest", digest, 32) != 32 || wl < 0)
		return -999;
	str(v, "deviceID", id, sizeof id);
	idl = strlen(id);
	memcpy(info, "otaflow-enc/v1 key", 18);
	memcpy(info + 18, digest, 32);
	memcpy(info + 50, id, idl);
	if (il != (long)(50 + idl) || memcmp(info, want_info, (size_t)il)) {
		snprintf(why, whycap, "info differs from the vector's");
		return -999;
	}
	if ((r = ota_unwrap_key(&k, digest, id, wrapped, (size_t)wl, key)) != OTA_OK)
		return r;
	if (hex(v, "contentKey", want, 32) != 32 || memcmp(key, want, 32)) {
		snprintf(why, whycap, "opened to another key");
		return -999;
	}
	return OTA_OK;
}

/* --- 3-assignments.json ------------------------------------------------- */

static int load_key(int keys, const char *name, ota_pubkey *k, char *why, size_t whycap)
{
	int e = get(keys, name);
	char alg[32];
	uint8_t raw[65], id[32], pkix[128];
	long n = hex(e, "publicKey", raw, sizeof raw), pn = hex(e, "pkix", pkix, sizeof pkix);
	ota_pubkey viaspki;
	str(e, "alg", alg, sizeof alg);
	if (e < 0 || n < 0 ||
	    ota_pubkey_from_raw(k, !strcmp(alg, "ed25519") ? OTA_ALG_ED25519 : OTA_ALG_P256, raw, (size_t)n) != OTA_OK ||
	    hex(e, "keyID", id, 32) != 32 || memcmp(id, k->key_id, 32) || pn < 0 ||
	    ota_pubkey_from_spki(&viaspki, pkix, (size_t)pn) != OTA_OK || memcmp(&viaspki, k, sizeof viaspki)) {
		snprintf(why, whycap, "key %s: raw, PKIX and key ID disagree", name);
		return -1;
	}
	return 0;
}

/* 3-assignments' refusals speak of one pinned key: a keyID naming no
 * trusted key is its bad-signature; this library names it more finely. */
static int same_class(const char *got, const char *want)
{
	return !strcmp(got, want) || (!strcmp(want, "bad-signature") && !strcmp(got, "untrusted-signing-key"));
}

static int run_assignment(int v, int keys, char *why, size_t whycap, const char **got_verifier)
{
	char name[32], devid[160], kem[16], nonce[160], run[160], now[64];
	int dev = get(v, "device"), resp = get(v, "response"), r;
	ota_pubkey key;
	ota_trust trust;
	ota_device_state st;
	ota_update_answer a;
	ota_assignment out;
	uint64_t floor;
	int32_t ns;
	*got_verifier = NULL;
	if (load_key(keys, str(v, "trustedKey", name, sizeof name), &key, why, whycap) || dev < 0 || resp < 0)
		return -999;
	trust.keys = &key;
	trust.n = 1;
	memset(&st, 0, sizeof st);
	st.device_id = str(dev, "deviceID", devid, sizeof devid);
	st.kem = kem_of(str(dev, "kem", kem, sizeof kem));
	st.nonce = str(dev, "nonce", nonce, sizeof nonce);
	st.running_version = str(dev, "runningVersion", run, sizeof run);
	st.security_floor = num(dev, "securityFloor");
	st.skew = (uint32_t)num(dev, "clockSkewSeconds");
	str(dev, "now", now, sizeof now);
	if (ota_parse_time(now, strlen(now), &st.now, &ns) != OTA_OK) {
		snprintf(why, whycap, "device.now does not parse");
		return -999;
	}
	/* The answer as on the wire: the vector's JSON text of it. */
	r = ota_answer_parse(J + T[resp].start, T[resp].end - T[resp].start, &a, scratch, sizeof scratch);
	if (r != OTA_OK)
		return r;
	if (a.has_assignment) {
		int vr = ota_assignment_verify(&trust, a.key_id, a.payload, a.payload_len, a.signature, a.signature_len,
		                               &st, &out);
		*got_verifier = verdict(vr);
	}
	r = ota_answer_check(&trust, &a, &st, &out, &floor);
	if (r == OTA_OK && has(v, "securityFloorAfter") && num(v, "securityFloorAfter") != floor) {
		snprintf(why, whycap, "floor after is %lu", (unsigned long)floor);
		return -999;
	}
	return r;
}

/* --- 4-enroll.json ------------------------------------------------------ */

/* The server's side of a request, around the device-side library checks:
 * strict decoding (malformed_json), the bootstrap token first, then
 * ota_enroll_validate's field rules (bad_request), then its store. */
typedef struct {
	char id[200], token[600], kem[32], pubb64[200], type[100], version[200];
	char lk[OTA_MAX_LABELS + 8][300], lv[OTA_MAX_LABELS + 8][100];
	const char *lkp[OTA_MAX_LABELS + 8], *lvp[OTA_MAX_LABELS + 8];
	size_t nl;
	uint64_t floor;
	int floor_negative;
} enroll_in;

static int same_request(const enroll_in *a, const enroll_in *b)
{
	size_t i;
	if (strcmp(a->id, b->id) || strcmp(a->token, b->token) || strcmp(a->kem, b->kem) || strcmp(a->pubb64, b->pubb64) ||
	    strcmp(a->type, b->type) || strcmp(a->version, b->version) || a->nl != b->nl || a->floor != b->floor)
		return 0;
	for (i = 0; i < a->nl; i++)
		if (strcmp(a->lk[i], b->lk[i]) || strcmp(a->lv[i], b->lv[i]))
			return 0;
	return 1;
}

static const char *const enroll_fields[] = {"deviceID", "bootstrapToken", "kem", "publicKey", "deviceType", "labels", "version", "securityFloor"};

static int decode_enroll(const char *js, const ota_json_tok *t, int nt, int obj, enroll_in *in)
{
	uint32_t seen;
	int i, v;
	memset(in, 0, sizeof *in);
	if (obj < 0 || t[obj].type != OTA_JSON_OBJECT ||
	    ota_json_check_keys(js, t, nt, obj, enroll_fields, 8, &seen) != OTA_OK)
		return -1;
	for (i = 0; i < 8; i++) {
		char *dst[8] = {in->id, in->token, in->kem, in->pubb64, in->type, NULL, in->version, NULL};
		size_t cap[8] = {sizeof in->id, sizeof in->token, sizeof in->kem, sizeof in->pubb64, sizeof in->type, 0, sizeof in->version, 0};
		if (!(seen >> i & 1))
			continue;
		v = ota_json_get(js, t, nt, obj, enroll_fields[i]);
		if (dst[i]) {
			if (t[v].type != OTA_JSON_STRING || ota_json_str(js, &t[v], dst[i], cap[i], NULL) != OTA_OK)
				return -1;
		} else if (i == 7) {
			/* an integer: a negative one decodes and is out of range */
			if (t[v].type != OTA_JSON_NUMBER)
				return -1;
			if (js[t[v].start] == '-') {
				uint64_t x;
				ota_json_tok pos = t[v];
				pos.start++;
				if (ota_json_u64(js, &pos, &x) != OTA_OK)
					return -1;
				in->floor_negative = 1;
			} else if (ota_json_u64(js, &t[v], &in->floor) != OTA_OK) {
				return -1;
			}
		} else {
			int k = v + 1;
			size_t a, b;
			if (t[v].type != OTA_JSON_OBJECT || t[v].size > OTA_MAX_LABELS + 8)
				return -1;
			for (in->nl = 0; in->nl < t[v].size; in->nl++) {
				if (ota_json_str(js, &t[k], in->lk[in->nl], sizeof in->lk[0], NULL) != OTA_OK ||
				    t[k + 1].type != OTA_JSON_STRING ||
				    ota_json_str(js, &t[k + 1], in->lv[in->nl], sizeof in->lv[0], NULL) != OTA_OK)
					return -1;
				in->lkp[in->nl] = in->lk[in->nl];
				in->lvp[in->nl] = in->lv[in->nl];
				k = (int)t[k + 1].next;
			}
			for (a = 0; a < in->nl; a++) /* duplicate label keys */
				for (b = a + 1; b < in->nl; b++)
					if (!strcmp(in->lk[a], in->lk[b]))
						return -1;
		}
	}
	return 0;
}

/* returns the server's class; *field the bad_request field */
static const char *enroll_class(enroll_in *in, const char *server_token, ota_device_key *key, const char **field)
{
	ota_enroll_req r;
	size_t n;
	int kem = kem_of(in->kem);
	*field = NULL;
	if (strcmp(in->token, server_token) != 0)
		return "bad_bootstrap_token";
	memset(key, 0, sizeof *key);
	key->kem = (uint8_t)kem;
	/* publicKey: strict standard base64, then the key rules */
	if (kem && ota_b64_decode(in->pubb64, strlen(in->pubb64), key->pub, sizeof key->pub, &n) == OTA_OK)
		key->pub_len = (uint8_t)n;
	else if (kem)
		key->pub_len = 0; /* refused as publicKey */
	memset(&r, 0, sizeof r);
	r.device_id = in->id;
	r.bootstrap_token = in->token;
	r.key = key;
	r.device_type = in->type;
	r.label_keys = in->lkp;
	r.label_values = in->lvp;
	r.n_labels = in->nl;
	r.version = in->version;
	r.security_floor = in->floor_negative ? (uint64_t)1 << 40 : in->floor;
	if (!kem)
		key->kem = 0;
	if (ota_enroll_validate(&r, field) != OTA_OK)
		return "bad_request";
	return "accept";
}

static int run_enroll(int v, char *why, size_t whycap, const char **got)
{
	static enroll_in in, again;
	char server_token[600], want[40], body[4096];
	const char *field = NULL;
	int req = get(v, "request"), before = get(v, "before");
	static ota_device_key key;
	str(0, "bootstrapToken", server_token, sizeof server_token);
	str(v, "expect", want, sizeof want);
	if (req < 0) {
		/* rawBody: the text must not decode as a request */
		char raw[512];
		static ota_json_tok t[64];
		int nt;
		str(v, "rawBody", raw, sizeof raw);
		nt = ota_json_parse(raw, strlen(raw), t, 64, 4);
		*got = nt < 1 || decode_enroll(raw, t, nt, 0, &in) ? "malformed_json" : "accept";
		return 0;
	}
	if (decode_enroll(J, T, NT, req, &in)) {
		*got = "malformed_json";
		return 0;
	}
	*got = enroll_class(&in, server_token, &key, &field);
	if (!strcmp(*got, "bad_request")) {
		char wf[40];
		if (strcmp(str(v, "field", wf, sizeof wf), field ? field : "")) {
			snprintf(why, whycap, "bad_request names %s, want %s", field ? field : "-", wf);
			return -1;
		}
	}
	if (!strcmp(*got, "accept") && before >= 0) {
		/* The store: an ID enrolled before with another key or KEM. */
		int i, k = before + 1;
		for (i = 0; i < (int)T[before].size; i++, k = (int)T[k].next) {
			static enroll_in b;
			static ota_device_key bk;
			const char *bf;
			if (decode_enroll(J, T, NT, k, &b) || strcmp(enroll_class(&b, server_token, &bk, &bf), "accept")) {
				snprintf(why, whycap, "a request of before is not accepted");
				return -1;
			}
			if (!strcmp(b.id, in.id) && (bk.kem != key.kem || bk.pub_len != key.pub_len ||
			                              memcmp(bk.pub, key.pub, key.pub_len)))
				*got = "key_mismatch";
		}
	}
	if (!strcmp(*got, "accept")) {
		/* The body the library builds decodes to the same request. */
		ota_enroll_req r;
		size_t n;
		static ota_json_tok t[128];
		int nt;
		memset(&r, 0, sizeof r);
		r.device_id = in.id;
		r.bootstrap_token = in.token;
		r.key = &key;
		r.device_type = in.type;
		r.label_keys = in.lkp;
		r.label_values = in.lvp;
		r.n_labels = in.nl;
		r.version = in.version;
		r.security_floor = in.floor;
		if (ota_enroll_body(&r, body, sizeof body, &n, &field) != OTA_OK ||
		    (nt = ota_json_parse(body, n, t, 128, 4)) < 1 || decode_enroll(body, t, nt, 0, &again) ||
		    !same_request(&in, &again)) {
			snprintf(why, whycap, "the body built from this request differs: %.160s", body);
			return -1;
		}
	}
	return 0;
}

/* --- 5-sealed-token.json ------------------------------------------------ */

static int run_sealed(int v, char *why, size_t whycap)
{
	ota_device_key k;
	char id[200], token[OTA_TOKEN_MAX + 1], want[OTA_TOKEN_MAX + 1];
	uint8_t kid[32];
	int resp = get(v, "response"), r;
	if (device_key(v, &k, why, whycap) || resp < 0)
		return -999;
	str(v, "deviceID", id, sizeof id);
	r = ota_enroll_answer(&k, id, J + T[resp].start, T[resp].end - T[resp].start, token, sizeof token, kid);
	if (r != OTA_OK)
		return r;
	if (strcmp(token, str(v, "token", want, sizeof want)) != 0) {
		snprintf(why, whycap, "opened to %.100s", token);
		return -999;
	}
	return OTA_OK;
}

/* --- 6-keysets.json ---------------------------------------------------- */

static int trust_of(int keys, int list, ota_pubkey *out, size_t *n, char *why, size_t whycap)
{
	int i, e;
	char name[32];
	*n = 0;
	if (list < 0 || T[list].type != OTA_JSON_ARRAY)
		return -1;
	for (i = 0, e = list + 1; i < (int)T[list].size; i++, e = (int)T[e].next) {
		ota_json_str(J, &T[e], name, sizeof name, NULL);
		if (load_key(keys, name, &out[(*n)++], why, whycap))
			return -1;
	}
	return 0;
}

static int run_keyset(int v, int keys, char *why, size_t whycap)
{
	static ota_pubkey held[OTA_KEYSET_MAX_KEYS], got[OTA_KEYSET_MAX_KEYS], want[OTA_KEYSET_MAX_KEYS];
	int tr = get(v, "trusted"), ks = get(v, "keySet"), as = get(v, "assignment"), after = get(v, "after"), r;
	size_t nheld, ngot, nwant, i;
	uint64_t serial;
	ota_trust trust;
	if (tr < 0 || trust_of(keys, get(tr, "keys"), held, &nheld, why, whycap))
		return -999;
	trust.keys = held;
	trust.n = nheld;
	serial = num(tr, "serial");
	if (as >= 0) {
		/* An assignment checked with the trusted key its keyID names. */
		char dev[160], now[64], kid[80];
		ota_device_state st;
		ota_assignment out;
		size_t plen, slen;
		uint8_t sig[128];
		int p = get(as, "payload"), sg = get(as, "signature");
		int32_t ns;
		memset(&st, 0, sizeof st);
		st.device_id = str(v, "deviceID", dev, sizeof dev);
		st.skew = 300;
		str(v, "now", now, sizeof now);
		if (p < 0 || sg < 0 || ota_parse_time(now, strlen(now), &st.now, &ns) ||
		    ota_b64_decode(J + T[p].start, T[p].end - T[p].start, scratch, sizeof scratch, &plen) ||
		    ota_b64_decode(J + T[sg].start, T[sg].end - T[sg].start, sig, sizeof sig, &slen))
			return OTA_ERR_MALFORMED;
		return ota_assignment_verify(&trust, str(as, "keyID", kid, sizeof kid), scratch, plen, sig, slen, &st, &out);
	}
	if (ks < 0)
		return -999;
	r = ota_keyset_update(&trust, &serial, J + T[ks].start, T[ks].end - T[ks].start, scratch, sizeof scratch, got,
	                      OTA_KEYSET_MAX_KEYS, &ngot);
	if (r != OTA_OK)
		return r;
	if (after < 0 || trust_of(keys, get(after, "keys"), want, &nwant, why, whycap))
		return -999;
	if (serial != num(after, "serial") || ngot != nwant) {
		snprintf(why, whycap, "trust after: serial %lu, %lu keys", (unsigned long)serial, (unsigned long)ngot);
		return -999;
	}
	for (i = 0; i < ngot; i++) { /* the same keys, in any order */
		size_t j;
		for (j = 0; j < nwant && memcmp(&got[i], &want[j], sizeof got[i]); j++)
			;
		if (j == nwant) {
			snprintf(why, whycap, "trust after: key %lu is not expected", (unsigned long)i);
			return -999;
		}
	}
	return OTA_OK;
}

/* --- the loop ----------------------------------------------------------- */

int vec_run_file(const char *name, char *text, size_t len, vec_result *res)
{
	int vecs, i, k, file = (int)(name[0] - '0');
	memset(res, 0, sizeof *res);
	J = text;
	NT = ota_json_parse(text, len, T, MAX_TOKENS, 16);
	if (NT < 1 || (vecs = get(0, "vectors")) < 0 || T[vecs].type != OTA_JSON_ARRAY) {
		printf("FAIL %s: does not parse (%d)\n", name, NT);
		return 1;
	}
	for (i = 0, k = vecs + 1; i < (int)T[vecs].size; i++, k = (int)T[k].next) {
		char vname[128], want[40], why[256] = "";
		const char *got = NULL, *gotv = NULL;
		int r = 0, ok;
		str(k, "name", vname, sizeof vname);
		str(k, "expect", want, sizeof want);
		switch (file) {
		case 1: r = run_chunk(k, why, sizeof why); break;
		case 2: r = run_unwrap(k, why, sizeof why); break;
		case 3: r = run_assignment(k, get(0, "keys"), why, sizeof why, &gotv); break;
		case 4: r = run_enroll(k, why, sizeof why, &got) ? -999 : 0; break;
		case 5: r = run_sealed(k, why, sizeof why); break;
		case 6: r = run_keyset(k, get(0, "keys"), why, sizeof why); break;
		default: printf("FAIL %s: unknown file\n", name); return 1;
		}
		if (!got)
			got = r == -999 ? "error" : verdict(r);
		res->run++;
		if (r == -999)
			ok = 0;
		else if (file == 3 || file == 4)
			ok = same_class(got, want);
		else if (file == 6)
			ok = !strcmp(got, want); /* these classes must match */
		else
			ok = !strcmp(want, "accept") ? !strcmp(got, "accept") : strcmp(got, "accept") != 0;
		if (ok && file == 3 && gotv) {
			char wv[40];
			/* The Go verifier calls a wrong suite malformed; the agent
			 * and this library name it. */
			if (has(k, "verifierExpect") && !same_class(gotv, str(k, "verifierExpect", wv, sizeof wv)) &&
			    !(!strcmp(wv, "malformed") && !strcmp(gotv, "unsupported-suite"))) {
				ok = 0;
				snprintf(why, sizeof why, "verifier stage: %s, want %s", gotv, wv);
			}
		}
		if (ok) {
			res->passed++;
			if (strcmp(want, "accept") && !strcmp(got, want))
				res->class_exact++;
		} else {
			printf("FAIL %s %s: got %s, want %s %s\n", name, vname, got, want, why);
		}
	}
	printf("%s: %d/%d vectors passed (refusals with the Go class: %d)\n", name, res->passed, res->run,
	       res->class_exact);
	return res->passed == res->run && res->run > 0 ? 0 : 1;
}
