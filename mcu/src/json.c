/*
 * A bounded JSON reader and writer (RFC 8259) for protocol bodies.
 *
 * The reader is iterative: while a container is open its token's `next`
 * field holds the index of its parent, so nesting costs no C stack and no
 * extra memory; closing the container stores the real `next`.
 */
#include <string.h>

#include "ota_json.h"

#define NO_PARENT 0xffffffffu
#define MAX_INPUT ((size_t)1 << 31)

/* Parser states: what may come next. */
enum { ST_VALUE, ST_KEY, ST_COLON, ST_AFTER };

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits at p (the caller checked that they are in bounds). */
static long hex4(const char *p)
{
	long v = 0;
	int i, h;
	for (i = 0; i < 4; i++) {
		if ((h = hex_val(p[i])) < 0)
			return -1;
		v = v << 4 | h;
	}
	return v;
}

/* Length of the well-formed UTF-8 sequence at p (at most `left` bytes),
 * or 0: overlong forms, surrogates and code points above U+10FFFF are
 * refused (RFC 3629 table). */
static size_t utf8_len(const unsigned char *p, size_t left)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t n, i;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (left < n || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/*
 * str_next decodes one character of a string body [*pos, end): its UTF-8
 * bytes go to out (1..4), and the count is returned; 0 at the end, -1 when
 * malformed. Shared by the parser (validation) and the accessors.
 */
static int str_next(const char *js, size_t *pos, size_t end, unsigned char out[4])
{
	size_t i = *pos, n;
	long cp, lo;
	unsigned char c;
	if (i >= end)
		return 0;
	c = (unsigned char)js[i];
	if (c < 0x20 || c == '"')
		return -1;
	if (c != '\\') {
		if ((n = utf8_len((const unsigned char *)js + i, end - i)) == 0)
			return -1;
		memcpy(out, js + i, n);
		*pos = i + n;
		return (int)n;
	}
	if (++i >= end)
		return -1;
	switch (js[i]) {
	case '"': c = '"'; break;
	case '\\': c = '\\'; break;
	case '/': c = '/'; break;
	case 'b': c = '\b'; break;
	case 'f': c = '\f'; break;
	case 'n': c = '\n'; break;
	case 'r': c = '\r'; break;
	case 't': c = '\t'; break;
	case 'u': c = 0; break;
	default: return -1;
	}
	if (js[i] != 'u') {
		out[0] = c;
		*pos = i + 1;
		return 1;
	}
	if (end - i < 5 || (cp = hex4(js + i + 1)) < 0)
		return -1;
	i += 5;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return -1; /* a low surrogate without its high half */
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (end - i < 6 || js[i] != '\\' || js[i + 1] != 'u' || (lo = hex4(js + i + 2)) < 0 || lo < 0xdc00 ||
		    lo > 0xdfff)
			return -1;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		i += 6;
	}
	*pos = i;
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Scans a string starting after its opening quote (i ≥ 1); returns the
 * offset of the closing quote, or 0 when malformed. */
static size_t scan_string(const char *js, size_t len, size_t i)
{
	unsigned char u[4];
	for (;;) {
		if (i >= len)
			return 0;
		if (js[i] == '"')
			return i;
		/* The string's end is unknown yet: decode against the input end. */
		if (str_next(js, &i, len, u) <= 0)
			return 0;
	}
}

/* Scans a number (RFC 8259 §6) starting at i; returns its end, or 0 when
 * malformed (a number is never empty). */
static size_t scan_number(const char *js, size_t len, size_t i)
{
	if (i < len && js[i] == '-')
		i++;
	if (i >= len)
		return 0;
	if (js[i] == '0') {
		i++;
	} else if (js[i] >= '1' && js[i] <= '9') {
		while (i < len && js[i] >= '0' && js[i] <= '9')
			i++;
	} else {
		return 0;
	}
	if (i < len && js[i] == '.') {
		size_t d = ++i;
		while (i < len && js[i] >= '0' && js[i] <= '9')
			i++;
		if (i == d)
			return 0;
	}
	if (i < len && (js[i] == 'e' || js[i] == 'E')) {
		size_t d;
		i++;
		if (i < len && (js[i] == '+' || js[i] == '-'))
			i++;
		d = i;
		while (i < len && js[i] >= '0' && js[i] <= '9')
			i++;
		if (i == d)
			return 0;
	}
	return i;
}

int ota_json_parse(const char *js, size_t len, ota_json_tok *toks, size_t ntoks, unsigned max_depth)
{
	size_t i = 0, n = 0;
	uint32_t cur = NO_PARENT; /* innermost open container */
	unsigned depth = 0;
	int state = ST_VALUE, empty = 0, done = 0;

	if (len > MAX_INPUT)
		return OTA_JSON_ERR_SIZE;
	if (!js && len)
		return OTA_JSON_ERR_SYNTAX;
	if (!toks)
		ntoks = 0;
	for (;;) {
		char c;
		while (i < len && is_ws(js[i]))
			i++;
		if (i >= len)
			break;
		c = js[i];
		if (done)
			return OTA_JSON_ERR_SYNTAX; /* a second value */
		switch (state) {
		case ST_VALUE:
		case ST_KEY:
			if ((c == ']' || c == '}') && empty)
				goto close;
			if (state == ST_KEY && c != '"')
				return OTA_JSON_ERR_SYNTAX;
			{
				ota_json_tok *t;
				size_t e;
				uint8_t type;
				if (n >= ntoks)
					return OTA_JSON_ERR_TOKENS;
				t = &toks[n];
				if (c == '{' || c == '[') {
					if (depth >= max_depth)
						return OTA_JSON_ERR_DEPTH;
					type = c == '{' ? OTA_JSON_OBJECT : OTA_JSON_ARRAY;
					e = i + 1;
				} else if (c == '"') {
					type = OTA_JSON_STRING;
					if ((e = scan_string(js, len, i + 1)) == 0)
						return OTA_JSON_ERR_SYNTAX;
				} else if (c == '-' || (c >= '0' && c <= '9')) {
					type = OTA_JSON_NUMBER;
					if ((e = scan_number(js, len, i)) == 0)
						return OTA_JSON_ERR_SYNTAX;
				} else if (len - i >= 4 && memcmp(js + i, "true", 4) == 0) {
					type = OTA_JSON_TRUE;
					e = i + 4;
				} else if (len - i >= 5 && memcmp(js + i, "false", 5) == 0) {
					type = OTA_JSON_FALSE;
					e = i + 5;
				} else if (len - i >= 4 && memcmp(js + i, "null", 4) == 0) {
					type = OTA_JSON_NULL;
					e = i + 4;
				} else {
					return OTA_JSON_ERR_SYNTAX;
				}
				t->type = type;
				t->start = (uint32_t)(type == OTA_JSON_STRING ? i + 1 : i);
				t->end = (uint32_t)e;
				t->size = 0;
				t->next = (uint32_t)n + 1;
				if (cur != NO_PARENT && (state == ST_KEY || toks[cur].type == OTA_JSON_ARRAY))
					toks[cur].size++;
				i = type == OTA_JSON_STRING ? e + 1 : e;
				empty = 0;
				if (type == OTA_JSON_OBJECT || type == OTA_JSON_ARRAY) {
					t->end = 0;
					t->next = cur; /* the parent, while open */
					cur = (uint32_t)n;
					depth++;
					empty = 1;
					state = type == OTA_JSON_OBJECT ? ST_KEY : ST_VALUE;
				} else if (state == ST_KEY) {
					state = ST_COLON;
				} else {
					state = ST_AFTER;
					done = cur == NO_PARENT;
				}
				n++;
			}
			break;
		case ST_COLON:
			if (c != ':')
				return OTA_JSON_ERR_SYNTAX;
			i++;
			state = ST_VALUE;
			break;
		case ST_AFTER:
			/* A value inside container cur is complete. */
			if (c == ',') {
				i++;
				state = toks[cur].type == OTA_JSON_OBJECT ? ST_KEY : ST_VALUE;
				break;
			}
		close:
			if ((c == '}' && toks[cur].type != OTA_JSON_OBJECT) || (c == ']' && toks[cur].type != OTA_JSON_ARRAY) ||
			    (c != '}' && c != ']'))
				return OTA_JSON_ERR_SYNTAX;
			{
				uint32_t parent = toks[cur].next;
				toks[cur].end = (uint32_t)i + 1;
				toks[cur].next = (uint32_t)n;
				cur = parent;
			}
			i++;
			depth--;
			empty = 0;
			state = ST_AFTER;
			done = cur == NO_PARENT;
			break;
		}
	}
	if (!done)
		return OTA_JSON_ERR_SYNTAX; /* empty, or an unfinished value */
	return (int)n;
}

int ota_json_key_eq(const char *js, const ota_json_tok *t, const char *lit)
{
	size_t pos, k = 0;
	unsigned char u[4];
	int r, j;
	if (!js || !t || !lit || t->type != OTA_JSON_STRING || t->start > t->end)
		return 0;
	pos = t->start;
	while ((r = str_next(js, &pos, t->end, u)) > 0) {
		for (j = 0; j < r; j++, k++)
			if (u[j] == 0 || (unsigned char)lit[k] != u[j])
				return 0; /* lit ended (its NUL) or differs */
	}
	return r == 0 && lit[k] == '\0';
}

/* The members of object obj: key at *k, value at *k + 1. */
static int member_ok(const ota_json_tok *toks, int ntoks, int k)
{
	return k >= 0 && k + 1 < ntoks && toks[k].type == OTA_JSON_STRING;
}

static int is_object(const ota_json_tok *toks, int ntoks, int obj)
{
	return toks && obj >= 0 && obj < ntoks && toks[obj].type == OTA_JSON_OBJECT;
}

int ota_json_get(const char *js, const ota_json_tok *toks, int ntoks, int obj, const char *key)
{
	uint32_t m;
	int k;
	if (!is_object(toks, ntoks, obj))
		return -1;
	k = obj + 1;
	for (m = 0; m < toks[obj].size; m++) {
		if (!member_ok(toks, ntoks, k))
			return -1;
		if (ota_json_key_eq(js, &toks[k], key))
			return k + 1;
		if (toks[k + 1].next <= (uint32_t)k + 1)
			return -1; /* not a parsed token array */
		k = (int)toks[k + 1].next;
	}
	return -1;
}

int ota_json_check_keys(const char *js, const ota_json_tok *toks, int ntoks, int obj, const char *const *known,
                        unsigned n, uint32_t *seen)
{
	uint32_t m, got = 0;
	unsigned j;
	int k;
	if (seen)
		*seen = 0;
	if (!is_object(toks, ntoks, obj) || n > 32 || (n && !known))
		return OTA_ERR_MALFORMED;
	k = obj + 1;
	for (m = 0; m < toks[obj].size; m++) {
		if (!member_ok(toks, ntoks, k) || toks[k + 1].type == OTA_JSON_NULL)
			return OTA_ERR_MALFORMED;
		for (j = 0; j < n; j++)
			if (ota_json_key_eq(js, &toks[k], known[j]))
				break;
		if (j == n || (got >> j & 1))
			return OTA_ERR_MALFORMED; /* unknown or duplicated */
		got |= (uint32_t)1 << j;
		if (toks[k + 1].next <= (uint32_t)k + 1)
			return OTA_ERR_MALFORMED;
		k = (int)toks[k + 1].next;
	}
	if (seen)
		*seen = got;
	return OTA_OK;
}

int ota_json_str(const char *js, const ota_json_tok *t, char *out, size_t cap, size_t *n)
{
	size_t pos, k = 0;
	unsigned char u[4];
	int r;
	if (n)
		*n = 0;
	if (out && cap)
		out[0] = '\0';
	if (!js || !t || t->type != OTA_JSON_STRING || t->start > t->end)
		return OTA_ERR_MALFORMED;
	if (!out || !cap)
		return OTA_ERR_BUFFER;
	pos = t->start;
	while ((r = str_next(js, &pos, t->end, u)) > 0) {
		if (u[0] == 0)
			break; /* \u0000 cannot be in a C string */
		if (cap - 1 - k < (size_t)r) {
			out[0] = '\0';
			return OTA_ERR_BUFFER;
		}
		memcpy(out + k, u, (size_t)r);
		k += (size_t)r;
	}
	if (r != 0) {
		out[0] = '\0';
		return OTA_ERR_MALFORMED;
	}
	out[k] = '\0';
	if (n)
		*n = k;
	return OTA_OK;
}

int ota_json_u64(const char *js, const ota_json_tok *t, uint64_t *v)
{
	uint64_t x = 0;
	uint32_t i;
	if (!js || !t || !v || t->type != OTA_JSON_NUMBER || t->start >= t->end)
		return OTA_ERR_MALFORMED;
	if (js[t->start] == '0' && t->end - t->start > 1)
		return OTA_ERR_MALFORMED; /* 0.5, 0e1 */
	for (i = t->start; i < t->end; i++) {
		unsigned d = (unsigned)(js[i] - '0');
		if (d > 9)
			return OTA_ERR_MALFORMED; /* '-', '.', 'e' */
		if (x > (UINT64_MAX - d) / 10)
			return OTA_ERR_MALFORMED;
		x = x * 10 + d;
	}
	*v = x;
	return OTA_OK;
}

int ota_json_bool(const ota_json_tok *t, int *v)
{
	if (!t || !v || (t->type != OTA_JSON_TRUE && t->type != OTA_JSON_FALSE))
		return OTA_ERR_MALFORMED;
	*v = t->type == OTA_JSON_TRUE;
	return OTA_OK;
}

/* --- writer ------------------------------------------------------------ */

void ota_jw_init(ota_jw *w, char *buf, size_t cap)
{
	w->buf = buf;
	w->cap = buf ? cap : 0;
	w->len = 0;
	w->overflow = w->cap == 0;
	w->need_comma = 0;
	if (w->cap)
		buf[0] = '\0';
}

/* Appends n bytes, keeping one byte for the terminating NUL. */
static void put(ota_jw *w, const char *s, size_t n)
{
	if (w->overflow)
		return;
	if (w->cap - 1 - w->len < n) {
		w->overflow = 1;
		return;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

static void comma(ota_jw *w)
{
	if (w->need_comma)
		put(w, ",", 1);
	w->need_comma = 0;
}

void ota_jw_obj_open(ota_jw *w)
{
	comma(w);
	put(w, "{", 1);
}

void ota_jw_obj_close(ota_jw *w)
{
	put(w, "}", 1);
	w->need_comma = 1;
}

static void quoted(ota_jw *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const char *run = s;
	put(w, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[6] = {'\\', 0, '0', '0', 0, 0};
		size_t el = 2;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue; /* UTF-8 and printable ASCII pass through */
		put(w, run, (size_t)(s - run));
		run = s + 1;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			esc[1] = 'u';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			el = 6;
		}
		put(w, esc, el);
	}
	put(w, run, (size_t)(s - run));
	put(w, "\"", 1);
}

void ota_jw_key(ota_jw *w, const char *key)
{
	comma(w);
	quoted(w, key ? key : "");
	put(w, ":", 1);
}

void ota_jw_str(ota_jw *w, const char *s)
{
	comma(w);
	quoted(w, s ? s : "");
	w->need_comma = 1;
}

void ota_jw_u64(ota_jw *w, uint64_t v)
{
	char d[20];
	size_t k = sizeof d;
	comma(w);
	do {
		d[--k] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(w, d + k, sizeof d - k);
	w->need_comma = 1;
}

void ota_jw_bool(ota_jw *w, int v)
{
	comma(w);
	if (v)
		put(w, "true", 4);
	else
		put(w, "false", 5);
	w->need_comma = 1;
}

int ota_jw_end(ota_jw *w)
{
	if (w->cap == 0)
		return OTA_ERR_BUFFER;
	w->buf[w->len] = '\0';
	return w->overflow ? OTA_ERR_BUFFER : OTA_OK;
}
