/*
 * The client's assignment keys: the provisioned ones, or those of the last
 * key set it followed (GET /v1/keys), kept in the record "keys" (the
 * agent's rules: agent/keys.go, docs/protocol.md).
 */
#include <string.h>

#include "client_internal.h"

/* The "keys" record: version, the provisioned keys it was made from (8
 * bytes of a SHA-256 over their key IDs), serial, count, then each key's
 * algorithm, public key (length first) and key ID. */
#define KEYS_RECORD_VERSION 1
#define KEYS_RECORD_MAX (1 + 8 + 8 + 1 + OTA_KEYSET_MAX_KEYS * (2 + 65 + 32))

/* provisioned_id names the provisioned keys whatever their order: a
 * SHA-256 over their key IDs in ascending order (without memory to sort
 * in: each round takes the smallest ID above the last). */
static void provisioned_id(const ota_client *c, uint8_t out[8])
{
	const ota_pubkey *k = c->cfg.assignment_keys;
	const uint8_t *last = NULL;
	ota_sha256_ctx h;
	uint8_t d[32];
	size_t i, j;
	ota_sha256_init(&h);
	for (i = 0; i < c->cfg.n_assignment_keys; i++) {
		const uint8_t *next = NULL;
		for (j = 0; j < c->cfg.n_assignment_keys; j++)
			if ((!last || memcmp(k[j].key_id, last, 32) > 0) && (!next || memcmp(k[j].key_id, next, 32) < 0))
				next = k[j].key_id;
		if (!next)
			break; /* the same key given twice */
		ota_sha256_update(&h, next, 32);
		last = next;
	}
	ota_sha256_final(&h, d);
	memcpy(out, d, 8);
}

int ota_cl_trusts(const ota_client *c, const uint8_t id[32])
{
	size_t i;
	for (i = 0; i < c->n_keys; i++)
		if (memcmp(c->keys[i].key_id, id, 32) == 0)
			return 1;
	return 0;
}

static int keys_save(ota_client *c, uint8_t *buf, size_t cap, uint64_t serial, const ota_pubkey *keys, size_t n)
{
	uint8_t prov[8];
	ota_cl_rec r;
	size_t i;
	provisioned_id(c, prov);
	r.p = buf, r.cap = cap < KEYS_RECORD_MAX ? cap : KEYS_RECORD_MAX, r.n = 0, r.err = 0;
	ota_cl_w_u8(&r, KEYS_RECORD_VERSION);
	ota_cl_w_bytes(&r, prov, sizeof prov);
	ota_cl_w_u64(&r, serial);
	ota_cl_w_u8(&r, (uint8_t)n);
	for (i = 0; i < n; i++) {
		ota_cl_w_u8(&r, keys[i].alg);
		ota_cl_w_u8(&r, keys[i].pub_len);
		ota_cl_w_bytes(&r, keys[i].pub, keys[i].pub_len);
		ota_cl_w_bytes(&r, keys[i].key_id, 32);
	}
	if (r.err)
		return OTA_ERR_BUFFER;
	return c->plat->store_put(c->plat->ctx, OTA_REC_KEYS, buf, r.n) == OTA_OK ? OTA_OK : OTA_ERR_STORAGE;
}

/* keys_decode reads a record into key_store: KEYS_OK, KEYS_BAD (not a
 * record), or KEYS_TOO_MANY (a record of more keys than key_store_cap,
 * *serial read). */
enum { KEYS_OK, KEYS_BAD, KEYS_TOO_MANY };

static int keys_decode(ota_client *c, const uint8_t *buf, size_t len, uint8_t prov[8], uint64_t *serial, size_t *n)
{
	ota_cl_rec r;
	size_t i;
	r.p = (uint8_t *)(uintptr_t)buf, r.cap = len, r.n = 0, r.err = 0;
	if (ota_cl_r_u8(&r) != KEYS_RECORD_VERSION)
		return KEYS_BAD;
	ota_cl_r_bytes(&r, prov, 8);
	*serial = ota_cl_r_u64(&r);
	*n = ota_cl_r_u8(&r);
	if (r.err || *n < 1 || *n > OTA_KEYSET_MAX_KEYS || *serial >= (uint64_t)1 << 53)
		return KEYS_BAD;
	if (*n > c->cfg.key_store_cap)
		return KEYS_TOO_MANY;
	for (i = 0; i < *n; i++) {
		ota_pubkey *k = &c->cfg.key_store[i];
		k->alg = ota_cl_r_u8(&r);
		k->pub_len = ota_cl_r_u8(&r);
		if ((k->alg != OTA_ALG_ED25519 || k->pub_len != 32) && (k->alg != OTA_ALG_P256 || k->pub_len != 65))
			return KEYS_BAD;
		ota_cl_r_bytes(&r, k->pub, k->pub_len);
		ota_cl_r_bytes(&r, k->key_id, 32);
	}
	return !r.err && r.n == len ? KEYS_OK : KEYS_BAD;
}

/* ota_cl_keys_load, at init: the stored keys, or the provisioned ones
 * (stored at once when they replace others). The chunk and body buffers
 * are free then. */
int ota_cl_keys_load(ota_client *c)
{
	uint8_t *buf = c->cfg.chunk_buf, prov[8], want[8];
	uint64_t serial = 0;
	size_t len = 0, n = 0;
	ota_cl_line l;
	c->keys = c->cfg.assignment_keys;
	c->n_keys = c->cfg.n_assignment_keys;
	c->key_serial = 0;
	c->keys_due = c->cfg.key_store && c->cfg.key_check_interval != OTA_CLIENT_KEY_CHECK_NEVER;
	if (!c->cfg.key_store)
		return OTA_OK;
	/* Read with room to spare: a record too long to be one is judged
	 * unreadable below rather than failing every start. */
	if (c->plat->store_get(c->plat->ctx, OTA_REC_KEYS, buf, c->cfg.chunk_cap, &len) != OTA_OK)
		return OTA_ERR_STORAGE;
	if (len == 0)
		return OTA_OK; /* as provisioned, serial 0 */
	switch (len > KEYS_RECORD_MAX ? KEYS_BAD : keys_decode(c, buf, len, prov, &serial, &n)) {
	case KEYS_BAD:
		/* The serial is lost with it: an older key set could be followed
		 * again, if a provisioned key signed it. */
		ota_cl_log_event(c, OTA_LOG_WARN, "keys-record-unreadable", NULL, NULL);
		return OTA_OK;
	case KEYS_TOO_MANY:
		/* A firmware with a smaller key_store: the provisioned keys, as
		 * when re-provisioned. */
		memset(prov, 0, sizeof prov);
		ota_cl_log_event(c, OTA_LOG_WARN, "keys-record-too-large", NULL, NULL);
		break;
	}
	provisioned_id(c, want);
	if (memcmp(prov, want, 8) != 0) {
		/* Re-provisioned: the configured keys replace the followed ones,
		 * and the serial stays, so no older key set is accepted again. */
		c->key_serial = serial;
		ota_cl_line_begin(&l, "keys-reprovisioned");
		ota_cl_line_u64(&l, "serial", serial);
		ota_cl_emit(c, OTA_LOG_INFO, &l);
		return keys_save(c, buf, c->cfg.chunk_cap, serial, c->cfg.assignment_keys, c->cfg.n_assignment_keys);
	}
	c->keys = c->cfg.key_store;
	c->n_keys = n;
	c->key_serial = serial;
	return OTA_OK;
}

/* ota_cl_keys_due: a key set check is due before the next update check. */
int ota_cl_keys_due(const ota_client *c)
{
	int64_t now;
	uint32_t every = c->cfg.key_check_interval ? c->cfg.key_check_interval : OTA_CLIENT_KEY_CHECK_DEFAULT;
	if (!c->cfg.key_store)
		return 0;
	if (c->keys_due)
		return 1;
	/* Once the first check (due at start) has run. */
	if (every == OTA_CLIENT_KEY_CHECK_NEVER)
		return 0;
	now = c->plat->now ? c->plat->now(c->plat->ctx) : OTA_NO_CLOCK;
	if (now == OTA_NO_CLOCK || c->keys_checked_at == OTA_NO_CLOCK)
		return c->checks - c->checks_at_keys >= OTA_CLIENT_KEY_CHECK_CHECKS;
	/* A clock set backwards counts as due. */
	return now < c->keys_checked_at || (uint64_t)(now - c->keys_checked_at) >= every;
}

static void checked(ota_client *c)
{
	c->keys_due = 0;
	c->keys_checked_at = c->plat->now ? c->plat->now(c->plat->ctx) : OTA_NO_CLOCK;
	c->checks_at_keys = c->checks;
}

static void short_ids(const ota_pubkey *keys, size_t n, size_t most, char *out, size_t cap, int *bad)
{
	char hex[65];
	size_t i;
	for (i = 0; i < n && i < most; i++) {
		ota_hex_encode(keys[i].key_id, 32, hex);
		hex[16] = 0;
		if (i)
			ota_cl_cat(out, cap, ",", bad);
		ota_cl_cat(out, cap, hex, bad);
	}
	if (n > most) {
		ota_cl_cat(out, cap, ",+", bad);
		ota_cl_cat_u64(out, cap, n - most, bad);
	}
}

static void refused(ota_client *c, int e)
{
	ota_cl_line l;
	ota_cl_line_begin(&l, "keyset-refused");
	ota_cl_line_str(&l, "code", ota_err_code(e));
	ota_cl_line_u64(&l, "serial", c->key_serial);
	ota_cl_emit(c, OTA_LOG_WARN, &l);
}

int ota_client_sync_keys(ota_client *c)
{
	ota_pubkey *next;
	uint8_t *scratch;
	uint64_t serial = c->key_serial;
	size_t len = 0, n = 0, retired = 0, i;
	ota_trust trust;
	ota_cl_line l;
	int e, bad = 0;
	char ids[96];
	if (!c->cfg.key_store)
		return OTA_ERR_ARG;
	e = ota_cl_call(c, "GET", ota_cl_path_url, "/v1/keys", NULL, NULL, 0, &len);
	if (e == OTA_ERR_BUFFER) {
		checked(c); /* the same set would not fit before the next check */
		refused(c, e);
		return e;
	}
	if (e != OTA_OK)
		return e;
	if (c->http_status == 404) {
		/* A server without key rotation: keep the keys. */
		checked(c);
		ota_cl_log_answer(c, OTA_LOG_INFO, "keyset-unavailable", len);
		return OTA_ERR_HTTP;
	}
	if (c->http_status != 200) {
		ota_cl_log_answer(c, OTA_LOG_WARN, "keyset-failed", len);
		return OTA_ERR_HTTP;
	}
	checked(c);
	/* The new keys and the decoded payload go to the idle chunk buffer:
	 * the trusted keys must stay as they are until the set is stored. */
	next = ota_cl_align8(c->cfg.chunk_buf);
	scratch = (uint8_t *)(next + OTA_KEYSET_MAX_KEYS);
	trust.keys = c->keys;
	trust.n = c->n_keys;
	e = ota_keyset_update(&trust, &serial, c->cfg.body_buf, len, scratch,
	                      c->cfg.chunk_cap - OTA_CL_RESERVED - (size_t)(scratch - c->cfg.chunk_buf), next,
	                      OTA_KEYSET_MAX_KEYS, &n);
	if (e == OTA_OK && n > c->cfg.key_store_cap)
		e = OTA_ERR_BUFFER;
	if (e != OTA_OK) {
		refused(c, e);
		return e;
	}
	if (serial == c->key_serial) {
		ota_cl_line_begin(&l, "keys-unchanged");
		ota_cl_line_u64(&l, "serial", serial);
		ota_cl_emit(c, OTA_LOG_DEBUG, &l);
		return OTA_OK;
	}
	/* Durable before anything is verified with them. */
	if ((e = keys_save(c, (uint8_t *)c->cfg.body_buf, OTA_CL_JSON_CAP(c), serial, next, n)) != OTA_OK)
		return e;
	for (i = 0; i < c->n_keys; i++) {
		size_t j;
		int kept = 0;
		for (j = 0; j < n; j++)
			kept |= memcmp(c->keys[i].key_id, next[j].key_id, 32) == 0;
		retired += !kept;
	}
	memmove(c->cfg.key_store, next, n * sizeof *next);
	c->keys = c->cfg.key_store;
	c->n_keys = n;
	c->key_serial = serial;
	ids[0] = 0;
	short_ids(c->keys, n, 4, ids, sizeof ids, &bad);
	ota_cl_line_begin(&l, "keys-updated");
	ota_cl_line_u64(&l, "serial", serial);
	ota_cl_line_u64(&l, "keys", n);
	ota_cl_line_str(&l, "trusted", ids);
	ota_cl_line_u64(&l, "retired", retired);
	ota_cl_emit(c, OTA_LOG_INFO, &l);
	return OTA_OK;
}

void ota_cl_keys_detail(const ota_client *c, const char *key_id, int sync_err, char *out, size_t cap)
{
	int bad = 0;
	out[0] = 0;
	/* Short enough for a Rollout's failure list, which keeps 256
	 * characters of a reason. */
	ota_cl_cat(out, cap, "assignment signed by key ", &bad);
	ota_cl_cat(out, cap, key_id, &bad);
	ota_cl_cat(out, cap, "; this device trusts ", &bad);
	short_ids(c->keys, c->n_keys, 3, out, cap, &bad);
	ota_cl_cat(out, cap, " (key set serial ", &bad);
	ota_cl_cat_u64(out, cap, c->key_serial, &bad);
	ota_cl_cat(out, cap, "), ", &bad);
	switch (sync_err) {
	case OTA_OK: ota_cl_cat(out, cap, "and the server's key set does not list the key", &bad); break;
	case OTA_ERR_UNTRUSTED_KEY: ota_cl_cat(out, cap, "and the server's key set is signed by none of them", &bad); break;
	case OTA_ERR_HTTP: ota_cl_cat(out, cap, "and the server publishes no key set", &bad); break;
	default:
		ota_cl_cat(out, cap, "and the server's key set was refused: ", &bad);
		ota_cl_cat(out, cap, ota_err_code(sync_err), &bad);
	}
}
