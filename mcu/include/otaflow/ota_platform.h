/*
 * The platform a device client runs on: HTTP, persistent storage, the
 * installer (a flash slot), a clock, random bytes, a log and a reboot.
 *
 * A port fills an ota_platform with its functions and a context pointer
 * passed back to each of them; the library keeps no globals. Every function
 * returns OTA_OK or a negative ota_err unless it says otherwise.
 *
 * The port must also define ota_crypto_random (ota_crypto.h), usually with
 * the same source as `random` below.
 */
#ifndef OTAFLOW_OTA_PLATFORM_H
#define OTAFLOW_OTA_PLATFORM_H

#include "ota.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_ETAG_MAX 128

/* An HTTP request. The client follows redirects itself, so the port never
 * does. Header values are NULL when absent. The port reads the request
 * only until the first byte of the answer: the client reuses its buffers
 * for the answer. */
typedef struct {
	const char *method;        /* "GET", "POST" */
	const char *url;           /* absolute http:// or https:// URL */
	const char *authorization; /* whole value, "Bearer <token>" */
	const char *range;         /* "bytes=<n>-" */
	const char *if_range;      /* an entity tag, quotes included */
	const char *content_type;  /* with a body */
	const uint8_t *body;       /* read only until the first response byte */
	size_t body_len;
} ota_http_request;

/* What the port reports of the answer, filled before any body byte is
 * delivered. */
typedef struct {
	int status;
	int64_t content_length; /* -1: not sent (chunked or until close) */
	/* Content-Range "bytes first-last/total"; -1 when absent (total -1
	 * also when it is "*"). */
	int64_t range_first, range_last, range_total;
	char etag[OTA_ETAG_MAX + 1]; /* "" when absent or longer */
	uint32_t retry_after;        /* seconds; 0 when absent or a date */
	/* Location of a 3xx, written by the port into the caller's buffer
	 * ("" when absent; OTA_ERR_BUFFER when it does not fit). */
	char *location;
	size_t location_cap;
} ota_http_response;

/* Receives the body in pieces (after the transfer coding is removed). A
 * non-zero return stops the transfer; the port closes the connection and
 * returns that value. */
typedef int (*ota_http_body_fn)(void *arg, const ota_http_response *resp, const uint8_t *p, size_t n);

typedef enum { OTA_LOG_DEBUG = 0, OTA_LOG_INFO = 1, OTA_LOG_WARN = 2, OTA_LOG_ERROR = 3 } ota_log_level;

typedef struct {
	void *ctx;

	/* http sends req and delivers the body of the answer, whatever its
	 * status, to on_body. OTA_OK once the whole answer was read;
	 * OTA_ERR_IO on a connection, timeout or TLS failure or a body that
	 * ended early; or on_body's value. */
	int (*http)(void *ctx, const ota_http_request *req, ota_http_response *resp, ota_http_body_fn on_body,
	            void *arg);

	/* Named records ([a-z0-9_-], at most 32 characters) of at most a few
	 * KiB (the client's: ota_client.h). get of a record never stored
	 * gives *len = 0; one longer than cap is an error. put replaces the
	 * record atomically (after a power cut get returns the old or the new
	 * bytes, never a mix); put of 0 bytes deletes it. */
	int (*store_get)(void *ctx, const char *name, uint8_t *buf, size_t cap, size_t *len);
	int (*store_put)(void *ctx, const char *name, const uint8_t *p, size_t n);

	/* The installer: a staging slot for an image of `size` bytes. open
	 * with resume 1 keeps what earlier writes left; 0 starts empty. write
	 * returns once the bytes are durable. read returns bytes written
	 * before (a resumed download re-hashes them). finish marks the
	 * complete, verified image to boot next, as `version`; abort discards
	 * the slot. */
	int (*install_open)(void *ctx, uint64_t size, int resume);
	int (*install_write)(void *ctx, uint64_t off, const uint8_t *p, size_t n);
	int (*install_read)(void *ctx, uint64_t off, uint8_t *p, size_t n);
	int (*install_finish)(void *ctx, const char *version);
	void (*install_abort)(void *ctx);

	/* Unix seconds, or OTA_NO_CLOCK (ota_assignment.h) without a clock:
	 * assignments are then bound by the nonce alone. */
	int64_t (*now)(void *ctx);
	/* Random bytes from a TRNG (nonces, report IDs). */
	int (*random)(void *ctx, uint8_t *p, size_t n);
	/* One event per call: "event=<name> key=value ...", no newline. */
	void (*log)(void *ctx, int level, const char *line);
	/* Boot the installed image. May return (the port cannot reboot now):
	 * the caller reboots later. NULL: the caller reboots. */
	void (*reboot)(void *ctx);
} ota_platform;

#ifdef __cplusplus
}
#endif
#endif
