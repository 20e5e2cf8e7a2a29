/* ota_crypto_random for the fuzz targets: deterministic (splitmix64) so
 * that a saved input replays exactly. mbedTLS uses it only to blind scalar
 * multiplications. */
#include "ota_crypto.h"

int ota_crypto_random(void *buf, size_t n)
{
	static uint64_t state = 0x6f7461666c6f7721u;
	uint8_t *p = buf;
	uint64_t z = 0;
	size_t i;
	for (i = 0; i < n; i++) {
		if (i % 8 == 0) {
			z = (state += 0x9e3779b97f4a7c15u);
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
			z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
			z ^= z >> 31;
		}
		p[i] = (uint8_t)(z >> (8 * (i % 8)));
	}
	return OTA_OK;
}
