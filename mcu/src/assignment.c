/* The update answer and its signed assignment (docs/protocol.md), checked
 * in the order of agent/parse.go and protocol/v1/assignment. */
#include <string.h>

#include "ota_assignment.h"
#include "ota_json.h"

static const char domain[] = "otaflow-assignment/v1\n";
static const char suite_v1[] = "otaflow-enc/v1";

/* --- small validators ------------------------------------------------ */

static int is_namespaced(const char *s)
{
	const char *slash = strchr(s, '/');
	return slash && slash != s && slash[1] && !strchr(slash + 1, '/') && strlen(s) <= OTA_ROLLOUT_MAX;
}

static int is_hex(const char *s, size_t n, int lower_only)
{
	size_t i;
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (!lower_only && c >= 'A' && c <= 'F')))
			return 0;
	}
	return 1;
}

/* Strict base64 of a raw (unescaped) string token: decodes into out, or
 * only validates when the result would not fit (*too_long set). */
static int b64_token(const char *s, size_t n, uint8_t *out, size_t cap, size_t *len, int *too_long)
{
	size_t i, o = 0, k;
	uint8_t q[3];
	if (too_long)
		*too_long = 0;
	if (n % 4)
		return OTA_ERR_MALFORMED;
	for (i = 0; i < n; i += 4) {
		int last = i + 4 == n;
		if (!last && memchr(s + i, '=', 4))
			return OTA_ERR_MALFORMED;
		if (ota_b64_decode(s + i, 4, q, sizeof q, &k) != OTA_OK)
			return OTA_ERR_MALFORMED;
		if (o + k <= cap)
			memcpy(out + o, q, k);
		else if (too_long)
			*too_long = 1;
		else
			return OTA_ERR_MALFORMED;
		o += k;
	}
	*len = o;
	return OTA_OK;
}

static int days_in_month(int64_t y, int m)
{
	static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : d[m - 1];
}

static int digits(const char *s, int n, int *v)
{
	int i;
	*v = 0;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		*v = *v * 10 + (s[i] - '0');
	}
	return 1;
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;
	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int ota_parse_time(const char *s, size_t len, int64_t *sec, int32_t *nsec)
{
	int y, mo, d, h, mi, se, oh = 0, om = 0, ns = 0;
	size_t i = 19;
	int64_t t;
	if (len < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) ||
	    s[16] != ':' || !digits(s + 17, 2, &se))
		return OTA_ERR_MALFORMED;
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59)
		return OTA_ERR_MALFORMED;
	if (s[i] == '.') {
		int nd = 0;
		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (nd < 9)
				ns = ns * 10 + (s[i] - '0');
			nd++;
			i++;
		}
		if (nd == 0)
			return OTA_ERR_MALFORMED;
		for (; nd < 9; nd++)
			ns *= 10;
	}
	if (i < len && s[i] == 'Z') {
		i++;
	} else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2, &oh) && s[i + 3] == ':' &&
	           digits(s + i + 4, 2, &om) && oh <= 23 && om <= 59) {
		if (s[i] == '+') {
			oh = -oh;
			om = -om;
		}
		i += 6;
	} else {
		return OTA_ERR_MALFORMED;
	}
	if (i != len)
		return OTA_ERR_MALFORMED;
	t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
	*sec = t + (int64_t)oh * 3600 + (int64_t)om * 60;
	*nsec = ns;
	return OTA_OK;
}

/* --- the answer ------------------------------------------------------- */

#define ANSWER_TOKENS 24

int ota_answer_parse(const char *body, size_t len, ota_update_answer *a, uint8_t *scratch, size_t scratch_cap)
{
	static const char *const top[] = {"action", "rollout", "assignment", "reason"};
	static const char *const sig[] = {"payload", "signature", "keyID"};
	ota_json_tok t[ANSWER_TOKENS];
	char action[16];
	uint32_t seen;
	int n, v, s;
	size_t k;
	if (!body || !a || !scratch)
		return OTA_ERR_ARG;
	memset(a, 0, sizeof *a);
	n = ota_json_parse(body, len, t, ANSWER_TOKENS, 4);
	if (n < 1 || t[0].type != OTA_JSON_OBJECT)
		return OTA_ERR_MALFORMED;
	if (ota_json_check_keys(body, t, n, 0, top, 4, &seen) != OTA_OK || (seen & 3) != 3)
		return OTA_ERR_MALFORMED;
	if (ota_json_str(body, &t[ota_json_get(body, t, n, 0, "action")], action, sizeof action, NULL) != OTA_OK)
		return OTA_ERR_MALFORMED;
	if (ota_json_str(body, &t[ota_json_get(body, t, n, 0, "rollout")], a->rollout, sizeof a->rollout, NULL) !=
	        OTA_OK ||
	    !is_namespaced(a->rollout))
		return OTA_ERR_MALFORMED;
	if (!strcmp(action, "install"))
		a->action = OTA_ACTION_INSTALL;
	else if (!strcmp(action, "rollback"))
		a->action = OTA_ACTION_ROLLBACK;
	else if (!strcmp(action, "commit"))
		a->action = OTA_ACTION_COMMIT;
	else if (!strcmp(action, "cancel"))
		a->action = OTA_ACTION_CANCEL;
	else
		return OTA_ERR_MALFORMED;
	if (seen & 8) {
		v = ota_json_get(body, t, n, 0, "reason");
		if (ota_json_str(body, &t[v], a->reason, sizeof a->reason, NULL) != OTA_OK)
			return OTA_ERR_MALFORMED;
	}
	if (!(seen & 4)) {
		/* install, rollback and commit need an assignment */
		return a->action == OTA_ACTION_CANCEL ? OTA_OK : OTA_ERR_MALFORMED;
	}
	v = ota_json_get(body, t, n, 0, "assignment");
	if (t[v].type != OTA_JSON_OBJECT || ota_json_check_keys(body, t, n, v, sig, 3, &seen) != OTA_OK ||
	    seen != 7)
		return OTA_ERR_MALFORMED;
	s = ota_json_get(body, t, n, v, "payload");
	if (t[s].type != OTA_JSON_STRING)
		return OTA_ERR_MALFORMED;
	if (b64_token(body + t[s].start, t[s].end - t[s].start, scratch,
	              scratch_cap < OTA_MAX_PAYLOAD ? scratch_cap : OTA_MAX_PAYLOAD, &k, NULL) != OTA_OK)
		return OTA_ERR_MALFORMED; /* not base64, or over the limit (step 2) */
	a->payload = scratch;
	a->payload_len = k;
	s = ota_json_get(body, t, n, v, "signature");
	if (t[s].type != OTA_JSON_STRING)
		return OTA_ERR_MALFORMED;
	{
		int too_long;
		if (b64_token(body + t[s].start, t[s].end - t[s].start, a->signature, sizeof a->signature, &k,
		              &too_long) != OTA_OK)
			return OTA_ERR_MALFORMED;
		a->signature_len = too_long ? 0 : k;
	}
	s = ota_json_get(body, t, n, v, "keyID");
	if (ota_json_str(body, &t[s], a->key_id, sizeof a->key_id, NULL) != OTA_OK)
		a->key_id[0] = 0; /* an unusable key ID names no trusted key */
	a->has_assignment = 1;
	return OTA_OK;
}

/* --- the payload ------------------------------------------------------ */

enum {
	F_DEVICE, F_ROLLOUT, F_RELEASE, F_VERSION, F_SECVER, F_PLAINSHA, F_PLAINSIZE, F_ENCSHA, F_ENCSIZE, F_SUITE,
	F_URL, F_KEM, F_WRAPPED, F_VENDOR, F_NONCE, F_ISSUED, F_EXPIRES, F_ROLLBACK, F_COMMIT, F_COUNT
};
static const char *const fields[F_COUNT] = {
    "deviceID", "rollout",   "release", "version",    "securityVersion", "plainSHA256", "plainSize",
    "encryptedSHA256", "encryptedSize", "suite", "blobURL", "kem", "wrappedKey", "vendorSignature",
    "nonce",    "issuedAt",  "expiresAt", "rollback", "commit"};
#define REQUIRED ((1u << F_ROLLBACK) - 1)
#define PAYLOAD_TOKENS (1 + 2 * F_COUNT + 4)

static int get_str(const char *js, const ota_json_tok *t, char *out, size_t cap)
{
	return t->type == OTA_JSON_STRING && ota_json_str(js, t, out, cap, NULL) == OTA_OK ? OTA_OK : OTA_ERR_MALFORMED;
}

static int url_ok(const char *u)
{
	const char *h;
	size_t i;
	if (!strncmp(u, "https://", 8))
		h = u + 8;
	else if (!strncmp(u, "http://", 7))
		h = u + 7;
	else
		return 0;
	for (i = 0; u[i]; i++)
		if ((unsigned char)u[i] <= ' ' || u[i] == 0x7f)
			return 0;
	return *h && *h != '/' && *h != '?' && *h != '#';
}

/* parse_payload: strict structure (MALFORMED), then validation, where a
 * wrong suite wins over other invalid fields, as the agent names it. */
static int parse_payload(const uint8_t *payload, size_t len, ota_assignment *a)
{
	const char *js = (const char *)payload;
	ota_json_tok t[PAYLOAD_TOKENS];
	int n, i, v[F_COUNT], bad = 0, bad_suite;
	uint32_t seen;
	char buf[72];
	size_t k;
	memset(a, 0, sizeof *a);
	n = ota_json_parse(js, len, t, PAYLOAD_TOKENS, 2);
	if (n < 1 || t[0].type != OTA_JSON_OBJECT)
		return OTA_ERR_MALFORMED;
	if (ota_json_check_keys(js, t, n, 0, fields, F_COUNT, &seen) != OTA_OK || (seen & REQUIRED) != REQUIRED)
		return OTA_ERR_MALFORMED;
	for (i = 0; i < F_COUNT; i++)
		v[i] = (seen >> i & 1) ? ota_json_get(js, t, n, 0, fields[i]) : -1;

	/* Types first: what encoding/json refuses while decoding. */
	if (get_str(js, &t[v[F_DEVICE]], a->device_id, sizeof a->device_id) ||
	    get_str(js, &t[v[F_ROLLOUT]], a->rollout, sizeof a->rollout) ||
	    get_str(js, &t[v[F_RELEASE]], a->release, sizeof a->release) ||
	    get_str(js, &t[v[F_VERSION]], a->version, sizeof a->version) ||
	    get_str(js, &t[v[F_URL]], a->blob_url, sizeof a->blob_url) ||
	    get_str(js, &t[v[F_NONCE]], a->nonce, sizeof a->nonce))
		return OTA_ERR_MALFORMED;
	if (ota_json_u64(js, &t[v[F_SECVER]], &a->security_version) ||
	    ota_json_u64(js, &t[v[F_PLAINSIZE]], &a->plain_size) || ota_json_u64(js, &t[v[F_ENCSIZE]], &a->enc_size))
		return OTA_ERR_MALFORMED; /* includes negative numbers and fractions */
	if (a->plain_size > INT64_MAX || a->enc_size > INT64_MAX)
		return OTA_ERR_MALFORMED;
	for (i = F_ROLLBACK; i <= F_COMMIT; i++) {
		int b = 0;
		if (v[i] >= 0 && ota_json_bool(&t[v[i]], &b) != OTA_OK)
			return OTA_ERR_MALFORMED;
		if (i == F_ROLLBACK)
			a->rollback = (uint8_t)b;
		else
			a->commit = (uint8_t)b;
	}
	if (t[v[F_WRAPPED]].type != OTA_JSON_STRING || t[v[F_VENDOR]].type != OTA_JSON_STRING ||
	    t[v[F_SUITE]].type != OTA_JSON_STRING || t[v[F_KEM]].type != OTA_JSON_STRING ||
	    t[v[F_PLAINSHA]].type != OTA_JSON_STRING || t[v[F_ENCSHA]].type != OTA_JSON_STRING ||
	    t[v[F_ISSUED]].type != OTA_JSON_STRING || t[v[F_EXPIRES]].type != OTA_JSON_STRING)
		return OTA_ERR_MALFORMED;
	if (b64_token(js + t[v[F_WRAPPED]].start, t[v[F_WRAPPED]].end - t[v[F_WRAPPED]].start, a->wrapped_key,
	              sizeof a->wrapped_key, &k, NULL) != OTA_OK)
		return OTA_ERR_MALFORMED;
	a->wrapped_len = (uint8_t)k;
	if (ota_json_str(js, &t[v[F_ISSUED]], buf, sizeof buf, &k) ||
	    ota_parse_time(buf, k, &a->issued_at, &a->issued_ns) ||
	    ota_json_str(js, &t[v[F_EXPIRES]], buf, sizeof buf, &k) ||
	    ota_parse_time(buf, k, &a->expires_at, &a->expires_ns))
		return OTA_ERR_MALFORMED;

	/* Validate (assignment.Validate). */
	bad |= a->device_id[0] == 0 || !is_namespaced(a->rollout) || !is_namespaced(a->release) || a->version[0] == 0;
	bad |= a->security_version > 0xffffffffu;
	if (ota_json_str(js, &t[v[F_PLAINSHA]], buf, sizeof buf, &k) || ota_hex32_decode(buf, k, a->plain_sha256))
		bad = 1;
	if (ota_json_str(js, &t[v[F_ENCSHA]], buf, sizeof buf, &k) || ota_hex32_decode(buf, k, a->enc_sha256))
		bad = 1;
	bad |= a->enc_size < 74 || a->enc_size <= a->plain_size;
	bad_suite = ota_json_str(js, &t[v[F_SUITE]], buf, sizeof buf, &k) != OTA_OK || strcmp(buf, suite_v1) != 0;
	bad |= !url_ok(a->blob_url);
	i = ota_json_str(js, &t[v[F_KEM]], buf, sizeof buf, &k);
	if (i == OTA_OK && !strcmp(buf, "x25519"))
		a->kem = OTA_KEM_X25519;
	else if (i == OTA_OK && !strcmp(buf, "p256"))
		a->kem = OTA_KEM_P256;
	else
		bad = 1;
	bad |= a->kem && a->wrapped_len != 32 + 48 + (a->kem == OTA_KEM_P256 ? 33 : 0);
	{
		int too_long;
		const ota_json_tok *vs = &t[v[F_VENDOR]];
		if (b64_token(js + vs->start, vs->end - vs->start, a->vendor_sig, sizeof a->vendor_sig, &k, &too_long))
			bad = 1;
		a->vendor_sig_len = too_long ? 0 : (uint8_t)k;
		a->vendor_sig_too_long = (uint8_t)too_long;
	}
	bad |= a->commit && a->rollback;
	k = strlen(a->nonce);
	bad |= k < 16 || k > 128 || k % 2 || !is_hex(a->nonce, k, 0);
	bad |= a->expires_at < a->issued_at || (a->expires_at == a->issued_at && a->expires_ns <= a->issued_ns);
	if (bad_suite)
		return OTA_ERR_SUITE;
	if (bad)
		return OTA_ERR_MALFORMED;
	return OTA_OK;
}

/* --- verification ------------------------------------------------------ */

int ota_signature_verify(const ota_pubkey *key, const char *domain_sep, const uint8_t *msg, size_t len,
                         const uint8_t *sig, size_t sig_len)
{
	size_t dl = strlen(domain_sep);
	if (key->alg == OTA_ALG_ED25519) {
		ota_sha512_ctx h;
		uint8_t d[64];
		if (sig_len != 64)
			return OTA_ERR_BAD_SIGNATURE;
		ota_sha512_init(&h);
		ota_sha512_update(&h, sig, 32);
		ota_sha512_update(&h, key->pub, 32);
		ota_sha512_update(&h, domain_sep, dl);
		ota_sha512_update(&h, msg, len);
		ota_sha512_final(&h, d);
		return ota_ed25519_check(key->pub, sig, d) == OTA_OK ? OTA_OK : OTA_ERR_BAD_SIGNATURE;
	}
	if (key->alg == OTA_ALG_P256) {
		ota_sha256_ctx h;
		uint8_t d[32];
		ota_sha256_init(&h);
		ota_sha256_update(&h, domain_sep, dl);
		ota_sha256_update(&h, msg, len);
		ota_sha256_final(&h, d);
		return ota_p256_verify(key->pub, d, sig, sig_len) == OTA_OK ? OTA_OK : OTA_ERR_BAD_SIGNATURE;
	}
	return OTA_ERR_BAD_SIGNATURE;
}

const ota_pubkey *ota_trust_find(const ota_trust *trust, const uint8_t id[32])
{
	size_t i;
	for (i = 0; i < trust->n; i++)
		if (memcmp(trust->keys[i].key_id, id, 32) == 0)
			return &trust->keys[i];
	return NULL;
}

/* (a, an) < (b, bn) */
static int before(int64_t a, int32_t an, int64_t b, int32_t bn) { return a < b || (a == b && an < bn); }

int ota_assignment_verify(const ota_trust *trust, const char *key_id_hex, const uint8_t *payload, size_t payload_len,
                          const uint8_t *sig, size_t sig_len, const ota_device_state *dev, ota_assignment *out)
{
	const ota_pubkey *key = NULL;
	uint8_t id[32];
	int r;
	if (!trust || !key_id_hex || !payload || !dev || !dev->device_id || !out)
		return OTA_ERR_ARG;
	if (payload_len > OTA_MAX_PAYLOAD)
		return OTA_ERR_MALFORMED;
	/* The key ID only narrows the choice; the signature decides. */
	if (ota_hex32_decode(key_id_hex, strlen(key_id_hex), id) == OTA_OK)
		key = ota_trust_find(trust, id);
	if (!key)
		return OTA_ERR_UNTRUSTED_KEY;
	if ((r = ota_signature_verify(key, domain, payload, payload_len, sig, sig_len)) != OTA_OK)
		return r;
	if ((r = parse_payload(payload, payload_len, out)) != OTA_OK)
		return r;
	if (strcmp(out->device_id, dev->device_id) != 0)
		return OTA_ERR_WRONG_DEVICE;
	if (dev->now != OTA_NO_CLOCK) {
		if (before(dev->now + (int64_t)dev->skew, 0, out->issued_at, out->issued_ns))
			return OTA_ERR_NOT_YET_VALID;
		if (!before(dev->now - (int64_t)dev->skew, 0, out->expires_at, out->expires_ns))
			return OTA_ERR_EXPIRED;
	}
	return OTA_OK;
}

int ota_answer_check(const ota_trust *trust, const ota_update_answer *a, const ota_device_state *dev,
                     ota_assignment *out, uint64_t *new_floor)
{
	int r;
	if (!a || !dev || !out)
		return OTA_ERR_ARG;
	if (new_floor)
		*new_floor = dev->security_floor;
	if (!a->has_assignment)
		return OTA_ERR_MALFORMED;
	r = ota_assignment_verify(trust, a->key_id, a->payload, a->payload_len, a->signature, a->signature_len, dev, out);
	if (r != OTA_OK)
		return r;
	/* The server echoes the nonce byte for byte. */
	if (dev->nonce && dev->nonce[0] && strcmp(out->nonce, dev->nonce) != 0)
		return OTA_ERR_NONCE;
	if (a->action != OTA_ACTION_COMMIT && out->security_version < dev->security_floor)
		return OTA_ERR_BELOW_FLOOR;
	if (dev->kem && out->kem != dev->kem)
		return OTA_ERR_KEM;
	if (strcmp(out->rollout, a->rollout) != 0)
		return OTA_ERR_ROLLOUT;
	if (a->action == OTA_ACTION_COMMIT) {
		if (!out->commit || !dev->running_version || strcmp(out->version, dev->running_version) != 0)
			return OTA_ERR_COMMIT;
		if (new_floor && out->security_version > dev->security_floor)
			*new_floor = out->security_version;
		return OTA_OK;
	}
	if (out->commit)
		return OTA_ERR_MALFORMED;
	if (out->rollback != (a->action == OTA_ACTION_ROLLBACK))
		return OTA_ERR_MALFORMED;
	return OTA_OK;
}
