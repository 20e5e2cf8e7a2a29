/*
 * A bounded, non-allocating JSON reader (RFC 8259) for protocol bodies.
 *
 * ota_json_parse tokenizes a whole document into a caller-provided token
 * array, in document order (an object's key and value tokens follow it).
 * It is strict: exactly one value with only whitespace around it; strings
 * valid UTF-8 without raw control characters and with valid escapes
 * (surrogate pairs matched); numbers in RFC 8259 grammar; nesting at most
 * max_depth. Nothing is copied: tokens point into the input.
 */
#ifndef OTAFLOW_OTA_JSON_H
#define OTAFLOW_OTA_JSON_H

#include "ota.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
	OTA_JSON_OBJECT = 1,
	OTA_JSON_ARRAY,
	OTA_JSON_STRING,
	OTA_JSON_NUMBER,
	OTA_JSON_TRUE,
	OTA_JSON_FALSE,
	OTA_JSON_NULL
} ota_json_type;

typedef struct {
	uint8_t type;
	uint32_t start, end; /* input offsets; a string's are inside its quotes */
	uint32_t size;       /* object: members; array: elements */
	uint32_t next;       /* index of the first token after this subtree */
} ota_json_tok;

/* Errors of ota_json_parse (negative). */
enum {
	OTA_JSON_ERR_SYNTAX = -100, /* not JSON, or more than one value */
	OTA_JSON_ERR_TOKENS = -101, /* more tokens than the array holds */
	OTA_JSON_ERR_DEPTH = -102,  /* nested deeper than max_depth */
	OTA_JSON_ERR_SIZE = -103    /* input longer than 2^31 bytes */
};

/* ota_json_parse returns the number of tokens (token 0 is the root) or a
 * negative OTA_JSON_ERR_*. */
int ota_json_parse(const char *js, size_t len, ota_json_tok *toks, size_t ntoks, unsigned max_depth);

/* ota_json_key_eq: 1 when string token t (a key) unescapes to the
 * NUL-terminated lit. */
int ota_json_key_eq(const char *js, const ota_json_tok *t, const char *lit);

/* ota_json_get returns the index of the value of key in object token obj,
 * or -1. With duplicate keys it returns the first (use
 * ota_json_check_keys to refuse duplicates). */
int ota_json_get(const char *js, const ota_json_tok *toks, int ntoks, int obj, const char *key);

/* ota_json_check_keys: every key of object obj is one of known[0..n) (n ≤
 * 32), none twice, and no value is null. *seen gets bit i set for known[i]
 * present. OTA_OK or OTA_ERR_MALFORMED. */
int ota_json_check_keys(const char *js, const ota_json_tok *toks, int ntoks, int obj, const char *const *known,
                        unsigned n, uint32_t *seen);

/* ota_json_str unescapes string token t into out (NUL-terminated; cap
 * includes the NUL). OTA_ERR_MALFORMED when t is not a string or decodes to
 * a NUL byte, OTA_ERR_BUFFER when out is short. *n (may be NULL) gets the
 * length. */
int ota_json_str(const char *js, const ota_json_tok *t, char *out, size_t cap, size_t *n);

/* ota_json_u64: a non-negative integer without fraction or exponent that
 * fits 64 bits, else OTA_ERR_MALFORMED. */
int ota_json_u64(const char *js, const ota_json_tok *t, uint64_t *v);

/* ota_json_bool: true or false, else OTA_ERR_MALFORMED. */
int ota_json_bool(const ota_json_tok *t, int *v);

/* Writing bodies: ota_jw appends to a fixed buffer and remembers overflow,
 * reported once by ota_jw_end. */
typedef struct {
	char *buf;
	size_t cap, len;
	int overflow;
	int need_comma;
} ota_jw;

void ota_jw_init(ota_jw *w, char *buf, size_t cap);
void ota_jw_obj_open(ota_jw *w);
void ota_jw_obj_close(ota_jw *w);
void ota_jw_key(ota_jw *w, const char *key); /* then exactly one value */
void ota_jw_str(ota_jw *w, const char *s);    /* escapes as needed */
void ota_jw_u64(ota_jw *w, uint64_t v);
void ota_jw_bool(ota_jw *w, int v);
/* ota_jw_end NUL-terminates: OTA_OK or OTA_ERR_BUFFER. */
int ota_jw_end(ota_jw *w);

#ifdef __cplusplus
}
#endif
#endif
