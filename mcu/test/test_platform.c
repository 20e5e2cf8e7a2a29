/* test_platform.h */
#include "test_platform.h"

#include "ota_crypto.h"

int test_install_write(void *ctx, uint64_t off, const uint8_t *p, size_t n)
{
	(void)ctx, (void)off, (void)p, (void)n;
	return OTA_ERR_INSTALL;
}

int test_install_read(void *ctx, uint64_t off, uint8_t *p, size_t n)
{
	(void)ctx, (void)off, (void)p, (void)n;
	return OTA_ERR_INSTALL;
}

int test_install_finish(void *ctx, const char *version)
{
	(void)ctx, (void)version;
	return OTA_ERR_INSTALL;
}

void test_install_abort(void *ctx) { (void)ctx; }

int test_random(void *ctx, uint8_t *p, size_t n)
{
	(void)ctx;
	return ota_crypto_random(p, n);
}
