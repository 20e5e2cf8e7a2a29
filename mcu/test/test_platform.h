/* Platform pieces the test programs share: an installer that refuses
 * (for programs whose updates never get that far) and random bytes from
 * ota_crypto_random (test_rng.c). */
#ifndef OTAFLOW_TEST_PLATFORM_H
#define OTAFLOW_TEST_PLATFORM_H

#include "ota_platform.h"

int test_install_write(void *ctx, uint64_t off, const uint8_t *p, size_t n);
int test_install_read(void *ctx, uint64_t off, uint8_t *p, size_t n);
int test_install_finish(void *ctx, const char *version);
void test_install_abort(void *ctx);
int test_random(void *ctx, uint8_t *p, size_t n);

#endif
