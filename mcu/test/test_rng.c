/* ota_crypto_random for the test programs and fuzz targets: deterministic,
 * since tests need no entropy (mbedTLS only blinds scalar multiplications
 * with it), and a fuzz target's saved input then replays exactly. */
#include "ota_crypto.h"

int ota_crypto_random(void *buf, size_t n)
{
	static uint32_t x = 2463534242u;
	uint8_t *p = buf;
	size_t i;
	for (i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
	return OTA_OK;
}
