/* Table tests of the bounded JSON reader and the writer (src/json.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_json.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                                             \
	do {                                                                                                         \
		checks++;                                                                                            \
		if (!(cond)) {                                                                                       \
			failures++;                                                                                  \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                  \
			printf(__VA_ARGS__);                                                                         \
			printf("\n");                                                                                \
		}                                                                                                    \
	} while (0)

/* --- ota_json_parse: accepted and refused documents -------------------- */

#define S(lit) lit, sizeof(lit) - 1 /* a literal with its length (NULs included) */

struct parse_case {
	const char *name;
	const char *doc;
	size_t len;
	size_t ntoks;
	unsigned depth;
	int want; /* token count, or an OTA_JSON_ERR_* */
};

enum { SYN = OTA_JSON_ERR_SYNTAX, TOK = OTA_JSON_ERR_TOKENS, DEP = OTA_JSON_ERR_DEPTH };

static const struct parse_case parse_cases[] = {
	/* Scalars at the root. */
	{"zero", S("0"), 8, 4, 1},
	{"minus zero", S("-0"), 8, 4, 1},
	{"fraction", S("1.0"), 8, 4, 1},
	{"exponent", S("1e3"), 8, 4, 1},
	{"exponent signs", S("-1.5E+10"), 8, 4, 1},
	{"negative exponent", S("2.5e-3"), 8, 4, 1},
	{"big integer", S("123456789012345678901234567890"), 8, 4, 1},
	{"string", S("\"abc\""), 8, 4, 1},
	{"empty string", S("\"\""), 8, 4, 1},
	{"true", S("true"), 8, 4, 1},
	{"false", S("false"), 8, 4, 1},
	{"null", S("null"), 8, 4, 1},
	{"whitespace around", S(" \t\r\n{} \n"), 8, 4, 1},
	/* Containers. */
	{"empty array", S("[]"), 8, 4, 1},
	{"empty object", S("{}"), 8, 4, 1},
	{"object", S("{\"a\":1}"), 8, 4, 3},
	{"spaced object", S("{ \"a\" : 1 , \"b\" : [ ] }"), 8, 4, 5},
	{"nested arrays", S("[1,[2,[3]]]"), 8, 4, 6},
	{"mixed", S("{\"a\":{\"b\":[true,false,null]}}"), 8, 4, 8},
	{"array of objects", S("[{},{\"k\":\"v\"},[]]"), 8, 4, 6},
	/* Escapes and UTF-8 classes inside strings. */
	{"simple escapes", S("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\""), 8, 4, 1},
	{"unicode escapes", S("\"\\u00e9\\u20AC\\ud83d\\ude00\""), 8, 4, 1},
	{"escaped nul parses", S("\"a\\u0000b\""), 8, 4, 1},
	{"utf8 2-3-4 bytes", S("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""), 8, 4, 1},
	{"utf8 max U+10FFFF", S("\"\xf4\x8f\xbf\xbf\""), 8, 4, 1},
	{"utf8 U+D7FF", S("\"\xed\x9f\xbf\""), 8, 4, 1},
	{"utf8 U+E000", S("\"\xee\x80\x80\""), 8, 4, 1},
	{"utf8 U+0800", S("\"\xe0\xa0\x80\""), 8, 4, 1},
	{"utf8 U+10000", S("\"\xf0\x90\x80\x80\""), 8, 4, 1},
	{"DEL is allowed", S("\"\x7f\""), 8, 4, 1},
	/* Grammar refusals. */
	{"empty input", S(""), 8, 4, SYN},
	{"only whitespace", S(" \n\t"), 8, 4, SYN},
	{"unclosed object", S("{"), 8, 4, SYN},
	{"unclosed array", S("[1"), 8, 4, SYN},
	{"trailing comma array", S("[1,]"), 8, 4, SYN},
	{"trailing comma object", S("{\"a\":1,}"), 8, 4, SYN},
	{"leading comma", S("[,1]"), 8, 4, SYN},
	{"key without value", S("{\"a\"}"), 8, 4, SYN},
	{"colon without value", S("{\"a\":}"), 8, 4, SYN},
	{"unquoted key", S("{a:1}"), 8, 4, SYN},
	{"number key", S("{1:2}"), 8, 4, SYN},
	{"missing comma", S("[1 2]"), 8, 4, SYN},
	{"missing member comma", S("{\"a\":1 \"b\":2}"), 8, 4, SYN},
	{"double colon", S("{\"a\"::1}"), 8, 4, SYN},
	{"mismatched close 1", S("[}"), 8, 4, SYN},
	{"mismatched close 2", S("{]"), 8, 4, SYN},
	{"mismatched nested", S("[{]}"), 8, 4, SYN},
	{"stray close", S("]"), 8, 4, SYN},
	{"extra close", S("[]]"), 8, 4, SYN},
	{"two values", S("1 2"), 8, 4, SYN},
	{"two objects", S("{}{}"), 8, 4, SYN},
	{"garbage after", S("{} x"), 8, 4, SYN},
	{"NUL after", S("{}\0"), 8, 4, SYN},
	{"BOM", S("\xef\xbb\xbf{}"), 8, 4, SYN},
	{"comment", S("// c\n{}"), 8, 4, SYN},
	{"form feed is not whitespace", S("\f{}"), 8, 4, SYN},
	{"single quotes", S("'a'"), 8, 4, SYN},
	/* Numbers. */
	{"leading zero", S("01"), 8, 4, SYN},
	{"negative leading zero", S("-01"), 8, 4, SYN},
	{"lone minus", S("-"), 8, 4, SYN},
	{"plus sign", S("+1"), 8, 4, SYN},
	{"leading dot", S(".5"), 8, 4, SYN},
	{"trailing dot", S("1."), 8, 4, SYN},
	{"dot before exponent", S("1.e3"), 8, 4, SYN},
	{"empty exponent", S("1e"), 8, 4, SYN},
	{"signed empty exponent", S("1e+"), 8, 4, SYN},
	{"hex number", S("0x10"), 8, 4, SYN},
	{"double minus", S("--1"), 8, 4, SYN},
	{"NaN", S("NaN"), 8, 4, SYN},
	{"Infinity", S("-Infinity"), 8, 4, SYN},
	{"number then letter", S("[1a]"), 8, 4, SYN},
	/* Literals. */
	{"short literal", S("tru"), 8, 4, SYN},
	{"capital literal", S("True"), 8, 4, SYN},
	{"literal then letter", S("truex"), 8, 4, SYN},
	{"two literals", S("nullnull"), 8, 4, SYN},
	{"short null", S("[nul]"), 8, 4, SYN},
	/* Strings. */
	{"unterminated string", S("\"abc"), 8, 4, SYN},
	{"escaped final quote", S("\"abc\\\""), 8, 4, SYN},
	{"raw control char", S("\"a\x01b\""), 8, 4, SYN},
	{"raw newline", S("\"a\nb\""), 8, 4, SYN},
	{"raw NUL", S("\"a\0b\""), 8, 4, SYN},
	{"unknown escape", S("\"\\x\""), 8, 4, SYN},
	{"escaped single quote", S("\"\\'\""), 8, 4, SYN},
	{"short \\u", S("\"\\u12\""), 8, 4, SYN},
	{"bad hex in \\u", S("\"\\u12G4\""), 8, 4, SYN},
	{"lone high surrogate", S("\"\\ud800\""), 8, 4, SYN},
	{"lone low surrogate", S("\"\\udc00\""), 8, 4, SYN},
	{"high then non-low", S("\"\\ud800\\u0041\""), 8, 4, SYN},
	{"high then high", S("\"\\ud800\\ud800\""), 8, 4, SYN},
	{"high then text", S("\"\\ud83dx\""), 8, 4, SYN},
	{"swapped pair", S("\"\\ude00\\ud83d\""), 8, 4, SYN},
	/* UTF-8 refusals. */
	{"overlong NUL", S("\"\xc0\x80\""), 8, 4, SYN},
	{"overlong 2-byte", S("\"\xc1\xbf\""), 8, 4, SYN},
	{"overlong 3-byte", S("\"\xe0\x80\xaf\""), 8, 4, SYN},
	{"overlong 4-byte", S("\"\xf0\x80\x80\xaf\""), 8, 4, SYN},
	{"utf8 surrogate D800", S("\"\xed\xa0\x80\""), 8, 4, SYN},
	{"utf8 surrogate DFFF", S("\"\xed\xbf\xbf\""), 8, 4, SYN},
	{"above U+10FFFF", S("\"\xf4\x90\x80\x80\""), 8, 4, SYN},
	{"F5 lead", S("\"\xf5\x80\x80\x80\""), 8, 4, SYN},
	{"FF byte", S("\"\xff\""), 8, 4, SYN},
	{"lone continuation", S("\"\x80\""), 8, 4, SYN},
	{"truncated 2-byte", S("\"\xc3\""), 8, 4, SYN},
	{"truncated 3-byte", S("\"\xe2\x82\""), 8, 4, SYN},
	{"truncated at end", S("\"\xe2\x82"), 8, 4, SYN},
	{"bad continuation", S("\"\xc3\x28\""), 8, 4, SYN},
	{"utf8 outside string", S("\xc3\xa9"), 8, 4, SYN},
	/* Token and depth limits. */
	{"tokens exact", S("[1,2,3]"), 4, 4, 4},
	{"tokens short", S("[1,2,3]"), 3, 4, TOK},
	{"tokens short object", S("{\"a\":1}"), 2, 4, TOK},
	{"no tokens", S("1"), 0, 4, TOK},
	{"depth exact", S("[[1]]"), 8, 2, 3},
	{"depth over", S("[[1]]"), 8, 1, DEP},
	{"depth over object", S("{\"a\":{\"b\":{}}}"), 8, 2, DEP},
	{"scalar at depth 0", S("1"), 8, 0, 1},
	{"container at depth 0", S("[]"), 8, 0, DEP},
	{"depth is not width", S("[[],[],[],[]]"), 8, 2, 5},
};

static void test_parse_table(void)
{
	size_t i;
	ota_json_tok toks[8];
	for (i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
		const struct parse_case *c = &parse_cases[i];
		int r = ota_json_parse(c->doc, c->len, toks, c->ntoks, c->depth);
		CHECK(r == c->want, "parse %s: got %d want %d", c->name, r, c->want);
	}
	printf("parse table: %zu documents\n", sizeof parse_cases / sizeof parse_cases[0]);
}

/* Token layout: types, offsets (inside the quotes for strings), sizes and
 * next indices. */
static void test_tokens(void)
{
	static const char doc[] = "{\"a\":[1,2],\"b\":{\"c\":\"d\"},\"e\":true}";
	static const struct {
		int type;
		const char *text;
		unsigned size, next;
	} want[] = {
	    {OTA_JSON_OBJECT, doc, 3, 11},  {OTA_JSON_STRING, "a", 0, 2}, {OTA_JSON_ARRAY, "[1,2]", 2, 5},
	    {OTA_JSON_NUMBER, "1", 0, 4},   {OTA_JSON_NUMBER, "2", 0, 5}, {OTA_JSON_STRING, "b", 0, 6},
	    {OTA_JSON_OBJECT, "{\"c\":\"d\"}", 1, 9}, {OTA_JSON_STRING, "c", 0, 8}, {OTA_JSON_STRING, "d", 0, 9},
	    {OTA_JSON_STRING, "e", 0, 10},  {OTA_JSON_TRUE, "true", 0, 11},
	};
	ota_json_tok t[16];
	int n = ota_json_parse(doc, strlen(doc), t, 16, 4), i;
	CHECK(n == 11, "token count %d", n);
	for (i = 0; i < n && i < 11; i++) {
		size_t l = t[i].end - t[i].start;
		CHECK(t[i].type == want[i].type, "tok %d type %d", i, t[i].type);
		CHECK(l == strlen(want[i].text) && memcmp(doc + t[i].start, want[i].text, l) == 0, "tok %d text %.*s", i,
		      (int)l, doc + t[i].start);
		CHECK(t[i].size == want[i].size, "tok %d size %u", i, (unsigned)t[i].size);
		CHECK(t[i].next == want[i].next, "tok %d next %u", i, (unsigned)t[i].next);
	}
}

/* Deep nesting is bounded by max_depth, not by the C stack. */
static void test_deep(void)
{
	enum { D = 200000 };
	char *doc = malloc(2 * D);
	ota_json_tok *t = malloc((D + 1) * sizeof *t);
	int r;
	if (!doc || !t) {
		CHECK(0, "out of memory");
		free(doc);
		free(t);
		return;
	}
	memset(doc, '[', D);
	memset(doc + D, ']', D);
	r = ota_json_parse(doc, 2 * D, t, D + 1, D);
	CHECK(r == D, "deep parse %d", r);
	CHECK(r == D && t[0].next == D && t[D - 1].next == D && t[D - 2].size == 1, "deep structure");
	r = ota_json_parse(doc, 2 * D, t, D + 1, D - 1);
	CHECK(r == OTA_JSON_ERR_DEPTH, "deep over max %d", r);
	r = ota_json_parse(doc, 2 * D - 1, t, D + 1, D);
	CHECK(r == OTA_JSON_ERR_SYNTAX, "deep unclosed %d", r);
	free(doc);
	free(t);
}

static void test_size_limit(void)
{
	ota_json_tok t[2];
	/* Refused before a byte is read: the buffer is far shorter. */
	if (sizeof(size_t) > 4) {
		int r = ota_json_parse("1", ((size_t)1 << 31) + 1, t, 2, 2);
		CHECK(r == OTA_JSON_ERR_SIZE, "size limit %d", r);
	}
	CHECK(ota_json_parse(NULL, 0, t, 2, 2) == OTA_JSON_ERR_SYNTAX, "NULL empty");
	CHECK(ota_json_parse("1", 1, NULL, 2, 2) == OTA_JSON_ERR_TOKENS, "NULL tokens");
}

/* --- accessors -------------------------------------------------------- */

static int parse(const char *doc, ota_json_tok *t, size_t nt)
{
	return ota_json_parse(doc, strlen(doc), t, nt, 4);
}

static void test_check_keys(void)
{
	static const char *const known[] = {"a", "b", "c"};
	static const struct {
		const char *doc;
		int want;
		uint32_t seen;
	} cases[] = {
	    {"{\"a\":1,\"b\":2}", OTA_OK, 3},
	    {"{\"c\":\"x\"}", OTA_OK, 4},
	    {"{}", OTA_OK, 0},
	    {"{\"a\":{\"x\":null},\"b\":[null]}", OTA_OK, 3}, /* only direct values */
	    {"{\"a\":1,\"a\":2}", OTA_ERR_MALFORMED, 0},
	    {"{\"a\":1,\"\\u0061\":2}", OTA_ERR_MALFORMED, 0}, /* same key, escaped */
	    {"{\"a\":null}", OTA_ERR_MALFORMED, 0},
	    {"{\"x\":1}", OTA_ERR_MALFORMED, 0},
	    {"{\"A\":1}", OTA_ERR_MALFORMED, 0},
	    {"{\"a \":1}", OTA_ERR_MALFORMED, 0},
	    {"{\"a\\u0000\":1}", OTA_ERR_MALFORMED, 0},
	    {"[1]", OTA_ERR_MALFORMED, 0},
	};
	size_t i;
	ota_json_tok t[16];
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint32_t seen = 99;
		int n = parse(cases[i].doc, t, 16), r;
		CHECK(n > 0, "check_keys parse %s", cases[i].doc);
		r = ota_json_check_keys(cases[i].doc, t, n, 0, known, 3, &seen);
		CHECK(r == cases[i].want, "check_keys %s: %d", cases[i].doc, r);
		if (r == OTA_OK)
			CHECK(seen == cases[i].seen, "check_keys %s: seen %u", cases[i].doc, (unsigned)seen);
	}
	{
		static const char *const many[33] = {"a"};
		const char *doc = "{}";
		int n = parse(doc, t, 16);
		CHECK(ota_json_check_keys(doc, t, n, 0, many, 33, NULL) == OTA_ERR_MALFORMED, "33 known keys");
		CHECK(ota_json_check_keys(doc, t, n, 1, known, 3, NULL) == OTA_ERR_MALFORMED, "index out of range");
	}
	{
		/* A nested object checked on its own. */
		const char *doc = "{\"o\":{\"b\":true}}";
		uint32_t seen;
		int n = parse(doc, t, 16);
		CHECK(ota_json_check_keys(doc, t, n, 2, known, 3, &seen) == OTA_OK && seen == 2, "nested check_keys");
	}
}

static void test_get_and_key_eq(void)
{
	const char *doc = "{\"a\":{\"b\":1},\"c\":2,\"c\":3,\"\\u0064\":[4]}";
	ota_json_tok t[16];
	int n = parse(doc, t, 16), v;
	uint64_t x;
	CHECK(n == 12, "get parse %d", n);
	CHECK(ota_json_get(doc, t, n, 0, "a") == 2, "get a");
	v = ota_json_get(doc, t, n, 0, "c");
	CHECK(v == 6 && ota_json_u64(doc, &t[v], &x) == OTA_OK && x == 2, "get returns the first duplicate");
	CHECK(ota_json_get(doc, t, n, 0, "d") == 10, "get escaped key");
	CHECK(ota_json_get(doc, t, n, 0, "b") == -1, "get does not descend");
	CHECK(ota_json_get(doc, t, n, 2, "b") == 4, "get in nested");
	CHECK(ota_json_get(doc, t, n, 4, "b") == -1, "get on a number");
	CHECK(ota_json_get(doc, t, n, -1, "a") == -1, "get negative index");
	CHECK(ota_json_get(doc, t, n, 0, "") == -1, "get empty key");

	doc = "[\"a\\u0062\",\"a\\u0000\",\"\xc3\xa9\",\"\",1]";
	n = parse(doc, t, 16);
	CHECK(n == 6, "key_eq parse");
	CHECK(ota_json_key_eq(doc, &t[1], "ab"), "key_eq escaped");
	CHECK(!ota_json_key_eq(doc, &t[1], "a"), "key_eq prefix");
	CHECK(!ota_json_key_eq(doc, &t[1], "abc"), "key_eq longer");
	CHECK(!ota_json_key_eq(doc, &t[2], "a"), "key_eq with \\u0000");
	CHECK(ota_json_key_eq(doc, &t[3], "\xc3\xa9"), "key_eq utf8");
	CHECK(ota_json_key_eq(doc, &t[4], ""), "key_eq empty");
	CHECK(!ota_json_key_eq(doc, &t[5], "1"), "key_eq on a number");
}

static void test_str(void)
{
	const char *doc = "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\",\"\\u00e9\\u20ac\\ud83d\\ude00\",\"a\\u0000b\",\"abcd\",5,\"\"]";
	static const char want0[] = "\"\\/\b\f\n\r\t";
	static const char want1[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	ota_json_tok t[16];
	char out[32];
	size_t n = 99;
	int cnt = parse(doc, t, 16);
	CHECK(cnt == 7, "str parse %d", cnt);
	CHECK(ota_json_str(doc, &t[1], out, sizeof out, &n) == OTA_OK && n == 8 && strcmp(out, want0) == 0,
	      "str simple escapes");
	CHECK(ota_json_str(doc, &t[2], out, sizeof out, &n) == OTA_OK && n == 9 && strcmp(out, want1) == 0,
	      "str unicode escapes");
	CHECK(ota_json_str(doc, &t[3], out, sizeof out, &n) == OTA_ERR_MALFORMED && out[0] == 0, "str \\u0000");
	CHECK(ota_json_str(doc, &t[4], out, 5, &n) == OTA_OK && n == 4 && strcmp(out, "abcd") == 0, "str exact fit");
	CHECK(ota_json_str(doc, &t[4], out, 4, &n) == OTA_ERR_BUFFER && out[0] == 0, "str one short");
	CHECK(ota_json_str(doc, &t[4], out, 0, NULL) == OTA_ERR_BUFFER, "str no room");
	CHECK(ota_json_str(doc, &t[2], out, 9, NULL) == OTA_ERR_BUFFER, "str multibyte does not split");
	CHECK(ota_json_str(doc, &t[5], out, sizeof out, NULL) == OTA_ERR_MALFORMED, "str on a number");
	CHECK(ota_json_str(doc, &t[0], out, sizeof out, NULL) == OTA_ERR_MALFORMED, "str on an array");
	CHECK(ota_json_str(doc, &t[6], out, 1, &n) == OTA_OK && n == 0 && out[0] == 0, "str empty");
}

static void test_u64_bool(void)
{
	static const struct {
		const char *doc;
		int want;
		uint64_t v;
	} cases[] = {
	    {"0", OTA_OK, 0},
	    {"7", OTA_OK, 7},
	    {"4294967296", OTA_OK, 4294967296u},
	    {"18446744073709551615", OTA_OK, UINT64_MAX},
	    {"18446744073709551616", OTA_ERR_MALFORMED, 0},
	    {"18446744073709551620", OTA_ERR_MALFORMED, 0},
	    {"99999999999999999999", OTA_ERR_MALFORMED, 0},
	    {"184467440737095516150", OTA_ERR_MALFORMED, 0},
	    {"-0", OTA_ERR_MALFORMED, 0},
	    {"-1", OTA_ERR_MALFORMED, 0},
	    {"1.0", OTA_ERR_MALFORMED, 0},
	    {"0.0", OTA_ERR_MALFORMED, 0},
	    {"1e3", OTA_ERR_MALFORMED, 0},
	    {"0e0", OTA_ERR_MALFORMED, 0},
	    {"\"1\"", OTA_ERR_MALFORMED, 0},
	    {"true", OTA_ERR_MALFORMED, 0},
	    {"null", OTA_ERR_MALFORMED, 0},
	};
	size_t i;
	ota_json_tok t[4];
	int b;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t v = 12345;
		int r;
		CHECK(parse(cases[i].doc, t, 4) == 1, "u64 parse %s", cases[i].doc);
		r = ota_json_u64(cases[i].doc, &t[0], &v);
		CHECK(r == cases[i].want, "u64 %s: %d", cases[i].doc, r);
		CHECK(r != OTA_OK || v == cases[i].v, "u64 %s: value", cases[i].doc);
	}
	{
		ota_json_tok u[8];
		parse("[true,false,null,\"true\",1]", u, 8);
		CHECK(ota_json_bool(&u[1], &b) == OTA_OK && b == 1, "bool true");
		CHECK(ota_json_bool(&u[2], &b) == OTA_OK && b == 0, "bool false");
		CHECK(ota_json_bool(&u[3], &b) == OTA_ERR_MALFORMED, "bool null");
		CHECK(ota_json_bool(&u[4], &b) == OTA_ERR_MALFORMED, "bool string");
		CHECK(ota_json_bool(&u[5], &b) == OTA_ERR_MALFORMED, "bool number");
		CHECK(ota_json_bool(NULL, &b) == OTA_ERR_MALFORMED, "bool NULL");
	}
}

/* --- writer ------------------------------------------------------------ */

/* Writes {"s": s} and reads it back. */
static void roundtrip(const char *s, const char *want_json)
{
	char buf[512], back[256];
	ota_jw w;
	ota_json_tok t[4];
	int n, v;
	ota_jw_init(&w, buf, sizeof buf);
	ota_jw_obj_open(&w);
	ota_jw_key(&w, "s");
	ota_jw_str(&w, s);
	ota_jw_obj_close(&w);
	CHECK(ota_jw_end(&w) == OTA_OK, "writer end");
	if (want_json)
		CHECK(strcmp(buf, want_json) == 0, "writer output %s", buf);
	n = ota_json_parse(buf, strlen(buf), t, 4, 1);
	CHECK(n == 3, "writer output parses: %d %s", n, buf);
	v = ota_json_get(buf, t, n, 0, "s");
	CHECK(v == 2 && ota_json_str(buf, &t[v], back, sizeof back, NULL) == OTA_OK && strcmp(back, s) == 0,
	      "round trip of %s", buf);
}

/* write_doc writes the writer test's document (want in test_writer). */
static void write_doc(ota_jw *w)
{
	ota_jw_obj_open(w);
	ota_jw_key(w, "a");
	ota_jw_str(w, "x");
	ota_jw_key(w, "n");
	ota_jw_u64(w, UINT64_MAX);
	ota_jw_key(w, "z");
	ota_jw_u64(w, 0);
	ota_jw_key(w, "t");
	ota_jw_bool(w, 1);
	ota_jw_key(w, "f");
	ota_jw_bool(w, 0);
	ota_jw_key(w, "o");
	ota_jw_obj_open(w);
	ota_jw_key(w, "k");
	ota_jw_str(w, "v");
	ota_jw_obj_close(w);
	ota_jw_key(w, "e");
	ota_jw_obj_open(w);
	ota_jw_obj_close(w);
	ota_jw_obj_close(w);
}

static void test_writer(void)
{
	char buf[128], ctl[32];
	ota_jw w;
	int i;
	size_t full;
	const char *want = "{\"a\":\"x\",\"n\":18446744073709551615,\"z\":0,\"t\":true,\"f\":false,\"o\":{\"k\":\"v\"},"
	                   "\"e\":{}}";

	ota_jw_init(&w, buf, sizeof buf);
	write_doc(&w);
	CHECK(ota_jw_end(&w) == OTA_OK && strcmp(buf, want) == 0, "writer document %s", buf);
	full = strlen(want);

	roundtrip("plain", "{\"s\":\"plain\"}");
	roundtrip("", "{\"s\":\"\"}");
	roundtrip("q\"b\\s/", "{\"s\":\"q\\\"b\\\\s/\"}");
	roundtrip("\b\f\n\r\t", "{\"s\":\"\\b\\f\\n\\r\\t\"}");
	roundtrip("\x01\x1f\x7f", "{\"s\":\"\\u0001\\u001f\x7f\"}");
	roundtrip("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "{\"s\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}");
	for (i = 1; i < 32; i++)
		ctl[i - 1] = (char)i;
	ctl[31] = 0;
	roundtrip(ctl, NULL);

	/* Overflow: remembered, reported once, the buffer still a C string. */
	for (i = 0; i <= 2; i++) {
		size_t cap = full + (size_t)i; /* one short, exact fit (len + NUL), one spare */
		char *small = malloc(cap);
		if (!small)
			continue;
		ota_jw_init(&w, small, cap);
		write_doc(&w);
		if (i == 0)
			CHECK(ota_jw_end(&w) == OTA_ERR_BUFFER && strlen(small) < cap, "writer one byte short");
		else
			CHECK(ota_jw_end(&w) == OTA_OK && strcmp(small, want) == 0, "writer fits with cap %zu", cap);
		free(small);
	}
	ota_jw_init(&w, buf, 0);
	ota_jw_bool(&w, 1);
	CHECK(ota_jw_end(&w) == OTA_ERR_BUFFER, "writer without room");
	ota_jw_init(&w, buf, 1);
	CHECK(ota_jw_end(&w) == OTA_OK && buf[0] == 0, "writer empty document");
	/* An escape never splits: 6 bytes for \u0001 with room for 4. */
	ota_jw_init(&w, buf, 6);
	ota_jw_str(&w, "\x01");
	CHECK(ota_jw_end(&w) == OTA_ERR_BUFFER && strlen(buf) <= 1, "writer escape does not split");
}

int main(void)
{
	test_parse_table();
	test_tokens();
	test_deep();
	test_size_limit();
	test_check_keys();
	test_get_and_key_eq();
	test_str();
	test_u64_bool();
	test_writer();
	printf("test_json: %d checks, %d failures\n", checks, failures);
	return failures ? 1 : 0;
}
