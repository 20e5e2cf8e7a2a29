/*
 * libFuzzer target: the JSON reader and writer (src/json.c).
 *
 * The input is one document. It is parsed with a small token array and a
 * small depth; every token then goes through every accessor, whose results
 * are checked against each other, and every string is written back with
 * the writer and read again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ota_json.h"

#define NTOKS 64
#define DEPTH 6
#define STR_MAX 4096



static const char *const known[] = {"action", "rollout", "assignment", "payload", "signature", "keyID", "a", "b"};

static int has_nul_escape(const char *p, size_t n)
{
	size_t i;
	for (i = 0; i + 6 <= n; i++)
		if (memcmp(p + i, "\\u0000", 6) == 0)
			return 1;
	return 0;
}

/* {s: s, "n": n, "b": n odd} */
static void write_doc(ota_jw *w, const char *s, size_t n)
{
	ota_jw_obj_open(w);
	ota_jw_key(w, s);
	ota_jw_str(w, s);
	ota_jw_key(w, "n");
	ota_jw_u64(w, n);
	ota_jw_key(w, "b");
	ota_jw_bool(w, n & 1);
	ota_jw_obj_close(w);
}

/* Every string writes to JSON and reads back unchanged. */
static void writer_roundtrip(const char *s, size_t n)
{
	static char out[6 * STR_MAX + 32], back[STR_MAX + 1];
	ota_json_tok t[7];
	ota_jw w;
	size_t bn;
	int r, v;
	ota_jw_init(&w, out, sizeof out);
	write_doc(&w, s, n);
	REQUIRE(ota_jw_end(&w) == OTA_OK);
	REQUIRE(strlen(out) == w.len);
	r = ota_json_parse(out, w.len, t, 7, 1);
	REQUIRE(r == 7);
	REQUIRE(ota_json_key_eq(out, &t[1], s));
	REQUIRE(ota_json_str(out, &t[2], back, sizeof back, &bn) == OTA_OK);
	REQUIRE(bn == n && memcmp(back, s, n) == 0);
	v = ota_json_get(out, t, r, 0, "n");
	/* The key s may itself be "n" or "b": get returns the first match. */
	if (strcmp(s, "n") != 0 && strcmp(s, "b") != 0) {
		uint64_t x;
		int b;
		REQUIRE(v == 4 && ota_json_u64(out, &t[v], &x) == OTA_OK && x == n);
		v = ota_json_get(out, t, r, 0, "b");
		REQUIRE(v == 6 && ota_json_bool(&t[v], &b) == OTA_OK && b == (int)(n & 1));
	}

	/* A short buffer reports overflow and stays a C string. */
	ota_jw_init(&w, out, w.len);
	write_doc(&w, s, n);
	REQUIRE(ota_jw_end(&w) == OTA_ERR_BUFFER && w.len < w.cap && out[w.len] == '\0');
}

static void check_token(const char *js, size_t len, const ota_json_tok *toks, int n, int i)
{
	static char s[STR_MAX + 1];
	const ota_json_tok *t = &toks[i];
	size_t sl = 0;
	uint64_t u;
	int b, r;

	REQUIRE(t->type >= OTA_JSON_OBJECT && t->type <= OTA_JSON_NULL);
	REQUIRE(t->start <= t->end && t->end <= len);
	REQUIRE(t->next > (uint32_t)i && t->next <= (uint32_t)n);

	r = ota_json_str(js, t, s, sizeof s, &sl);
	if (t->type != OTA_JSON_STRING) {
		REQUIRE(r == OTA_ERR_MALFORMED);
	} else if (r == OTA_OK) {
		REQUIRE(strlen(s) == sl && sl <= t->end - t->start);
		REQUIRE(ota_json_key_eq(js, t, s));
		writer_roundtrip(s, sl);
		/* One byte short of room is refused. */
		REQUIRE(ota_json_str(js, t, s, sl, NULL) == OTA_ERR_BUFFER);
	} else {
		/* Only \u0000 (a valid string that is no C string) fails. */
		REQUIRE(r == OTA_ERR_MALFORMED);
		REQUIRE(has_nul_escape(js + t->start, t->end - t->start));
	}

	r = ota_json_u64(js, t, &u);
	if (r == OTA_OK) {
		char d[24];
		ota_jw w;
		REQUIRE(t->type == OTA_JSON_NUMBER);
		/* The accepted text is the canonical decimal of the value. */
		ota_jw_init(&w, d, sizeof d);
		ota_jw_u64(&w, u);
		REQUIRE(ota_jw_end(&w) == OTA_OK && w.len == t->end - t->start && memcmp(d, js + t->start, w.len) == 0);
	}
	r = ota_json_bool(t, &b);
	REQUIRE((r == OTA_OK) == (t->type == OTA_JSON_TRUE || t->type == OTA_JSON_FALSE));

	if (t->type == OTA_JSON_OBJECT || t->type == OTA_JSON_ARRAY) {
		/* Children tile the subtree exactly. */
		uint32_t c, k = (uint32_t)i + 1, per = t->type == OTA_JSON_OBJECT ? 2 : 1;
		for (c = 0; c < t->size * per; c++) {
			REQUIRE(k < t->next);
			if (per == 2 && c % 2 == 0)
				REQUIRE(toks[k].type == OTA_JSON_STRING && toks[k].next == k + 1);
			REQUIRE(toks[k].start >= t->start && toks[k].end <= t->end);
			k = toks[k].next;
		}
		REQUIRE(k == t->next);
	}
	if (t->type == OTA_JSON_OBJECT) {
		uint32_t seen;
		uint32_t c, k = (uint32_t)i + 1;
		int dup = 0, null = 0, unknown = 0;
		for (c = 0; c < t->size; c++, k = toks[k + 1].next) {
			int v, j;
			if (toks[k + 1].type == OTA_JSON_NULL)
				null = 1;
			for (j = 0; j < (int)(sizeof known / sizeof known[0]); j++)
				if (ota_json_key_eq(js, &toks[k], known[j]))
					break;
			if (j == (int)(sizeof known / sizeof known[0]))
				unknown = 1;
			if (ota_json_str(js, &toks[k], s, sizeof s, NULL) != OTA_OK)
				continue;
			/* get finds this key at this member or an earlier one. */
			v = ota_json_get(js, toks, n, i, s);
			REQUIRE(v > i && (uint32_t)v <= k + 1 && ota_json_key_eq(js, &toks[v - 1], s));
			if ((uint32_t)v != k + 1)
				dup = 1;
		}
		/* Decoded keys are valid UTF-8: this one is never found. */
		REQUIRE(ota_json_get(js, toks, n, i, "\xff") == -1);
		r = ota_json_check_keys(js, toks, n, i, known, sizeof known / sizeof known[0], &seen);
		if (dup || null || unknown)
			REQUIRE(r == OTA_ERR_MALFORMED);
		if (r == OTA_OK)
			REQUIRE((uint32_t)__builtin_popcount(seen) == t->size);
	} else {
		REQUIRE(ota_json_check_keys(js, toks, n, i, known, 2, NULL) == OTA_ERR_MALFORMED);
		REQUIRE(ota_json_get(js, toks, n, i, "a") == -1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ota_json_tok toks[NTOKS], again[NTOKS + 1];
	const char *js = (const char *)data;
	int n, i, r;

	n = ota_json_parse(js, size, toks, NTOKS, DEPTH);
	if (n < 0) {
		REQUIRE(n >= OTA_JSON_ERR_SIZE && n <= OTA_JSON_ERR_SYNTAX);
		/* A syntax error stays one with looser limits. */
		if (n == OTA_JSON_ERR_SYNTAX)
			REQUIRE(ota_json_parse(js, size, again, NTOKS + 1, DEPTH + 1) < 0);
		return 0;
	}
	REQUIRE(n >= 1 && toks[0].next == (uint32_t)n);
	/* Exactly n tokens are needed, and more room changes nothing. */
	REQUIRE(ota_json_parse(js, size, again, (size_t)n, DEPTH) == n);
	REQUIRE(memcmp(again, toks, (size_t)n * sizeof toks[0]) == 0);
	r = ota_json_parse(js, size, again, (size_t)n - 1, DEPTH);
	REQUIRE(r == OTA_JSON_ERR_TOKENS);
	for (i = 0; i < n; i++)
		check_token(js, size, toks, n, i);
	return 0;
}
