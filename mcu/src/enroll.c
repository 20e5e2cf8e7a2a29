/* Enrollment request and answer (docs/protocol.md "POST /v1/enroll"),
 * with the field rules of protocol/v1/validate.go. */
#include <string.h>

#include "ota_enroll.h"
#include "ota_json.h"

static int id_ok(const char *s, size_t max)
{
	size_t i, n = s ? strlen(s) : 0;
	if (n == 0 || n > max)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == ':' || c == '-'))
			return 0;
	}
	return 1;
}

static int alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

/* ^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$, at most 63 */
static int label_name_ok(const char *s, size_t n)
{
	size_t i;
	if (n == 0 || n > 63 || !alnum(s[0]) || !alnum(s[n - 1]))
		return 0;
	for (i = 0; i < n; i++)
		if (!alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return 0;
	return 1;
}

static int label_key_ok(const char *k)
{
	const char *slash = strrchr(k, '/'), *name = k, *p;
	if (slash) {
		size_t plen = (size_t)(slash - k);
		if (plen == 0 || plen > 253)
			return 0;
		/* lowercase DNS subdomain: parts of [a-z0-9-], alphanumeric ends */
		for (p = k; p < slash;) {
			const char *e = memchr(p, '.', (size_t)(slash - p));
			const char *q;
			if (!e)
				e = slash;
			if (e == p || *p == '-' || e[-1] == '-')
				return 0;
			for (q = p; q < e; q++)
				if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '-'))
					return 0;
			p = e < slash ? e + 1 : e;
			if (e < slash && p == slash)
				return 0;
		}
		name = slash + 1;
	}
	return label_name_ok(name, strlen(name));
}

static int version_ok(const char *s)
{
	size_t i, n = s ? strlen(s) : 0;
	if (n == 0 || n > 128)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] > '~')
			return 0;
	return 1;
}

/* Small-order X25519 points with canonical encodings: 0, 1, the two
 * points of order 8, and p − 1 (RFC 7748 §6.1; larger encodings fail the
 * canonical check). */
static const uint8_t small_order[5][32] = {
    {0},
    {1},
    {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
     0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
    {0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b,
     0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}};

int ota_check_public_key(int kem, const uint8_t *pub, size_t len)
{
	if (kem == OTA_KEM_X25519) {
		int i;
		if (len != 32 || (pub[31] & 0x80))
			return OTA_ERR_ARG;
		/* canonical: u < p = 2^255 − 19, i.e. not 0x7fff…ffed..0x7fff…ffff */
		if (pub[31] == 0x7f && pub[0] >= 0xed) {
			for (i = 1; i < 31 && pub[i] == 0xff; i++)
				;
			if (i == 31)
				return OTA_ERR_ARG;
		}
		for (i = 0; i < 5; i++)
			if (memcmp(pub, small_order[i], 32) == 0)
				return OTA_ERR_ARG;
		return OTA_OK;
	}
	if (kem == OTA_KEM_P256) {
		/* ECDH with the scalar 1 checks the point through the port. */
		uint8_t one[32] = {0}, x[32];
		one[31] = 1;
		if (len != 65 || pub[0] != 0x04)
			return OTA_ERR_ARG;
		return ota_p256_ecdh(x, one, pub) == OTA_OK ? OTA_OK : OTA_ERR_ARG;
	}
	return OTA_ERR_ARG;
}

int ota_enroll_validate(const ota_enroll_req *r, const char **field)
{
	const char *f = NULL;
	size_t i, tl;
	if (!r)
		return OTA_ERR_ARG;
	tl = r->bootstrap_token ? strlen(r->bootstrap_token) : 0;
	if (!id_ok(r->device_id, 128))
		f = "deviceID";
	else if (tl < 32 || tl > 512)
		f = "bootstrapToken";
	else if (!r->key || (r->key->kem != OTA_KEM_X25519 && r->key->kem != OTA_KEM_P256))
		f = "kem";
	else if (ota_check_public_key(r->key->kem, r->key->pub, r->key->pub_len) != OTA_OK)
		f = "publicKey";
	else if (!id_ok(r->device_type, 63))
		f = "deviceType";
	else if (r->n_labels > OTA_MAX_LABELS || (r->n_labels && (!r->label_keys || !r->label_values)))
		f = "labels";
	else {
		for (i = 0; i < r->n_labels && !f; i++) {
			const char *v = r->label_values[i];
			if (!r->label_keys[i] || !v || !label_key_ok(r->label_keys[i]) || (*v && !label_name_ok(v, strlen(v))))
				f = "labels";
		}
		if (!f && !version_ok(r->version))
			f = "version";
		else if (!f && r->security_floor > 0xffffffffu)
			f = "securityFloor";
	}
	if (field)
		*field = f;
	return f ? OTA_ERR_ARG : OTA_OK;
}

int ota_enroll_body(const ota_enroll_req *r, char *buf, size_t cap, size_t *len, const char **field)
{
	ota_jw w;
	char pub[92];
	size_t i;
	int e;
	if ((e = ota_enroll_validate(r, field)) != OTA_OK)
		return e;
	if ((e = ota_b64_encode(r->key->pub, r->key->pub_len, pub, sizeof pub, NULL)) != OTA_OK)
		return e;
	ota_jw_init(&w, buf, cap);
	ota_jw_obj_open(&w);
	ota_jw_key(&w, "deviceID");
	ota_jw_str(&w, r->device_id);
	ota_jw_key(&w, "bootstrapToken");
	ota_jw_str(&w, r->bootstrap_token);
	ota_jw_key(&w, "kem");
	ota_jw_str(&w, r->key->kem == OTA_KEM_X25519 ? "x25519" : "p256");
	ota_jw_key(&w, "publicKey");
	ota_jw_str(&w, pub);
	ota_jw_key(&w, "deviceType");
	ota_jw_str(&w, r->device_type);
	if (r->n_labels) {
		ota_jw_key(&w, "labels");
		ota_jw_obj_open(&w);
		for (i = 0; i < r->n_labels; i++) {
			ota_jw_key(&w, r->label_keys[i]);
			ota_jw_str(&w, r->label_values[i]);
		}
		ota_jw_obj_close(&w);
	}
	ota_jw_key(&w, "version");
	ota_jw_str(&w, r->version);
	ota_jw_key(&w, "securityFloor");
	ota_jw_u64(&w, r->security_floor);
	ota_jw_obj_close(&w);
	if ((e = ota_jw_end(&w)) != OTA_OK)
		return e;
	if (len)
		*len = w.len;
	return OTA_OK;
}

#define ENROLL_TOKENS 16

int ota_enroll_answer(const ota_device_key *k, const char *device_id, const char *body, size_t len, char *token,
                      size_t cap, uint8_t key_id[32])
{
	ota_json_tok t[ENROLL_TOKENS];
	char id[128 + 1], kid[65];
	uint8_t sealed[200];
	size_t n;
	int nt, v;
	if (!k || !device_id || !body || !token || !key_id)
		return OTA_ERR_ARG;
	nt = ota_json_parse(body, len, t, ENROLL_TOKENS, 2);
	if (nt < 1 || t[0].type != OTA_JSON_OBJECT)
		return OTA_ERR_MALFORMED;
	/* A clear token is refused: the server never sends one. */
	if (ota_json_get(body, t, nt, 0, "token") >= 0)
		return OTA_ERR_MALFORMED;
	v = ota_json_get(body, t, nt, 0, "deviceID");
	if (v < 0 || t[v].type != OTA_JSON_STRING || ota_json_str(body, &t[v], id, sizeof id, NULL) != OTA_OK ||
	    strcmp(id, device_id) != 0)
		return OTA_ERR_WRONG_DEVICE;
	v = ota_json_get(body, t, nt, 0, "assignmentKeyID");
	/* Lowercase only, as info is built from it. */
	if (v < 0 || t[v].type != OTA_JSON_STRING || ota_json_str(body, &t[v], kid, sizeof kid, &n) != OTA_OK ||
	    ota_hex32_decode(kid, n, key_id) != OTA_OK)
		return OTA_ERR_MALFORMED;
	v = ota_json_get(body, t, nt, 0, "sealedToken");
	if (v < 0 || t[v].type != OTA_JSON_STRING ||
	    ota_b64_decode(body + t[v].start, t[v].end - t[v].start, sealed, sizeof sealed, &n) != OTA_OK)
		return OTA_ERR_MALFORMED;
	return ota_open_token(k, key_id, device_id, sealed, n, token, cap);
}
