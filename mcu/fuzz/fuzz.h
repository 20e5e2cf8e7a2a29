/* Shared by the fuzz targets. */
#ifndef OTAFLOW_FUZZ_H
#define OTAFLOW_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "ota.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A failed check: abort so that libFuzzer saves the input. */
#define REQUIRE(c)                                                                                                   \
	do {                                                                                                         \
		if (!(c))                                                                                            \
			abort();                                                                                     \
	} while (0)

/* fuzz_keys.c: the OTA server keys of testdata/conformance
 * (3-assignments.json, 6-keysets.json). fuzz_keys_init loads keys[0]
 * (Ed25519) and keys[1] (P-256, key ID p256_id in hex) and the P-256
 * private key, with which fuzz_sign_p256 signs domain ‖ msg (ASN.1 DER
 * over the SHA-256, as the server signs). */
void fuzz_keys_init(ota_pubkey keys[2], char p256_id[65]);
size_t fuzz_sign_p256(const char *domain, const uint8_t *msg, size_t n, uint8_t *sig, size_t cap);
void fuzz_unhex(const char *s, uint8_t *out, size_t n);

#endif
