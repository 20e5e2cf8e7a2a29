/*
 * The protocol v1 device client (ota_client.h): requests, records, checks.
 * The download lives in client_download.c.
 */
#include <string.h>

#include "client_internal.h"
#include "ota_enroll.h"
#include "ota_json.h"

static const char *const state_names[] = {"",          "downloading", "downloaded", "installing",
                                          "installed", "succeeded",   "failed",     "rolledback"};

/* ---- small strings ---- */

size_t ota_cl_u64(uint64_t v, char out[21])
{
	char t[21];
	size_t n = 0, i;
	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		out[i] = t[n - 1 - i];
	out[n] = 0;
	return n;
}

/* ota_cl_cat appends s to out (cap bytes, NUL-terminated), remembering
 * overflow in *bad. */
void ota_cl_cat(char *out, size_t cap, const char *s, int *bad)
{
	size_t n = strlen(out), m = strlen(s);
	if (n + m + 1 > cap) {
		*bad = 1;
		m = cap > n + 1 ? cap - n - 1 : 0;
	}
	memcpy(out + n, s, m);
	out[n + m] = 0;
}

void ota_cl_cat_u64(char *out, size_t cap, uint64_t v, int *bad)
{
	char d[21];
	ota_cl_u64(v, d);
	ota_cl_cat(out, cap, d, bad);
}

int ota_cl_copy(char *out, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (n + 1 > cap)
		return OTA_ERR_BUFFER;
	memcpy(out, s, n + 1);
	return OTA_OK;
}

/* ---- log lines: "event=<name> key=value ..." ---- */

void ota_cl_line_begin(ota_cl_line *l, const char *event)
{
	l->b[0] = 0;
	l->bad = 0;
	ota_cl_cat(l->b, sizeof l->b, "event=", &l->bad);
	ota_cl_cat(l->b, sizeof l->b, event, &l->bad);
}

void ota_cl_line_str(ota_cl_line *l, const char *k, const char *v)
{
	size_t n, i, cap = sizeof l->b;
	int quote = v[0] == 0;
	for (i = 0; v[i]; i++)
		if (v[i] == ' ' || v[i] == '"' || v[i] == '=')
			quote = 1;
	ota_cl_cat(l->b, cap, " ", &l->bad);
	ota_cl_cat(l->b, cap, k, &l->bad);
	ota_cl_cat(l->b, cap, quote ? "=\"" : "=", &l->bad);
	n = strlen(l->b);
	for (i = 0; v[i] && n + 2 < cap; i++) {
		char ch = v[i];
		if (ch == '"')
			ch = '\'';
		else if ((unsigned char)ch < 0x20 || (unsigned char)ch > 0x7e)
			ch = '?';
		l->b[n++] = ch;
	}
	l->b[n] = 0;
	if (quote)
		ota_cl_cat(l->b, cap, "\"", &l->bad);
}

void ota_cl_line_u64(ota_cl_line *l, const char *k, uint64_t v)
{
	char d[21];
	ota_cl_u64(v, d);
	ota_cl_line_str(l, k, d);
}

void ota_cl_line_int(ota_cl_line *l, const char *k, int v)
{
	char d[22];
	if (v < 0) {
		d[0] = '-';
		ota_cl_u64((uint64_t)(-(int64_t)v), d + 1);
	} else {
		ota_cl_u64((uint64_t)v, d);
	}
	ota_cl_line_str(l, k, d);
}

void ota_cl_emit(ota_client *c, int level, ota_cl_line *l)
{
	if (c->plat->log)
		c->plat->log(c->plat->ctx, level, l->b);
}

void ota_cl_log_event(ota_client *c, int level, const char *event, const char *k, const char *v)
{
	ota_cl_line l;
	ota_cl_line_begin(&l, event);
	if (k)
		ota_cl_line_str(&l, k, v);
	ota_cl_emit(c, level, &l);
}

void *ota_cl_align8(void *p)
{
	uintptr_t u = (uintptr_t)p;
	return (void *)((u + 7) & ~(uintptr_t)7);
}

/* ---- records: little-endian fields, strings with a 16-bit length ---- */

void ota_cl_w_u8(ota_cl_rec *r, uint8_t v)
{
	ota_cl_w_bytes(r, &v, 1);
}

void ota_cl_w_u64(ota_cl_rec *r, uint64_t v)
{
	uint8_t b[8];
	int i;
	for (i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	ota_cl_w_bytes(r, b, 8);
}

void ota_cl_w_bytes(ota_cl_rec *r, const void *p, size_t n)
{
	if (r->err || n > r->cap - r->n) {
		r->err = 1;
		return;
	}
	memcpy(r->p + r->n, p, n);
	r->n += n;
}

void ota_cl_w_str(ota_cl_rec *r, const char *s)
{
	size_t n = strlen(s);
	ota_cl_w_u8(r, (uint8_t)(n & 0xff));
	ota_cl_w_u8(r, (uint8_t)(n >> 8));
	ota_cl_w_bytes(r, s, n);
}

void ota_cl_r_bytes(ota_cl_rec *r, void *p, size_t n)
{
	if (r->err || n > r->cap - r->n) {
		r->err = 1;
		memset(p, 0, n);
		return;
	}
	memcpy(p, r->p + r->n, n);
	r->n += n;
}

uint8_t ota_cl_r_u8(ota_cl_rec *r)
{
	uint8_t v;
	ota_cl_r_bytes(r, &v, 1);
	return v;
}

uint64_t ota_cl_r_u64(ota_cl_rec *r)
{
	uint8_t b[8];
	uint64_t v = 0;
	int i;
	ota_cl_r_bytes(r, b, 8);
	for (i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

void ota_cl_r_str(ota_cl_rec *r, char *s, size_t cap)
{
	size_t n = ota_cl_r_u8(r);
	n |= (size_t)ota_cl_r_u8(r) << 8;
	if (r->err || n + 1 > cap) {
		r->err = 1;
		s[0] = 0;
		return;
	}
	ota_cl_r_bytes(r, s, n);
	s[n] = 0;
	if (strlen(s) != n)
		r->err = 1;
}

/* ---- the work record ---- */

#define WORK_RECORD_VERSION 1
#define WORK_RECORD_MAX (16 + 4 * 8 + 64 + OTA_ENV_HEADER_SIZE + 3 * 2 + OTA_ETAG_MAX + OTA_ROLLOUT_MAX + OTA_VERSION_MAX)
typedef char work_record_fits[WORK_RECORD_MAX <= OTA_CL_REC_MAX ? 1 : -1];

int ota_cl_work_load(ota_client *c, ota_cl_work *w, int *have)
{
	uint8_t *buf = OTA_CL_RECORD(c);
	size_t n = 0;
	ota_cl_rec r;
	int e = c->plat->store_get(c->plat->ctx, OTA_REC_WORK, buf, WORK_RECORD_MAX, &n);
	memset(w, 0, sizeof *w);
	*have = 0;
	if (e != OTA_OK)
		return OTA_ERR_STORAGE;
	if (n == 0)
		return OTA_OK;
	r.p = buf, r.cap = n, r.n = 0, r.err = 0;
	if (ota_cl_r_u8(&r) != WORK_RECORD_VERSION) {
		ota_cl_log_event(c, OTA_LOG_WARN, "work-record-unreadable", NULL, NULL);
		return OTA_OK; /* as if none: the next install answer starts over */
	}
	w->phase = ota_cl_r_u8(&r);
	w->rollback = ota_cl_r_u8(&r);
	w->has_header = ota_cl_r_u8(&r);
	w->chunks = ota_cl_r_u64(&r);
	w->security_version = ota_cl_r_u64(&r);
	w->plain_size = ota_cl_r_u64(&r);
	w->enc_size = ota_cl_r_u64(&r);
	ota_cl_r_bytes(&r, w->enc_sha256, 32);
	ota_cl_r_bytes(&r, w->plain_sha256, 32);
	ota_cl_r_bytes(&r, w->header, OTA_ENV_HEADER_SIZE);
	ota_cl_r_str(&r, w->etag, sizeof w->etag);
	ota_cl_r_str(&r, w->rollout, sizeof w->rollout);
	ota_cl_r_str(&r, w->version, sizeof w->version);
	if (r.err || r.n != n || (w->phase != OTA_WORK_DOWNLOADING && w->phase != OTA_WORK_INSTALLED)) {
		memset(w, 0, sizeof *w);
		ota_cl_log_event(c, OTA_LOG_WARN, "work-record-unreadable", NULL, NULL);
		return OTA_OK;
	}
	*have = 1;
	return OTA_OK;
}

int ota_cl_work_save(ota_client *c, const ota_cl_work *w)
{
	uint8_t *buf = OTA_CL_RECORD(c);
	ota_cl_rec r;
	r.p = buf, r.cap = WORK_RECORD_MAX, r.n = 0, r.err = 0;
	ota_cl_w_u8(&r, WORK_RECORD_VERSION);
	ota_cl_w_u8(&r, w->phase);
	ota_cl_w_u8(&r, w->rollback);
	ota_cl_w_u8(&r, w->has_header);
	ota_cl_w_u64(&r, w->chunks);
	ota_cl_w_u64(&r, w->security_version);
	ota_cl_w_u64(&r, w->plain_size);
	ota_cl_w_u64(&r, w->enc_size);
	ota_cl_w_bytes(&r, w->enc_sha256, 32);
	ota_cl_w_bytes(&r, w->plain_sha256, 32);
	ota_cl_w_bytes(&r, w->header, OTA_ENV_HEADER_SIZE);
	ota_cl_w_str(&r, w->etag);
	ota_cl_w_str(&r, w->rollout);
	ota_cl_w_str(&r, w->version);
	if (r.err)
		return OTA_ERR_BUFFER;
	if (c->plat->store_put(c->plat->ctx, OTA_REC_WORK, buf, r.n) != OTA_OK)
		return OTA_ERR_STORAGE;
	return OTA_OK;
}

/* ota_cl_work_drop forgets the update; abort also discards the staged
 * bytes (not for an installed image, which is the one that boots). */
int ota_cl_work_drop(ota_client *c, int abort)
{
	if (abort)
		c->plat->install_abort(c->plat->ctx);
	if (c->plat->store_put(c->plat->ctx, OTA_REC_WORK, NULL, 0) != OTA_OK)
		return OTA_ERR_STORAGE;
	return OTA_OK;
}

/* drop_work_of forgets an unfinished download of rollout. */
static int drop_work_of(ota_client *c, const char *rollout)
{
	ota_cl_work w;
	int have, e = ota_cl_work_load(c, &w, &have);
	if (e != OTA_OK)
		return e;
	if (have && strcmp(w.rollout, rollout) == 0 && w.phase != OTA_WORK_INSTALLED) {
		ota_cl_log_event(c, OTA_LOG_INFO, "download-discarded", "rollout", rollout);
		return ota_cl_work_drop(c, 1);
	}
	return OTA_OK;
}

/* ---- floors and token ---- */

static int save_floors(ota_client *c, uint64_t floor, uint64_t pending)
{
	uint8_t b[16];
	ota_cl_rec r;
	r.p = b, r.cap = sizeof b, r.n = 0, r.err = 0;
	ota_cl_w_u64(&r, floor);
	ota_cl_w_u64(&r, pending);
	if (c->plat->store_put(c->plat->ctx, OTA_REC_FLOOR, b, sizeof b) != OTA_OK)
		return OTA_ERR_STORAGE;
	c->floor = floor, c->pending_floor = pending;
	return OTA_OK;
}

/* ota_cl_token_refused forgets the token the server answered 401 to: the
 * next request enrolls again. */
void ota_cl_token_refused(ota_client *c, const char *url)
{
	ota_cl_log_event(c, OTA_LOG_INFO, "token-refused", "url", url);
	c->auth[0] = 0;
	(void)c->plat->store_put(c->plat->ctx, OTA_REC_TOKEN, NULL, 0);
}

/* ---- HTTP with JSON bodies ---- */

typedef struct {
	ota_client *c;
	size_t len;
	int overflow;
} body_sink;

static int json_sink(void *arg, const ota_http_response *resp, const uint8_t *p, size_t n)
{
	body_sink *s = arg;
	size_t room = OTA_CL_JSON_CAP(s->c) - 1 - s->len;
	(void)resp;
	if (n > room) {
		s->overflow = 1;
		n = room;
	}
	memcpy(s->c->cfg.body_buf + s->len, p, n);
	s->len += n;
	return 0;
}

int ota_cl_url(ota_client *c, char *out, size_t cap, const char *path)
{
	size_t n = strlen(c->cfg.server_url);
	int bad = 0;
	while (n > 0 && c->cfg.server_url[n - 1] == '/')
		n--;
	if (n + 1 > cap)
		return OTA_ERR_BUFFER;
	memcpy(out, c->cfg.server_url, n);
	out[n] = 0;
	ota_cl_cat(out, cap, path, &bad);
	return bad ? OTA_ERR_BUFFER : OTA_OK;
}

void ota_cl_saw(ota_client *c, const ota_http_response *resp)
{
	c->http_status = resp->status;
	c->retry_after = resp->retry_after;
}

void ota_cl_resp_init(ota_http_response *resp, char *location, size_t cap)
{
	memset(resp, 0, sizeof *resp);
	resp->content_length = resp->range_first = resp->range_last = resp->range_total = -1;
	resp->location = location;
	resp->location_cap = cap;
	if (location && cap)
		location[0] = 0;
}

int ota_cl_path_url(ota_client *c, const char *path, char *out, size_t cap)
{
	return ota_cl_url(c, out, cap, path);
}

/* ota_cl_call sends one API request and leaves the answer's body in body_buf
 * (NUL-terminated, *len bytes; cut at OTA_CL_JSON_CAP - 1). With auth it
 * carries the token, enrolling first when there is none and again once
 * after a 401. OTA_OK means an answer came: its status is c->http_status. */
int ota_cl_call(ota_client *c, const char *method, ota_cl_url_fn mkurl, const char *url_arg, ota_cl_build_fn build,
                void *arg, int auth, size_t *len)
{
	char *url = OTA_CL_URL(c);
	int attempt, e;
	for (attempt = 0;; attempt++) {
		ota_http_request req;
		ota_http_response resp;
		body_sink s;
		if (auth && !c->auth[0] && (e = ota_client_enroll(c)) != OTA_OK)
			return e;
		if ((e = mkurl(c, url_arg, url, OTA_CL_URL_MAX)) != OTA_OK)
			return e;
		memset(&req, 0, sizeof req);
		req.method = method;
		req.url = url;
		req.authorization = auth ? c->auth : NULL;
		if (build) {
			if ((e = build(c, arg, &req.body, &req.body_len)) != OTA_OK)
				return e;
			req.content_type = "application/json";
		}
		ota_cl_resp_init(&resp, NULL, 0);
		s.c = c, s.len = 0, s.overflow = 0;
		c->http_status = 0;
		c->retry_after = 0;
		e = c->plat->http(c->plat->ctx, &req, &resp, json_sink, &s);
		c->cfg.body_buf[s.len] = 0;
		*len = s.len;
		if (e != OTA_OK) {
			ota_cl_line l;
			ota_cl_line_begin(&l, "http-error");
			ota_cl_line_str(&l, "method", method);
			ota_cl_line_str(&l, "url", url);
			ota_cl_line_str(&l, "err", ota_err_code(e));
			ota_cl_emit(c, OTA_LOG_WARN, &l);
			return e;
		}
		ota_cl_saw(c, &resp);
		if (resp.status == 401 && auth && attempt == 0) {
			ota_cl_token_refused(c, url);
			continue;
		}
		if (s.overflow && resp.status >= 200 && resp.status < 300)
			return OTA_ERR_BUFFER;
		return OTA_OK;
	}
}

/* error_code copies the "code" of an error answer in body_buf. */
static void error_code(ota_client *c, size_t len, char *code, size_t cap)
{
	ota_json_tok t[12];
	int n = ota_json_parse(c->cfg.body_buf, len, t, 12, 2), i;
	code[0] = 0;
	if (n <= 0 || t[0].type != OTA_JSON_OBJECT)
		return;
	i = ota_json_get(c->cfg.body_buf, t, n, 0, "code");
	if (i < 0 || ota_json_str(c->cfg.body_buf, &t[i], code, cap, NULL) != OTA_OK)
		code[0] = 0;
}

void ota_cl_log_answer(ota_client *c, int level, const char *event, size_t len)
{
	char code[48];
	ota_cl_line l;
	error_code(c, len, code, sizeof code);
	ota_cl_line_begin(&l, event);
	ota_cl_line_int(&l, "status", c->http_status);
	if (code[0])
		ota_cl_line_str(&l, "code", code);
	if (c->retry_after)
		ota_cl_line_u64(&l, "retry_after", c->retry_after);
	ota_cl_emit(c, level, &l);
}

/* ---- enrollment ---- */

static void enroll_req(ota_client *c, ota_enroll_req *r)
{
	memset(r, 0, sizeof *r);
	r->device_id = c->cfg.device_id;
	r->bootstrap_token = c->cfg.bootstrap_token;
	r->key = c->cfg.device_key;
	r->device_type = c->cfg.device_type;
	r->label_keys = c->cfg.label_keys;
	r->label_values = c->cfg.label_values;
	r->n_labels = c->cfg.n_labels;
	r->version = c->cfg.version;
	r->security_floor = c->floor;
}

static int build_enroll(ota_client *c, void *arg, const uint8_t **body, size_t *len)
{
	ota_enroll_req r;
	const char *field = NULL;
	int e;
	(void)arg;
	enroll_req(c, &r);
	if ((e = ota_enroll_body(&r, c->cfg.body_buf, OTA_CL_JSON_CAP(c), len, &field)) != OTA_OK) {
		ota_cl_log_event(c, OTA_LOG_ERROR, "enroll-invalid", "field", field ? field : "body");
		return e;
	}
	*body = (const uint8_t *)c->cfg.body_buf;
	return OTA_OK;
}

int ota_client_enroll(ota_client *c)
{
	char kid_hex[65];
	uint8_t kid[32];
	size_t len = 0;
	int e;
	ota_cl_line l;
	c->auth[0] = 0;
	if ((e = ota_cl_call(c, "POST", ota_cl_path_url, "/v1/enroll", build_enroll, NULL, 0, &len)) != OTA_OK)
		return e;
	if (c->http_status != 200 && c->http_status != 201) {
		ota_cl_log_answer(c, OTA_LOG_WARN, "enroll-failed", len);
		return OTA_ERR_HTTP;
	}
	/* For this device, and sealed to its key: the proof of possession. */
	e = ota_enroll_answer(c->cfg.device_key, c->cfg.device_id, c->cfg.body_buf, len, c->auth + 7,
	                      sizeof c->auth - 7, kid);
	if (e != OTA_OK) {
		ota_cl_line_begin(&l, "enroll-refused");
		ota_cl_line_str(&l, "code", ota_err_code(e));
		ota_cl_emit(c, OTA_LOG_ERROR, &l);
		return e;
	}
	memcpy(c->auth, "Bearer ", 7);
	if (c->plat->store_put(c->plat->ctx, OTA_REC_TOKEN, (const uint8_t *)c->auth + 7, strlen(c->auth + 7)) !=
	    OTA_OK) {
		c->auth[0] = 0;
		return OTA_ERR_STORAGE;
	}
	ota_cl_line_begin(&l, "enrolled");
	ota_cl_line_str(&l, "device", c->cfg.device_id);
	ota_cl_line_int(&l, "status", c->http_status);
	ota_cl_emit(c, OTA_LOG_INFO, &l);
	if (!ota_cl_trusts(c, kid)) {
		/* Not authenticated: it only says assignments may come signed by
		 * a key this device does not trust, so the key set is looked at
		 * before the next check. */
		ota_hex_encode(kid, 32, kid_hex);
		ota_cl_log_event(c, OTA_LOG_WARN, "untrusted-server-key", "key_id", kid_hex);
		c->keys_due = c->cfg.key_store != NULL;
	}
	return OTA_OK;
}

/* ---- status reports ---- */

/* The "report" record: version, state, rollout (16-bit length), then the
 * JSON body to send, report ID included, so that a retry is the same
 * request. */
#define REPORT_RECORD_VERSION 1

static int report_head(ota_client *c, size_t n, uint8_t *state, char *rollout, size_t *off)
{
	const uint8_t *b = (const uint8_t *)c->cfg.body_buf;
	size_t rl;
	if (n < 4 || b[0] != REPORT_RECORD_VERSION)
		return OTA_ERR_STORAGE;
	*state = b[1];
	rl = (size_t)b[2] | (size_t)b[3] << 8;
	if (rl > OTA_ROLLOUT_MAX || 4 + rl > n)
		return OTA_ERR_STORAGE;
	if (rollout) {
		memcpy(rollout, b + 4, rl);
		rollout[rl] = 0;
	}
	*off = 4 + rl;
	return OTA_OK;
}

static int build_report(ota_client *c, void *arg, const uint8_t **body, size_t *len)
{
	size_t n = 0, off;
	uint8_t state;
	(void)arg;
	if (c->plat->store_get(c->plat->ctx, OTA_REC_REPORT, (uint8_t *)c->cfg.body_buf, OTA_CL_JSON_CAP(c), &n) !=
	        OTA_OK ||
	    report_head(c, n, &state, NULL, &off) != OTA_OK)
		return OTA_ERR_STORAGE;
	*body = (const uint8_t *)c->cfg.body_buf + off;
	*len = n - off;
	return OTA_OK;
}

/* flush_loaded sends the report record whose n bytes body_buf holds. */
static int flush_loaded(ota_client *c, size_t n)
{
	char rollout[OTA_ROLLOUT_MAX + 1], code[48];
	size_t off, len = 0;
	uint8_t state;
	int e;
	ota_cl_line l;
	if (n == 0)
		return OTA_OK;
	if (report_head(c, n, &state, rollout, &off) != OTA_OK || state == OTA_STATE_NONE || state > OTA_STATE_ROLLEDBACK) {
		ota_cl_log_event(c, OTA_LOG_WARN, "report-record-unreadable", NULL, NULL);
		return c->plat->store_put(c->plat->ctx, OTA_REC_REPORT, NULL, 0) == OTA_OK ? OTA_OK : OTA_ERR_STORAGE;
	}
	if ((e = ota_cl_call(c, "POST", ota_cl_path_url, "/v1/status", build_report, NULL, 1, &len)) != OTA_OK)
		return e;
	if (c->http_status == 429 || c->http_status >= 500 || c->http_status == 401) {
		ota_cl_log_answer(c, OTA_LOG_WARN, "report-deferred", len);
		return OTA_ERR_HTTP;
	}
	if (c->plat->store_put(c->plat->ctx, OTA_REC_REPORT, NULL, 0) != OTA_OK)
		return OTA_ERR_STORAGE;
	if (c->http_status == 200) {
		c->last_reported = state;
		ota_cl_line_begin(&l, "report");
		ota_cl_line_str(&l, "state", state_names[state]);
		ota_cl_line_str(&l, "rollout", rollout);
		ota_cl_emit(c, OTA_LOG_INFO, &l);
		return OTA_OK;
	}
	/* Refused: retrying it unchanged cannot succeed. */
	error_code(c, len, code, sizeof code);
	ota_cl_line_begin(&l, "report-dropped");
	ota_cl_line_str(&l, "state", state_names[state]);
	ota_cl_line_str(&l, "rollout", rollout);
	ota_cl_line_int(&l, "status", c->http_status);
	ota_cl_line_str(&l, "code", code);
	ota_cl_emit(c, OTA_LOG_WARN, &l);
	if (c->http_status == 409 && strcmp(code, "canceled") == 0) {
		if ((e = drop_work_of(c, rollout)) != OTA_OK)
			return e;
		ota_cl_log_event(c, OTA_LOG_INFO, "canceled", "rollout", rollout);
		return OTA_ERR_CANCELED;
	}
	/* The server will never take this rollout's update further. */
	if ((c->http_status == 409 && strcmp(code, "final") == 0) ||
	    (c->http_status == 404 && (strcmp(code, "unknown_rollout") == 0 || strcmp(code, "not_assigned") == 0)))
		return drop_work_of(c, rollout);
	return OTA_OK;
}

int ota_client_flush(ota_client *c)
{
	size_t n = 0;
	if (c->plat->store_get(c->plat->ctx, OTA_REC_REPORT, (uint8_t *)c->cfg.body_buf, OTA_CL_JSON_CAP(c), &n) != OTA_OK)
		return OTA_ERR_STORAGE;
	return flush_loaded(c, n);
}

/* ota_cl_report stores a report (replacing one not yet acknowledged: a
 * later state supersedes it, skipping states is allowed) and sends it.
 * progress < 0: none. Only OTA_ERR_CANCELED and storage errors matter to
 * callers; an undelivered report waits for the next flush. */
int ota_cl_report(ota_client *c, const char *rollout, int state, int progress, const char *reason)
{
	uint8_t id[12];
	char idhex[25];
	char *b = c->cfg.body_buf;
	size_t rl = strlen(rollout), off = 4 + rl;
	ota_jw w;
	if (rl > OTA_ROLLOUT_MAX || off >= OTA_CL_JSON_CAP(c))
		return OTA_ERR_ARG;
	if (c->plat->random(c->plat->ctx, id, sizeof id) != OTA_OK)
		return OTA_ERR_CRYPTO;
	ota_hex_encode(id, sizeof id, idhex);
	b[0] = REPORT_RECORD_VERSION;
	b[1] = (char)state;
	b[2] = (char)(rl & 0xff);
	b[3] = (char)(rl >> 8);
	memcpy(b + 4, rollout, rl);
	ota_jw_init(&w, b + off, OTA_CL_JSON_CAP(c) - off);
	ota_jw_obj_open(&w);
	ota_jw_key(&w, "reportID");
	ota_jw_str(&w, idhex);
	ota_jw_key(&w, "rollout");
	ota_jw_str(&w, rollout);
	ota_jw_key(&w, "state");
	ota_jw_str(&w, state_names[state]);
	if (progress >= 0) {
		ota_jw_key(&w, "progress");
		ota_jw_u64(&w, (uint64_t)progress);
	}
	if (reason) {
		ota_jw_key(&w, "reason");
		ota_jw_str(&w, reason);
	}
	ota_jw_obj_close(&w);
	if (ota_jw_end(&w) != OTA_OK)
		return OTA_ERR_BUFFER;
	if (c->plat->store_put(c->plat->ctx, OTA_REC_REPORT, (const uint8_t *)b, off + w.len) != OTA_OK)
		return OTA_ERR_STORAGE;
	return flush_loaded(c, off + w.len);
}

/* ota_cl_refuse reports a refusal: failed, with reason "<code>: <detail>"
 * (printable ASCII, at most 512 characters). It returns err. */
int ota_cl_refuse(ota_client *c, const char *rollout, int err, const char *detail)
{
	char *reason = OTA_CL_REASON(c);
	const size_t cap = OTA_REASON_MAX + 1;
	int bad = 0, e;
	size_t i;
	ota_cl_line l;
	reason[0] = 0;
	ota_cl_cat(reason, cap, ota_err_code(err), &bad);
	ota_cl_cat(reason, cap, ": ", &bad);
	ota_cl_cat(reason, cap, detail, &bad);
	for (i = 0; reason[i]; i++)
		if ((unsigned char)reason[i] < 0x20 || (unsigned char)reason[i] > 0x7e)
			reason[i] = ' ';
	ota_cl_line_begin(&l, "refused");
	ota_cl_line_str(&l, "code", ota_err_code(err));
	ota_cl_line_str(&l, "rollout", rollout);
	ota_cl_line_str(&l, "reason", reason);
	ota_cl_emit(c, OTA_LOG_ERROR, &l);
	e = ota_cl_report(c, rollout, OTA_STATE_FAILED, -1, reason);
	if (e == OTA_ERR_STORAGE)
		return e;
	return err;
}

/* ---- update check ---- */

static void cat_pct(char *out, size_t cap, const char *s, int *bad)
{
	static const char hx[] = "0123456789ABCDEF";
	char t[4];
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		    ch == '.' || ch == '_' || ch == '~') {
			t[0] = (char)ch, t[1] = 0;
		} else {
			t[0] = '%', t[1] = hx[ch >> 4], t[2] = hx[ch & 15], t[3] = 0;
		}
		ota_cl_cat(out, cap, t, bad);
	}
}

static int check_url(ota_client *c, const char *nonce, char *url, size_t cap)
{
	int bad = 0, e = ota_cl_url(c, url, cap, "/v1/update?version=");
	if (e != OTA_OK)
		return e;
	cat_pct(url, cap, c->cfg.version, &bad);
	ota_cl_cat(url, cap, "&securityFloor=", &bad);
	ota_cl_cat_u64(url, cap, c->floor, &bad);
	ota_cl_cat(url, cap, "&nonce=", &bad);
	ota_cl_cat(url, cap, nonce, &bad);
	if (c->cfg.boot_id && c->cfg.boot_id[0]) {
		ota_cl_cat(url, cap, "&boot=", &bad);
		cat_pct(url, cap, c->cfg.boot_id, &bad);
	}
	return bad ? OTA_ERR_BUFFER : OTA_OK;
}

static const char *action_name(int action)
{
	switch (action) {
	case OTA_ACTION_INSTALL: return "install";
	case OTA_ACTION_ROLLBACK: return "rollback";
	case OTA_ACTION_CANCEL: return "cancel";
	case OTA_ACTION_COMMIT: return "commit";
	default: return "none";
	}
}

/* commit_refused: a commit is not an update that can fail, so its refusal
 * is logged, never reported. It returns e. */
static int commit_refused(ota_client *c, int e, const char *rollout)
{
	ota_cl_line l;
	ota_cl_line_begin(&l, "commit-refused");
	ota_cl_line_str(&l, "code", ota_err_code(e));
	ota_cl_line_str(&l, "rollout", rollout);
	ota_cl_emit(c, OTA_LOG_WARN, &l);
	return e;
}

static int handle_commit(ota_client *c, const ota_update_answer *ans, const ota_assignment *a, int e,
                         uint64_t new_floor)
{
	ota_cl_line l;
	if (e != OTA_OK)
		return commit_refused(c, e, ans->rollout);
	if (new_floor <= c->floor) {
		ota_cl_line_begin(&l, "commit-unchanged");
		ota_cl_line_u64(&l, "floor", c->floor);
		ota_cl_emit(c, OTA_LOG_DEBUG, &l);
		return OTA_OK;
	}
	/* Durable before the next check-in tells the server. */
	if ((e = save_floors(c, new_floor, c->pending_floor > new_floor ? c->pending_floor : 0)) != OTA_OK)
		return e;
	ota_cl_line_begin(&l, "committed");
	ota_cl_line_str(&l, "rollout", ans->rollout);
	ota_cl_line_str(&l, "version", a->version);
	ota_cl_line_u64(&l, "floor", c->floor);
	ota_cl_emit(c, OTA_LOG_INFO, &l);
	return OTA_OK;
}

/* check: one update check; follow is 1 when an assignment signed by a key
 * the device does not trust may make it follow the key set, and then it
 * returns CHECK_AGAIN when it trusts the key: the caller asks again (not
 * from within, which would stack a second check frame). */
#define CHECK_AGAIN 1

static int check(ota_client *c, ota_assignment *a, int *action, int follow)
{
	char nonce[33], detail[256];
	uint8_t raw[16], *scratch;
	size_t len = 0;
	int e, bad = 0;
	uint64_t new_floor = 0;
	ota_update_answer *ans;
	ota_device_state dev;
	ota_trust trust;
	ota_cl_line l;
	*action = OTA_ACTION_NONE;
	c->last_action = OTA_ACTION_NONE;
	if (c->plat->random(c->plat->ctx, raw, sizeof raw) != OTA_OK)
		return OTA_ERR_CRYPTO;
	ota_hex_encode(raw, sizeof raw, nonce);
	if ((e = ota_cl_call(c, "GET", check_url, nonce, NULL, NULL, 1, &len)) != OTA_OK)
		return e;
	if (c->http_status == 204) {
		c->checks++;
		ota_cl_line_begin(&l, "check");
		ota_cl_line_str(&l, "action", "none");
		ota_cl_line_str(&l, "version", c->cfg.version);
		ota_cl_line_u64(&l, "floor", c->floor);
		if (c->retry_after)
			ota_cl_line_u64(&l, "retry_after", c->retry_after);
		ota_cl_emit(c, OTA_LOG_DEBUG, &l);
		return OTA_OK;
	}
	if (c->http_status != 200) {
		ota_cl_log_answer(c, OTA_LOG_WARN, "check-failed", len);
		return OTA_ERR_HTTP;
	}
	c->checks++;
	/* The parsed answer and its decoded payload go to the chunk buffer,
	 * idle between downloads. */
	ans = ota_cl_align8(c->cfg.chunk_buf);
	scratch = (uint8_t *)(ans + 1);
	e = ota_answer_parse(c->cfg.body_buf, len, ans, scratch,
	                     c->cfg.chunk_cap - OTA_CL_RESERVED - (size_t)(scratch - c->cfg.chunk_buf));
	if (e != OTA_OK) {
		/* It names no rollout to report against: ask again later. */
		ota_cl_log_event(c, OTA_LOG_WARN, "answer-refused", "code", ota_err_code(e));
		return e;
	}
	ota_cl_line_begin(&l, "check");
	ota_cl_line_str(&l, "action", action_name(ans->action));
	ota_cl_line_str(&l, "rollout", ans->rollout);
	ota_cl_emit(c, OTA_LOG_INFO, &l);
	if (ans->action == OTA_ACTION_CANCEL) {
		*action = OTA_ACTION_CANCEL;
		c->last_action = OTA_ACTION_CANCEL;
		e = drop_work_of(c, ans->rollout);
		if (e == OTA_OK)
			ota_cl_log_event(c, OTA_LOG_INFO, "canceled", "rollout", ans->rollout);
		return e;
	}
	dev.device_id = c->cfg.device_id;
	dev.kem = c->cfg.device_key->kem;
	dev.nonce = nonce;
	dev.running_version = c->cfg.version;
	dev.security_floor = c->floor;
	dev.now = c->plat->now ? c->plat->now(c->plat->ctx) : OTA_NO_CLOCK;
	dev.skew = c->cfg.clock_skew ? c->cfg.clock_skew : OTA_CLIENT_SKEW_DEFAULT;
	trust.keys = c->keys;
	trust.n = c->n_keys;
	e = ota_answer_check(&trust, ans, &dev, a, &new_floor);
	if (e == OTA_ERR_UNTRUSTED_KEY && c->cfg.key_store) {
		/* ans lives in the chunk buffer, which following the key set
		 * overwrites: keep what is needed after it. */
		char kid[65], rollout[OTA_ROLLOUT_MAX + 1];
		uint8_t raw_kid[32];
		int se, is_commit = ans->action == OTA_ACTION_COMMIT;
		memcpy(kid, ans->key_id, sizeof kid);
		memcpy(rollout, ans->rollout, sizeof rollout);
		se = follow ? ota_client_sync_keys(c) : OTA_OK;
		if (se == OTA_ERR_STORAGE || se == OTA_ERR_IO || (se == OTA_ERR_HTTP && c->http_status != 404))
			return se; /* nothing refused: the next check asks again */
		if (follow && ota_hex32_decode(kid, strlen(kid), raw_kid) == OTA_OK && ota_cl_trusts(c, raw_kid))
			return CHECK_AGAIN;
		if (is_commit)
			return commit_refused(c, e, rollout);
		ota_cl_keys_detail(c, kid, se, detail, sizeof detail);
		if (drop_work_of(c, rollout) == OTA_ERR_STORAGE)
			return OTA_ERR_STORAGE;
		return ota_cl_refuse(c, rollout, e, detail);
	}
	if (ans->action == OTA_ACTION_COMMIT) {
		e = handle_commit(c, ans, a, e, new_floor);
		if (e == OTA_OK)
			*action = c->last_action = OTA_ACTION_COMMIT;
		return e;
	}
	if (e != OTA_OK) {
		detail[0] = 0;
		if (e == OTA_ERR_UNTRUSTED_KEY) {
			ota_cl_cat(detail, sizeof detail, "assignment signed by key ", &bad);
			ota_cl_cat(detail, sizeof detail, ans->key_id, &bad);
			ota_cl_cat(detail, sizeof detail, ", which this device does not trust", &bad);
		} else {
			ota_cl_cat(detail, sizeof detail, "assignment refused (", &bad);
			ota_cl_cat(detail, sizeof detail, action_name(ans->action), &bad);
			ota_cl_cat(detail, sizeof detail, " answer)", &bad);
		}
		if (drop_work_of(c, ans->rollout) == OTA_ERR_STORAGE)
			return OTA_ERR_STORAGE;
		return ota_cl_refuse(c, ans->rollout, e, detail);
	}
	*action = c->last_action = (uint8_t)ans->action;
	return OTA_OK;
}

int ota_client_check(ota_client *c, ota_assignment *a, int *action)
{
	*action = OTA_ACTION_NONE;
	int e;
	if (ota_cl_keys_due(c) && ota_client_sync_keys(c) == OTA_ERR_STORAGE)
		return OTA_ERR_STORAGE; /* other failures: the keys it has stay */
	if ((e = check(c, a, action, 1)) == CHECK_AGAIN)
		e = check(c, a, action, 0);
	return e;
}

/* ---- boot, poll, init ---- */

int ota_client_confirm(ota_client *c)
{
	ota_cl_work w;
	int have, e;
	ota_cl_line l;
	if (c->installed)
		return OTA_OK; /* installed during this boot: nothing to confirm yet */
	e = ota_cl_work_load(c, &w, &have);
	if (e != OTA_OK || !have || w.phase != OTA_WORK_INSTALLED)
		return e;
	if (strcmp(w.version, c->cfg.version) != 0) {
		/* The bootloader went back: the next check-in on this version
		 * tells the server. */
		ota_cl_line_begin(&l, "reverted");
		ota_cl_line_str(&l, "running", c->cfg.version);
		ota_cl_line_str(&l, "installed", w.version);
		ota_cl_emit(c, OTA_LOG_WARN, &l);
		return ota_cl_work_drop(c, 0);
	}
	/* Confirmation does not commit the floor: it stays pending until the
	 * rollout commits, so the rollout can still roll the device back. */
	if ((e = save_floors(c, c->floor, w.security_version > c->floor ? w.security_version : 0)) != OTA_OK)
		return e;
	if ((e = ota_cl_work_drop(c, 0)) != OTA_OK)
		return e;
	ota_cl_line_begin(&l, "confirmed");
	ota_cl_line_str(&l, "version", w.version);
	ota_cl_line_str(&l, "rollout", w.rollout);
	ota_cl_line_u64(&l, "floor", c->floor);
	ota_cl_line_u64(&l, "pending_floor", c->pending_floor);
	ota_cl_emit(c, OTA_LOG_INFO, &l);
	e = ota_cl_report(c, w.rollout, w.rollback ? OTA_STATE_ROLLEDBACK : OTA_STATE_SUCCEEDED, -1, NULL);
	return e == OTA_ERR_STORAGE ? e : OTA_OK;
}

int ota_client_poll(ota_client *c, ota_assignment *a)
{
	int e, action;
	if (c->installed) {
		ota_cl_log_event(c, OTA_LOG_INFO, "awaiting-reboot", NULL, NULL);
		if (c->plat->reboot)
			c->plat->reboot(c->plat->ctx);
		return OTA_OK;
	}
	if ((e = ota_client_confirm(c)) != OTA_OK)
		return e;
	e = ota_client_flush(c);
	if (e != OTA_OK && e != OTA_ERR_CANCELED)
		return e; /* reports go first: a check must not overtake "succeeded" */
	if (!c->auth[0] && (e = ota_client_enroll(c)) != OTA_OK)
		return e;
	if ((e = ota_client_check(c, a, &action)) != OTA_OK)
		return e;
	if (action == OTA_ACTION_INSTALL || action == OTA_ACTION_ROLLBACK)
		return ota_client_update(c, a);
	return OTA_OK;
}

int ota_client_init(ota_client *c, const ota_platform *p, const ota_client_config *cfg)
{
	uint8_t b[16];
	size_t n = 0;
	ota_cl_rec r;
	if (!c || !p || !cfg || !p->http || !p->store_get || !p->store_put || !p->install_open || !p->install_write ||
	    !p->install_read || !p->install_finish || !p->install_abort || !p->random)
		return OTA_ERR_ARG;
	if (!cfg->server_url || !cfg->device_id || !cfg->device_type || !cfg->version || !cfg->bootstrap_token ||
	    !cfg->device_key || !cfg->assignment_keys || cfg->n_assignment_keys == 0 ||
	    cfg->n_assignment_keys > OTA_KEYSET_MAX_KEYS || (cfg->key_store && cfg->key_store_cap == 0) ||
	    (cfg->n_labels && (!cfg->label_keys || !cfg->label_values)) || (cfg->require_vendor_signature && !cfg->vendor_key))
		return OTA_ERR_ARG;
	if (!cfg->chunk_buf || cfg->chunk_cap < sizeof(ota_update_answer) + OTA_CL_RESERVED + 4096 ||
	    !cfg->body_buf || cfg->body_cap < OTA_CLIENT_BODY_MIN)
		return OTA_ERR_BUFFER;
	memset(c, 0, sizeof *c);
	c->plat = p;
	c->cfg = *cfg;
	if (p->store_get(p->ctx, OTA_REC_TOKEN, (uint8_t *)c->auth + 7, OTA_TOKEN_MAX, &n) != OTA_OK)
		return OTA_ERR_STORAGE;
	if (n) {
		memcpy(c->auth, "Bearer ", 7);
		c->auth[7 + n] = 0;
	}
	n = 0;
	if (p->store_get(p->ctx, OTA_REC_FLOOR, b, sizeof b, &n) != OTA_OK)
		return OTA_ERR_STORAGE;
	if (n == sizeof b) {
		r.p = b, r.cap = n, r.n = 0, r.err = 0;
		c->floor = ota_cl_r_u64(&r);
		c->pending_floor = ota_cl_r_u64(&r);
	}
	if (cfg->security_floor > c->floor &&
	    save_floors(c, cfg->security_floor, c->pending_floor > cfg->security_floor ? c->pending_floor : 0) != OTA_OK)
		return OTA_ERR_STORAGE;
	return ota_cl_keys_load(c);
}
