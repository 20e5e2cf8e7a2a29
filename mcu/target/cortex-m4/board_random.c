/*
 * ota_crypto_random of the emulated board. mps2-an386 has no TRNG, so this
 * is a fixed-seed xorshift generator: deterministic runs for tests, and
 * enough for mbedTLS's scalar blinding. Never use it on a device: a real
 * port reads its TRNG. It sits in the board archive, so a test program
 * that defines ota_crypto_random itself takes precedence.
 */
#include <stdint.h>

#include "ota_crypto.h"

static uint32_t state = 0x6f746166u; /* test support: global on purpose */

int ota_crypto_random(void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n--) {
		state ^= state << 13;
		state ^= state >> 17;
		state ^= state << 5;
		*p++ = (uint8_t)(state >> 24);
	}
	return OTA_OK;
}
