/*
 * The whole device client linked for the footprint: ota_client_poll (with
 * enrollment, checks, the resumable download, reports, confirmation and
 * commits, following the server's key set into room for 4 keys) over a
 * platform that has no network. It runs one poll, which
 * fails with "io", so that the linker keeps everything a device links;
 * the Cortex-M4 build's map gives the client's flash and this program
 * prints its RAM.
 */
#include <stdio.h>
#include <string.h>

#include "ota_client.h"
#include "test_platform.h"
#include "ota_envelope.h"

static int http(void *ctx, const ota_http_request *req, ota_http_response *resp, ota_http_body_fn on_body, void *arg)
{
	(void)ctx, (void)req, (void)resp, (void)on_body, (void)arg;
	return OTA_ERR_IO;
}
static int store_get(void *ctx, const char *name, uint8_t *buf, size_t cap, size_t *len)
{
	(void)ctx, (void)name, (void)buf, (void)cap;
	*len = 0;
	return OTA_OK;
}
static int store_put(void *ctx, const char *name, const uint8_t *p, size_t n)
{
	(void)ctx, (void)name, (void)p, (void)n;
	return OTA_OK;
}
static int install_open(void *ctx, uint64_t size, int resume)
{
	(void)ctx, (void)size, (void)resume;
	return OTA_ERR_INSTALL;
}
static int64_t now(void *ctx)
{
	(void)ctx;
	return OTA_NO_CLOCK;
}
static void logline(void *ctx, int level, const char *line)
{
	(void)ctx, (void)level;
	puts(line);
}

static uint8_t chunk[ota_env_buf_size(OTA_ENV_DEFAULT_LOG2)];
static char body[OTA_CLIENT_BODY_MIN];
static ota_client client;
static ota_pubkey key_store[4];
static ota_assignment assignment;

int main(void)
{
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
	static const uint8_t priv[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
	ota_device_key dev;
	ota_pubkey server;
	ota_client_config cfg;
	int r;
	if (ota_device_key_from_priv(&dev, OTA_KEM_X25519, priv) != OTA_OK ||
	    ota_pubkey_from_raw(&server, OTA_ALG_ED25519, priv, 32) != OTA_OK)
		return 1;
	memset(&cfg, 0, sizeof cfg);
	cfg.server_url = "https://ota.example.com";
	cfg.device_id = "sensor-00042";
	cfg.device_type = "sensor-v1";
	cfg.version = "2.0.3";
	cfg.bootstrap_token = "factory-token-2026-0123456789abcdef";
	cfg.device_key = &dev;
	cfg.assignment_keys = &server;
	cfg.n_assignment_keys = 1;
	cfg.key_store = key_store;
	cfg.key_store_cap = sizeof key_store / sizeof key_store[0];
	cfg.chunk_buf = chunk;
	cfg.chunk_cap = sizeof chunk;
	cfg.body_buf = body;
	cfg.body_cap = sizeof body;
	if ((r = ota_client_init(&client, &plat, &cfg)) != OTA_OK) {
		printf("init: %s\nRESULT: FAIL\n", ota_err_code(r));
		return 1;
	}
	r = ota_client_poll(&client, &assignment);
	printf("client: poll without a network: %s; client %u, assignment %u, chunk buffer %u, body buffer %u, key "
	       "store %u bytes\n",
	       ota_err_code(r), (unsigned)sizeof client, (unsigned)sizeof assignment, (unsigned)sizeof chunk,
	       (unsigned)sizeof body, (unsigned)sizeof key_store);
	printf("RESULT: %s\n", r == OTA_ERR_IO ? "PASS" : "FAIL");
	return r == OTA_ERR_IO ? 0 : 1;
}
