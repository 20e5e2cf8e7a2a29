/*
 * The device client following the server's assignment key set (GET
 * /v1/keys; ota_client.h "Assignment keys", docs/protocol.md "Assignment
 * keys and their rotation"), over a fake platform: records in memory, an
 * HTTP port that answers /v1/keys with a scripted status and body and
 * update checks with 204, a settable clock and a log. The key sets are
 * real, signed by the Go code (hack/mcu-client-keys writes
 * client_keys_data.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_keys_data.h"
#include "ota_client.h"
#include "test_platform.h"
#include "ota_envelope.h"

#define SERVER "https://ota.example.com"
#define TOKEN "dGVzdC10b2tlbi1mb3ItdGhlLWtleS1zZXQtdGVzdHM"
#define MAX_RECORDS 8
#define LOG_CAP (1 << 16)

enum { CLOCK_ON, CLOCK_NONE }; /* now() gives F.now, or OTA_NO_CLOCK */

typedef struct {
	char name[40];
	uint8_t *data;
	size_t len;
	int used;
	unsigned puts; /* successful store_put calls */
} record;

/* The fake platform's state. */
static struct {
	record rec[MAX_RECORDS];
	int fail_put; /* store_put fails (nothing changes) */
	/* GET /v1/keys answers keys_status with keys_body. */
	int keys_status;
	const char *keys_body;
	unsigned n_keys_get, n_update_get;
	int update_status;
	int clock;
	int64_t now;
	char log[LOG_CAP];
	size_t log_len;
} F;

static const char *cur_case = "";
static unsigned passed, failed;

static void ok(int cond, const char *fmt, ...)
{
	va_list ap;
	if (cond) {
		passed++;
		return;
	}
	failed++;
	printf("FAIL %s: ", cur_case);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* ---- records ---- */

static record *find_rec(const char *name)
{
	int i;
	for (i = 0; i < MAX_RECORDS; i++)
		if (F.rec[i].used && strcmp(F.rec[i].name, name) == 0)
			return &F.rec[i];
	return NULL;
}

/* set_rec puts a record directly (not counted). */
static void set_rec(const char *name, const uint8_t *p, size_t n)
{
	record *r = find_rec(name);
	int i;
	for (i = 0; !r && i < MAX_RECORDS; i++)
		if (!F.rec[i].used) {
			r = &F.rec[i];
			memset(r, 0, sizeof *r);
			r->used = 1;
			snprintf(r->name, sizeof r->name, "%s", name);
		}
	if (!r) {
		ok(0, "fake store full");
		return;
	}
	free(r->data);
	r->data = malloc(n ? n : 1);
	memcpy(r->data, p, n);
	r->len = n;
}

static unsigned puts_of(const char *name)
{
	record *r = find_rec(name);
	return r ? r->puts : 0;
}

static void store_reset(int with_token)
{
	int i;
	for (i = 0; i < MAX_RECORDS; i++)
		free(F.rec[i].data);
	memset(F.rec, 0, sizeof F.rec);
	F.fail_put = 0;
	/* A token: update checks go out without an enrollment. */
	if (with_token)
		set_rec("token", (const uint8_t *)TOKEN, strlen(TOKEN));
}

static int store_get(void *ctx, const char *name, uint8_t *buf, size_t cap, size_t *len)
{
	record *r = find_rec(name);
	(void)ctx;
	*len = 0;
	if (!r)
		return OTA_OK;
	if (r->len > cap)
		return OTA_ERR_STORAGE;
	memcpy(buf, r->data, r->len);
	*len = r->len;
	return OTA_OK;
}

static int store_put(void *ctx, const char *name, const uint8_t *p, size_t n)
{
	record *r;
	(void)ctx;
	if (F.fail_put)
		return OTA_ERR_STORAGE;
	set_rec(name, p, n);
	if ((r = find_rec(name)) != NULL)
		r->puts++;
	return OTA_OK;
}

/* ---- HTTP ---- */

static int deliver(ota_http_response *resp, ota_http_body_fn on_body, void *arg, int status, const char *body)
{
	size_t n = body ? strlen(body) : 0, off, piece;
	int r;
	resp->status = status;
	resp->content_length = (int64_t)n;
	for (off = 0; off < n; off += piece) {
		piece = n - off < 1000 ? n - off : 1000; /* in pieces, as a network does */
		if ((r = on_body(arg, resp, (const uint8_t *)body + off, piece)) != 0)
			return r;
	}
	return OTA_OK;
}

static int http(void *ctx, const ota_http_request *req, ota_http_response *resp, ota_http_body_fn on_body, void *arg)
{
	static const char update[] = SERVER "/v1/update?";
	(void)ctx;
	if (strcmp(req->method, "GET") == 0 && strcmp(req->url, SERVER "/v1/keys") == 0) {
		F.n_keys_get++;
		ok(req->authorization == NULL, "GET /v1/keys carries no Authorization (the key set is public), got %s",
		   req->authorization ? req->authorization : "");
		return deliver(resp, on_body, arg, F.keys_status,
		               F.keys_status == 404 ? "{\"code\":\"not_found\",\"message\":\"no key set\"}" : F.keys_body);
	}
	if (strcmp(req->method, "GET") == 0 && strncmp(req->url, update, sizeof update - 1) == 0) {
		F.n_update_get++;
		return deliver(resp, on_body, arg, F.update_status, NULL);
	}
	ok(0, "unexpected request %s %s", req->method, req->url);
	return OTA_ERR_IO;
}

/* ---- the rest of the platform ---- */

static int install_open(void *ctx, uint64_t size, int resume)
{
	(void)ctx, (void)size, (void)resume;
	ok(0, "install_open called");
	return OTA_ERR_INSTALL;
}

static int64_t now(void *ctx)
{
	(void)ctx;
	return F.clock == CLOCK_ON ? F.now : OTA_NO_CLOCK;
}


static void logline(void *ctx, int level, const char *line)
{
	size_t n = strlen(line);
	(void)ctx, (void)level;
	if (F.log_len + n + 2 > sizeof F.log) {
		ok(0, "log overflow");
		return;
	}
	memcpy(F.log + F.log_len, line, n);
	F.log_len += n;
	F.log[F.log_len++] = '\n';
	F.log[F.log_len] = 0;
}

static void log_clear(void)
{
	F.log_len = 0;
	F.log[0] = 0;
}

/* log_has: a line of event ev containing sub (NULL: any). */
static int log_has(const char *ev, const char *sub)
{
	char head[64];
	const char *p = F.log;
	snprintf(head, sizeof head, "event=%s", ev);
	while (*p) {
		const char *end = strchr(p, '\n');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char line[512];
		if (n >= sizeof line)
			n = sizeof line - 1;
		memcpy(line, p, n);
		line[n] = 0;
		if (strncmp(line, head, strlen(head)) == 0 &&
		    (line[strlen(head)] == ' ' || line[strlen(head)] == 0) && (!sub || strstr(line, sub)))
			return 1;
		p += n + (end ? 1 : 0);
	}
	return 0;
}

static const ota_platform plat = {NULL,
                                  http,
                                  store_get,
                                  store_put,
                                  install_open,
                                  test_install_write,
                                  test_install_read,
                                  test_install_finish,
                                  test_install_abort,
                                  now,
                                  test_random,
                                  logline,
                                  NULL};
/* A platform without a clock function. */
static const ota_platform plat_noclock = {NULL,
                                          http,
                                          store_get,
                                          store_put,
                                          install_open,
                                          test_install_write,
                                          test_install_read,
                                          test_install_finish,
                                          test_install_abort,
                                          NULL,
                                          test_random,
                                          logline,
                                          NULL};

/* ---- clients ---- */

static ota_pubkey key_a, key_b, key_c;
static ota_device_key dev;
static uint8_t chunk[ota_env_buf_size(OTA_ENV_DEFAULT_LOG2)];
static char body_min[OTA_CLIENT_BODY_MIN];
static ota_assignment assignment;

typedef struct {
	const ota_pubkey *prov;
	size_t n_prov;
	ota_pubkey *store;
	size_t cap;
	uint32_t interval;
	char *body;
	size_t body_cap;
	const ota_platform *p;
} setup;

static int init_client(ota_client *c, const setup *s)
{
	ota_client_config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.server_url = SERVER;
	cfg.device_id = "sensor-00042";
	cfg.device_type = "sensor-v1";
	cfg.version = "2.0.3";
	cfg.bootstrap_token = "factory-token-2026-0123456789abcdef";
	cfg.device_key = &dev;
	cfg.assignment_keys = s->prov;
	cfg.n_assignment_keys = s->n_prov;
	cfg.key_store = s->store;
	cfg.key_store_cap = s->cap;
	cfg.key_check_interval = s->interval;
	cfg.chunk_buf = chunk;
	cfg.chunk_cap = sizeof chunk;
	cfg.body_buf = s->body ? s->body : body_min;
	cfg.body_cap = s->body ? s->body_cap : sizeof body_min;
	return ota_client_init(c, s->p ? s->p : &plat, &cfg);
}

static int has_key(const ota_client *c, const ota_pubkey *k)
{
	size_t i;
	for (i = 0; i < c->n_keys; i++)
		if (memcmp(c->keys[i].key_id, k->key_id, 32) == 0)
			return c->keys[i].alg == k->alg && c->keys[i].pub_len == k->pub_len &&
			       memcmp(c->keys[i].pub, k->pub, k->pub_len) == 0;
	return 0;
}

/* trusts: c trusts exactly k1 and k2 (either may be NULL). */
static int trusts(const ota_client *c, const ota_pubkey *k1, const ota_pubkey *k2)
{
	size_t n = (k1 != NULL) + (k2 != NULL);
	return c->n_keys == n && (!k1 || has_key(c, k1)) && (!k2 || has_key(c, k2));
}

static const char *names(const ota_client *c)
{
	static char out[128];
	size_t i;
	out[0] = 0;
	for (i = 0; i < c->n_keys && strlen(out) + 8 < sizeof out; i++) {
		const char *nm = memcmp(c->keys[i].key_id, key_a.key_id, 32) == 0   ? "A"
		                 : memcmp(c->keys[i].key_id, key_b.key_id, 32) == 0 ? "B"
		                 : memcmp(c->keys[i].key_id, key_c.key_id, 32) == 0 ? "C"
		                                                                    : "?";
		strcat(out, i ? "," : "{");
		strcat(out, nm);
	}
	strcat(out, i ? "}" : "{}");
	return out;
}

static void answer_keys(int status, const char *body)
{
	F.keys_status = status;
	F.keys_body = body;
}

static int sync_keys(ota_client *c, int status, const char *body)
{
	answer_keys(status, body);
	log_clear();
	return ota_client_sync_keys(c);
}

/* check_once: one update check, answered 204. */
static void check_once(ota_client *c, const char *what)
{
	int action = -1, e = ota_client_check(c, &assignment, &action);
	ok(e == OTA_OK && action == OTA_ACTION_NONE, "%s: ota_client_check gave %s, action %d", what, ota_err_code(e),
	   action);
}

#define EXPECT_ERR(e, want, what)                                                                                   \
	ok((e) == (want), "%s: got %s (%d), want %s", what, ota_err_code(e), e, ota_err_code(want))

/* ---- the cases ---- */

static ota_client c, c2;
static ota_pubkey ks[OTA_KEYSET_MAX_KEYS], ks2[OTA_KEYSET_MAX_KEYS], ks1[1];

static void cases_follow(void)
{
	setup s = {&key_a, 1, ks, OTA_KEYSET_MAX_KEYS, 0, NULL, 0, NULL};
	static char big_body[12288];
	uint8_t rec16[2048];
	size_t rec16_len;
	unsigned before;
	int e;

	cur_case = "1 provisioned, no key set";
	store_reset(1);
	F.clock = CLOCK_ON;
	F.now = 1700000000;
	F.n_keys_get = F.n_update_get = 0;
	e = init_client(&c, &s);
	EXPECT_ERR(e, OTA_OK, "init with {A} and an empty store");
	ok(trusts(&c, &key_a, NULL), "trusts exactly {A}, got %s", names(&c));
	ok(c.key_serial == 0, "serial 0 before any key set, got %llu", (unsigned long long)c.key_serial);
	ok(c.keys_due, "a key set check is due at start (interval is not NEVER)");
	e = sync_keys(&c, 404, NULL);
	EXPECT_ERR(e, OTA_ERR_HTTP, "the server publishes no key set (404)");
	ok(c.http_status == 404, "http_status 404, got %d", c.http_status);
	ok(trusts(&c, &key_a, NULL) && c.key_serial == 0, "keys unchanged after a 404: %s serial %llu", names(&c),
	   (unsigned long long)c.key_serial);
	ok(!c.keys_due, "no longer due after a 404");
	ok(log_has("keyset-unavailable", "status=404"), "log has keyset-unavailable status=404:\n%s", F.log);
	ok(puts_of("keys") == 0, "a 404 writes no record");
	check_once(&c, "check after the 404");
	ok(F.n_keys_get == 1 && F.n_update_get == 1, "the check after a 404 does not GET /v1/keys again (%u, %u)",
	   F.n_keys_get, F.n_update_get);

	cur_case = "2 set2 followed";
	e = sync_keys(&c, 200, ck_set2);
	EXPECT_ERR(e, OTA_OK, "set2 signed by A and B");
	ok(c.key_serial == 2, "serial 2, got %llu", (unsigned long long)c.key_serial);
	ok(trusts(&c, &key_a, &key_b), "trusts exactly {A,B}, got %s", names(&c));
	ok(puts_of("keys") == 1, "record \"keys\" written once, got %u", puts_of("keys"));
	ok(log_has("keys-updated", "serial=2") && log_has("keys-updated", "retired=0"),
	   "log has keys-updated serial=2 retired=0:\n%s", F.log);

	cur_case = "3 persisted";
	before = puts_of("keys");
	e = init_client(&c2, &(setup){&key_a, 1, ks2, OTA_KEYSET_MAX_KEYS, 0, NULL, 0, NULL});
	EXPECT_ERR(e, OTA_OK, "init of a new client on the same store");
	ok(c2.key_serial == 2, "serial 2 from the record, got %llu", (unsigned long long)c2.key_serial);
	ok(trusts(&c2, &key_a, &key_b), "trusts exactly {A,B} from the record, got %s", names(&c2));
	ok(puts_of("keys") == before, "loading the record writes nothing");

	cur_case = "4 same set again";
	e = sync_keys(&c2, 200, ck_set2);
	EXPECT_ERR(e, OTA_OK, "set2 again");
	ok(c2.key_serial == 2 && trusts(&c2, &key_a, &key_b), "unchanged: %s serial %llu", names(&c2),
	   (unsigned long long)c2.key_serial);
	ok(puts_of("keys") == before, "nothing written for the same set, puts %u -> %u", before, puts_of("keys"));
	ok(!log_has("keys-updated", NULL), "no keys-updated for the same set");

	cur_case = "5 set signed by an untrusted key";
	e = sync_keys(&c2, 200, ck_setc);
	EXPECT_ERR(e, OTA_ERR_UNTRUSTED_KEY, "setC signed by C only");
	ok(c2.key_serial == 2 && trusts(&c2, &key_a, &key_b), "unchanged: %s serial %llu", names(&c2),
	   (unsigned long long)c2.key_serial);
	ok(puts_of("keys") == before, "nothing written");
	ok(log_has("keyset-refused", "code=untrusted-signing-key"), "log has keyset-refused code=untrusted-signing-key:\n%s",
	   F.log);

	cur_case = "6 tampered signature";
	e = sync_keys(&c2, 200, ck_set3_bad);
	EXPECT_ERR(e, OTA_ERR_BAD_SIGNATURE, "set3 with a flipped signature byte");
	ok(c2.key_serial == 2 && trusts(&c2, &key_a, &key_b), "unchanged: %s serial %llu", names(&c2),
	   (unsigned long long)c2.key_serial);
	ok(puts_of("keys") == before, "nothing written");
	ok(log_has("keyset-refused", "code=bad-signature"), "log has keyset-refused code=bad-signature:\n%s", F.log);

	cur_case = "7 storage fails";
	F.fail_put = 1;
	e = sync_keys(&c2, 200, ck_set3);
	F.fail_put = 0;
	EXPECT_ERR(e, OTA_ERR_STORAGE, "set3 while store_put fails");
	ok(c2.key_serial == 2 && trusts(&c2, &key_a, &key_b),
	   "never trusted before durable: still {A,B} serial 2, got %s serial %llu", names(&c2),
	   (unsigned long long)c2.key_serial);
	ok(puts_of("keys") == before, "nothing written");

	cur_case = "8 rotation: A retired";
	e = sync_keys(&c2, 200, ck_set3);
	EXPECT_ERR(e, OTA_OK, "set3 signed by B");
	ok(c2.key_serial == 3, "serial 3, got %llu", (unsigned long long)c2.key_serial);
	ok(trusts(&c2, &key_b, NULL), "trusts exactly {B}, got %s", names(&c2));
	ok(puts_of("keys") == before + 1, "record written once, puts %u -> %u", before, puts_of("keys"));
	ok(log_has("keys-updated", "retired=1") && log_has("keys-updated", "serial=3"),
	   "log has keys-updated serial=3 retired=1:\n%s", F.log);

	cur_case = "9 replay";
	before = puts_of("keys");
	e = sync_keys(&c2, 200, ck_set2);
	EXPECT_ERR(e, OTA_ERR_STALE, "set2 replayed at serial 3");
	ok(c2.key_serial == 3 && trusts(&c2, &key_b, NULL), "unchanged: %s serial %llu", names(&c2),
	   (unsigned long long)c2.key_serial);
	ok(puts_of("keys") == before, "nothing written");
	ok(log_has("keyset-refused", "code=stale"), "log has keyset-refused code=stale:\n%s", F.log);

	cur_case = "10 key_store_cap 1";
	e = init_client(&c, &(setup){&key_a, 1, ks1, 1, 0, NULL, 0, NULL});
	EXPECT_ERR(e, OTA_OK, "init with key_store_cap 1");
	ok(c.key_serial == 3 && trusts(&c, &key_b, NULL), "loads {B} serial 3, got %s serial %llu", names(&c),
	   (unsigned long long)c.key_serial);
	e = sync_keys(&c, 200, ck_set4);
	EXPECT_ERR(e, OTA_ERR_BUFFER, "set4 (2 keys) with room for 1");
	ok(c.key_serial == 3 && trusts(&c, &key_b, NULL), "unchanged: %s serial %llu", names(&c),
	   (unsigned long long)c.key_serial);
	ok(puts_of("keys") == before, "nothing written");
	ok(log_has("keyset-refused", "code=buffer-too-small"), "log has keyset-refused code=buffer-too-small:\n%s", F.log);

	cur_case = "11 set4";
	e = sync_keys(&c2, 200, ck_set4);
	EXPECT_ERR(e, OTA_OK, "set4 signed by B and C");
	ok(c2.key_serial == 4, "serial 4, got %llu", (unsigned long long)c2.key_serial);
	ok(trusts(&c2, &key_b, &key_c), "trusts exactly {B,C}, got %s", names(&c2));
	ok(puts_of("keys") == before + 1, "record written once");

	cur_case = "12 16 keys";
	before = puts_of("keys");
	e = sync_keys(&c2, 200, ck_set16);
	EXPECT_ERR(e, OTA_ERR_BUFFER, "set16 (a body over the 4096-byte body buffer)");
	ok(c2.key_serial == 4 && trusts(&c2, &key_b, &key_c), "unchanged: %s serial %llu", names(&c2),
	   (unsigned long long)c2.key_serial);
	ok(puts_of("keys") == before, "nothing written");
	ok(log_has("keyset-refused", "code=buffer-too-small"), "log has keyset-refused code=buffer-too-small:\n%s", F.log);
	ok(!c2.keys_due, "a body too large is not due again before the next interval");
	e = init_client(&c, &(setup){&key_a, 1, ks, OTA_KEYSET_MAX_KEYS, 0, big_body, sizeof big_body, NULL});
	EXPECT_ERR(e, OTA_OK, "init with a 12288-byte body buffer");
	ok(c.key_serial == 4 && trusts(&c, &key_b, &key_c), "loads {B,C} serial 4, got %s serial %llu", names(&c),
	   (unsigned long long)c.key_serial);
	e = sync_keys(&c, 200, ck_set16);
	EXPECT_ERR(e, OTA_OK, "set16 with a 12288-byte body buffer");
	ok(c.key_serial == 5 && c.n_keys == 16 && has_key(&c, &key_b) && !has_key(&c, &key_c),
	   "serial 5 with 16 keys, B among them and C retired: serial %llu, %u keys",
	   (unsigned long long)c.key_serial, (unsigned)c.n_keys);
	ok(log_has("keys-updated", "keys=16") && log_has("keys-updated", "retired=1"),
	   "log has keys-updated keys=16 retired=1:\n%s", F.log);
	ok(puts_of("keys") == before + 1, "record written once");
	e = init_client(&c2, &(setup){&key_a, 1, ks2, OTA_KEYSET_MAX_KEYS, 0, NULL, 0, NULL});
	EXPECT_ERR(e, OTA_OK, "init on the 16-key record");
	ok(c2.key_serial == 5 && c2.n_keys == 16 && has_key(&c2, &key_b), "16 keys at serial 5 persisted: %u at %llu",
	   (unsigned)c2.n_keys, (unsigned long long)c2.key_serial);
	rec16_len = find_rec("keys") ? find_rec("keys")->len : 0;
	ok(rec16_len > 0 && rec16_len <= sizeof rec16 && rec16_len <= 1602,
	   "the 16-key record is at most 1,602 bytes (ota_client.h), got %u", (unsigned)rec16_len);
	if (rec16_len > sizeof rec16)
		rec16_len = 0;
	if (rec16_len)
		memcpy(rec16, find_rec("keys")->data, rec16_len);

	cur_case = "13 re-provisioned";
	before = puts_of("keys");
	log_clear();
	e = init_client(&c, &(setup){&key_c, 1, ks, OTA_KEYSET_MAX_KEYS, 0, NULL, 0, NULL});
	EXPECT_ERR(e, OTA_OK, "init provisioned with {C}");
	ok(trusts(&c, &key_c, NULL), "the provisioned keys replace the followed ones: want {C}, got %s (%u keys)",
	   names(&c), (unsigned)c.n_keys);
	ok(c.key_serial == 5, "the serial stays 5, got %llu", (unsigned long long)c.key_serial);
	ok(puts_of("keys") == before + 1, "the record is rewritten once, puts %u -> %u", before, puts_of("keys"));
	ok(log_has("keys-reprovisioned", "serial=5"), "log has keys-reprovisioned serial=5:\n%s", F.log);
	before = puts_of("keys");
	log_clear();
	e = init_client(&c2, &(setup){&key_c, 1, ks2, OTA_KEYSET_MAX_KEYS, 0, NULL, 0, NULL});
	EXPECT_ERR(e, OTA_OK, "init with {C} again");
	ok(trusts(&c2, &key_c, NULL) && c2.key_serial == 5, "still {C} at serial 5, got %s serial %llu", names(&c2),
	   (unsigned long long)c2.key_serial);
	ok(puts_of("keys") == before, "nothing rewritten the second time");
	ok(!log_has("keys-reprovisioned", NULL), "not re-provisioned again");
	e = sync_keys(&c2, 200, ck_set2);
	EXPECT_ERR(e, OTA_ERR_UNTRUSTED_KEY, "set2 after re-provisioning with {C}");

	cur_case = "14 unreadable record";
	{
		static const uint8_t garbage[] = "not a keys record at all";
		uint8_t junk[64];
		size_t i;
		struct {
			const char *what;
			const uint8_t *p;
			size_t n;
		} bad[4];
		for (i = 0; i < sizeof junk; i++)
			junk[i] = (uint8_t)(i * 37 + 11);
		junk[0] = 1; /* the record's version: the rest is garbage */
		bad[0].what = "garbage bytes", bad[0].p = garbage, bad[0].n = sizeof garbage - 1;
		bad[1].what = "garbage after the version byte", bad[1].p = junk, bad[1].n = sizeof junk;
		bad[2].what = "a truncated valid record", bad[2].p = rec16, bad[2].n = rec16_len ? rec16_len - 40 : 0;
		bad[3].what = "a valid record with a byte more", bad[3].p = rec16, bad[3].n = rec16_len + 1;
		rec16[rec16_len] = 0;
		for (i = 0; i < 4; i++) {
			char what[96];
			store_reset(1);
			set_rec("keys", bad[i].p, bad[i].n);
			log_clear();
			snprintf(what, sizeof what, "init on %s", bad[i].what);
			e = init_client(&c, &(setup){&key_a, 1, ks, OTA_KEYSET_MAX_KEYS, 0, NULL, 0, NULL});
			EXPECT_ERR(e, OTA_OK, what);
			ok(trusts(&c, &key_a, NULL) && c.key_serial == 0,
			   "%s: falls back to the provisioned {A} at serial 0, got %s serial %llu", what, names(&c),
			   (unsigned long long)c.key_serial);
			ok(log_has("keys-record-unreadable", NULL), "%s: log has keys-record-unreadable:\n%s", what, F.log);
		}
		/* The fallback follows key sets again. */
		e = sync_keys(&c, 200, ck_set2);
		EXPECT_ERR(e, OTA_OK, "set2 after an unreadable record");
		ok(c.key_serial == 2 && trusts(&c, &key_a, &key_b), "{A,B} serial 2, got %s serial %llu", names(&c),
		   (unsigned long long)c.key_serial);
	}

	cur_case = "14 oversized record";
	{
		static uint8_t big[3000];
		memset(big, 0x5a, sizeof big);
		big[0] = 1;
		store_reset(1);
		set_rec("keys", big, sizeof big);
		log_clear();
		e = init_client(&c, &(setup){&key_a, 1, ks, OTA_KEYSET_MAX_KEYS, 0, NULL, 0, NULL});
		EXPECT_ERR(e, OTA_OK, "init on a 3,000-byte record (over the 1,602 a record can be)");
		ok(trusts(&c, &key_a, NULL) && c.key_serial == 0 && log_has("keys-record-unreadable", NULL),
		   "falls back to {A} at serial 0 and logs keys-record-unreadable: %s serial %llu\n%s", names(&c),
		   (unsigned long long)c.key_serial, F.log);
	}

	cur_case = "14 record of more keys than key_store_cap";
	if (rec16_len) {
		ota_pubkey small[2];
		store_reset(1);
		set_rec("keys", rec16, rec16_len);
		log_clear();
		e = init_client(&c, &(setup){&key_a, 1, small, 2, 0, NULL, 0, NULL});
		EXPECT_ERR(e, OTA_OK, "init with room for 2 keys on the 16-key record");
		ok(trusts(&c, &key_a, NULL) && c.key_serial == 5,
		   "the provisioned {A}, keeping serial 5 so no older set is followed again: %s serial %llu", names(&c),
		   (unsigned long long)c.key_serial);
		ok(log_has("keys-record-too-large", NULL) && log_has("keys-reprovisioned", "serial=5"),
		   "log has keys-record-too-large and keys-reprovisioned serial=5:\n%s", F.log);
		e = sync_keys(&c, 200, ck_set2);
		EXPECT_ERR(e, OTA_ERR_STALE, "set2 (serial 2) below the kept serial 5");
	} else {
		ok(0, "no 16-key record to try");
	}

	cur_case = "13 provisioned keys in another order";
	{
		ota_pubkey ab[2], ba[2];
		unsigned before_puts;
		ab[0] = key_a, ab[1] = key_b, ba[0] = key_b, ba[1] = key_a;
		store_reset(1);
		e = init_client(&c, &(setup){ab, 2, ks, OTA_KEYSET_MAX_KEYS, 0, NULL, 0, NULL});
		EXPECT_ERR(e, OTA_OK, "init provisioned with {A,B}");
		e = sync_keys(&c, 200, ck_set3);
		EXPECT_ERR(e, OTA_OK, "set3 followed");
		before_puts = puts_of("keys");
		log_clear();
		e = init_client(&c2, &(setup){ba, 2, ks2, OTA_KEYSET_MAX_KEYS, 0, NULL, 0, NULL});
		EXPECT_ERR(e, OTA_OK, "init provisioned with {B,A}");
		ok(trusts(&c2, &key_b, NULL) && c2.key_serial == 3 && !log_has("keys-reprovisioned", NULL) &&
		       puts_of("keys") == before_puts,
		   "the same keys in another order are not a re-provisioning: %s serial %llu\n%s", names(&c2),
		   (unsigned long long)c2.key_serial, F.log);
	}
}

/* checks_until_sync runs update checks (answered 204) and returns how many
 * ran before one of them got /v1/keys, at most max. */
static unsigned checks_until_sync(ota_client *cl, unsigned max, const char *what)
{
	unsigned i, k = F.n_keys_get;
	for (i = 0; i < max; i++) {
		check_once(cl, what);
		if (F.n_keys_get != k)
			return i;
	}
	return max;
}

static void cases_due(void)
{
	unsigned n, k;
	int e;

	cur_case = "15 due: clock, interval 100";
	store_reset(1);
	answer_keys(200, ck_set2);
	F.clock = CLOCK_ON;
	F.now = 1000;
	F.n_keys_get = F.n_update_get = 0;
	e = init_client(&c, &(setup){&key_a, 1, ks, OTA_KEYSET_MAX_KEYS, 100, NULL, 0, NULL});
	EXPECT_ERR(e, OTA_OK, "init");
	check_once(&c, "first check at T");
	ok(F.n_keys_get == 1 && F.n_update_get == 1, "the first check after start GETs /v1/keys, then /v1/update (%u, %u)",
	   F.n_keys_get, F.n_update_get);
	ok(c.key_serial == 2, "set2 followed by the check, serial %llu", (unsigned long long)c.key_serial);
	F.now = 1050;
	check_once(&c, "check at T+50");
	F.now = 1099;
	check_once(&c, "check at T+99");
	ok(F.n_keys_get == 1 && F.n_update_get == 3, "no /v1/keys before T+100 (%u keys, %u checks)", F.n_keys_get,
	   F.n_update_get);
	F.now = 1100;
	check_once(&c, "check at T+100");
	ok(F.n_keys_get == 2 && F.n_update_get == 4, "/v1/keys again at T+100 (%u keys, %u checks)", F.n_keys_get,
	   F.n_update_get);
	F.now = 1150;
	check_once(&c, "check at T+150");
	ok(F.n_keys_get == 2, "not again at T+150 (synced at T+100): %u", F.n_keys_get);
	F.now = 1099;
	check_once(&c, "check with the clock set back");
	ok(F.n_keys_get == 3, "a clock set back before the last key set check makes it due: %u", F.n_keys_get);
	F.now = 1150;
	check_once(&c, "check 51 s after the set-back check");
	ok(F.n_keys_get == 3, "then not due before 100 s more: %u", F.n_keys_get);
	/* A failed key set check (503) is no check: the next one asks again. */
	F.now = 1300;
	answer_keys(503, "{\"code\":\"unavailable\",\"message\":\"later\"}");
	check_once(&c, "check while /v1/keys answers 503");
	ok(F.n_keys_get == 4, "GET /v1/keys at T+300: %u", F.n_keys_get);
	answer_keys(200, ck_set2);
	check_once(&c, "check after the 503");
	ok(F.n_keys_get == 5, "a 503 leaves the key set check due: %u", F.n_keys_get);
	check_once(&c, "check after that");
	ok(F.n_keys_get == 5, "then not due: %u", F.n_keys_get);

	cur_case = "15 due: default interval";
	store_reset(1);
	F.now = 5000;
	F.n_keys_get = 0;
	e = init_client(&c, &(setup){&key_a, 1, ks, OTA_KEYSET_MAX_KEYS, 0, NULL, 0, NULL});
	EXPECT_ERR(e, OTA_OK, "init");
	check_once(&c, "first check");
	F.now = 5000 + OTA_CLIENT_KEY_CHECK_DEFAULT - 1;
	check_once(&c, "check at T+3599");
	ok(F.n_keys_get == 1, "interval 0 is %d s: not due at T+3599 (%u)", OTA_CLIENT_KEY_CHECK_DEFAULT, F.n_keys_get);
	F.now = 5000 + OTA_CLIENT_KEY_CHECK_DEFAULT;
	check_once(&c, "check at T+3600");
	ok(F.n_keys_get == 2, "due at T+3600 (%u)", F.n_keys_get);

	cur_case = "15 due: no clock (now == NULL)";
	store_reset(1);
	F.n_keys_get = F.n_update_get = 0;
	e = init_client(&c, &(setup){&key_a, 1, ks, OTA_KEYSET_MAX_KEYS, 100, NULL, 0, &plat_noclock});
	EXPECT_ERR(e, OTA_OK, "init");
	check_once(&c, "first check");
	ok(F.n_keys_get == 1 && c.key_serial == 2, "the first check GETs /v1/keys (%u)", F.n_keys_get);
	n = checks_until_sync(&c, 2 * OTA_CLIENT_KEY_CHECK_CHECKS, "check without a clock");
	ok(n == OTA_CLIENT_KEY_CHECK_CHECKS - 1,
	   "due again after %d answered checks: the sync came with check %u after the first, want %d",
	   OTA_CLIENT_KEY_CHECK_CHECKS, n + 1, OTA_CLIENT_KEY_CHECK_CHECKS);
	n = checks_until_sync(&c, 2 * OTA_CLIENT_KEY_CHECK_CHECKS, "check without a clock");
	ok(n == OTA_CLIENT_KEY_CHECK_CHECKS - 1, "and again %d checks later (got %u)", OTA_CLIENT_KEY_CHECK_CHECKS,
	   n + 1);

	cur_case = "15 due: no clock (OTA_NO_CLOCK)";
	store_reset(1);
	F.clock = CLOCK_NONE;
	F.n_keys_get = 0;
	e = init_client(&c, &(setup){&key_a, 1, ks, OTA_KEYSET_MAX_KEYS, 100, NULL, 0, NULL});
	EXPECT_ERR(e, OTA_OK, "init");
	check_once(&c, "first check");
	ok(F.n_keys_get == 1, "the first check GETs /v1/keys (%u)", F.n_keys_get);
	n = checks_until_sync(&c, 2 * OTA_CLIENT_KEY_CHECK_CHECKS, "check with now() = OTA_NO_CLOCK");
	ok(n == OTA_CLIENT_KEY_CHECK_CHECKS - 1, "due again after %d answered checks (got %u)",
	   OTA_CLIENT_KEY_CHECK_CHECKS, n + 1);

	cur_case = "15 due: NEVER";
	store_reset(1);
	F.clock = CLOCK_ON;
	F.now = 1000;
	F.n_keys_get = F.n_update_get = 0;
	e = init_client(&c, &(setup){&key_a, 1, ks, OTA_KEYSET_MAX_KEYS, OTA_CLIENT_KEY_CHECK_NEVER, NULL, 0, NULL});
	EXPECT_ERR(e, OTA_OK, "init with OTA_CLIENT_KEY_CHECK_NEVER");
	ok(!c.keys_due, "NEVER: not due at start");
	for (k = 0; k < 3; k++) {
		check_once(&c, "check with NEVER");
		F.now += 1000000;
	}
	ok(F.n_keys_get == 0, "NEVER: no /v1/keys at start nor as time passes (%u)", F.n_keys_get);
	e = sync_keys(&c, 200, ck_set2);
	EXPECT_ERR(e, OTA_OK, "NEVER: an explicit ota_client_sync_keys still follows");
	ok(c.key_serial == 2, "serial 2 (%llu)", (unsigned long long)c.key_serial);
	F.now += 1000000;
	check_once(&c, "check with NEVER after a sync");
	ok(F.n_keys_get == 1, "NEVER: no periodic check after a sync (%u)", F.n_keys_get);
	store_reset(1);
	F.n_keys_get = 0;
	e = init_client(&c, &(setup){&key_a, 1, ks, OTA_KEYSET_MAX_KEYS, OTA_CLIENT_KEY_CHECK_NEVER, NULL, 0,
	                             &plat_noclock});
	EXPECT_ERR(e, OTA_OK, "init with NEVER and no clock");
	n = checks_until_sync(&c, 2 * OTA_CLIENT_KEY_CHECK_CHECKS + 2, "check with NEVER, no clock");
	ok(n == 2 * OTA_CLIENT_KEY_CHECK_CHECKS + 2 && F.n_keys_get == 0, "NEVER without a clock: no /v1/keys in %u checks",
	   n);

	cur_case = "16 without a key_store";
	store_reset(1);
	F.n_keys_get = F.n_update_get = 0;
	F.now = 1000;
	e = init_client(&c, &(setup){&key_a, 1, NULL, 0, 100, NULL, 0, NULL});
	EXPECT_ERR(e, OTA_OK, "init without a key_store");
	ok(trusts(&c, &key_a, NULL) && c.key_serial == 0, "trusts the provisioned {A}, got %s", names(&c));
	ok(!c.keys_due, "nothing due without a key_store");
	answer_keys(200, ck_set2);
	e = ota_client_sync_keys(&c);
	EXPECT_ERR(e, OTA_ERR_ARG, "ota_client_sync_keys without a key_store");
	for (k = 0; k < 3; k++) {
		check_once(&c, "check without a key_store");
		F.now += 1000;
	}
	e = init_client(&c, &(setup){&key_a, 1, NULL, 0, 100, NULL, 0, &plat_noclock});
	EXPECT_ERR(e, OTA_OK, "init without a key_store, no clock");
	checks_until_sync(&c, OTA_CLIENT_KEY_CHECK_CHECKS + 2, "check without a key_store, no clock");
	ok(F.n_keys_get == 0, "never GET /v1/keys without a key_store (%u GETs)", F.n_keys_get);
	ok(trusts(&c, &key_a, NULL), "still {A}");
	ok(puts_of("keys") == 0, "no record \"keys\" without a key_store");
}

int main(void)
{
	static const uint8_t priv[32] = {7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	                                 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
	if (ota_device_key_from_priv(&dev, OTA_KEM_X25519, priv) != OTA_OK ||
	    ota_pubkey_from_raw(&key_a, OTA_ALG_ED25519, ck_pub_a, sizeof ck_pub_a) != OTA_OK ||
	    ota_pubkey_from_raw(&key_b, OTA_ALG_P256, ck_pub_b, sizeof ck_pub_b) != OTA_OK ||
	    ota_pubkey_from_raw(&key_c, OTA_ALG_ED25519, ck_pub_c, sizeof ck_pub_c) != OTA_OK) {
		printf("FAIL setup: keys\nRESULT: FAIL\n");
		return 1;
	}
	F.update_status = 204;
	cases_follow();
	cases_due();
	store_reset(0);
	if (failed) {
		printf("client keys: %u of %u checks failed\nRESULT: FAIL\n", failed, passed + failed);
		return 1;
	}
	printf("client keys: %u checks passed\nRESULT: PASS\n", passed);
	return 0;
}
