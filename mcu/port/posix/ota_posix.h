/*
 * The POSIX port of ota_platform: HTTP/1.1 over BSD sockets (TLS through
 * mbedTLS for https:// URLs), records as files in a state directory, the
 * installer writing a file, time(), /dev/urandom, logs to stderr, and a
 * reboot that re-executes the program.
 */
#ifndef OTAFLOW_OTA_POSIX_H
#define OTAFLOW_OTA_POSIX_H

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "ota_platform.h"

#define OTA_POSIX_MAX_CONNECT_TO 8

typedef struct {
	/* Set by the caller. */
	const char *state_dir;
	const char *install_to; /* the image file; staged as <install_to>.part */
	const char *ca_file;    /* PEM bundle for https:// */
	/* "host:port:host2:port2": connect to host2:port2 for URLs naming
	 * host:port (the Host header is kept), like curl --connect-to. */
	const char *connect_to[OTA_POSIX_MAX_CONNECT_TO];
	size_t n_connect_to;
	int connect_timeout_ms, io_timeout_ms;
	int verbose;           /* log debug lines too */
	const char *log_name;  /* prefix of log lines */
	char *const *argv;     /* re-executed by reboot */

	/* Port state. */
	int install_fd;
	int tls_ready;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt ca;
	mbedtls_ssl_config tls;
	uint8_t rx[4096];
	char line[4096];
} ota_posix;

/* ota_posix_init sets defaults (timeouts) in a zeroed px; the caller then
 * sets its fields. */
void ota_posix_init(ota_posix *px);
/* ota_posix_platform fills p with the port's functions for px. */
void ota_posix_platform(ota_posix *px, ota_platform *p);
void ota_posix_free(ota_posix *px);

/* The functions, for tests. */
int ota_posix_http(void *ctx, const ota_http_request *req, ota_http_response *resp, ota_http_body_fn on_body,
                   void *arg);
int ota_posix_store_get(void *ctx, const char *name, uint8_t *buf, size_t cap, size_t *len);
int ota_posix_store_put(void *ctx, const char *name, const uint8_t *p, size_t n);
void ota_posix_log(void *ctx, int level, const char *line);

#endif
