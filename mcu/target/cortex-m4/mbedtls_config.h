/*
 * mbedTLS 2.28 configuration of the Cortex-M4 build (MBEDTLS_CONFIG_FILE):
 * only what port/mbedtls/crypto.c needs, sized for a small device.
 *
 *   hashes   SHA-256, SHA-512 (Ed25519, key IDs, HKDF through src/kdf.c)
 *   AEAD     AES-256-GCM (otaflow-enc/v1 chunks)
 *   curves   P-256 (ECDH, ECDSA verify of DER signatures), Curve25519
 *
 * Bignums allocate: the device hands mbedTLS a static arena
 * (MBEDTLS_MEMORY_BUFFER_ALLOC_C, see measure.c), and MBEDTLS_MEMORY_DEBUG
 * lets tests read the arena's peak. No entropy module and no DRBG: the port
 * passes its own RNG (ota_crypto_random) to mbedtls_ecp_mul for blinding.
 */
#ifndef OTAFLOW_MBEDTLS_CONFIG_H
#define OTAFLOW_MBEDTLS_CONFIG_H

/* System: bare metal, no clock, no filesystem, no sockets. */
#define MBEDTLS_HAVE_ASM /* bn_mul.h has Thumb-2 multiply-accumulate */
#define MBEDTLS_NO_PLATFORM_ENTROPY
#define MBEDTLS_NO_UDBL_DIVISION /* no 64/32 hardware division on M4 */

/* Platform: allocation goes through the static arena. */
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_MEMORY
#define MBEDTLS_MEMORY_BUFFER_ALLOC_C
#define MBEDTLS_MEMORY_DEBUG

/* Hashes. The smaller variants trade some speed for flash. */
#define MBEDTLS_MD_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA256_SMALLER
#define MBEDTLS_SHA512_C
#define MBEDTLS_SHA512_SMALLER
#define MBEDTLS_SHA512_NO_SHA384

/* AES-GCM. ROM tables keep the S-boxes in flash; fewer tables halve them. */
#define MBEDTLS_AES_C
#define MBEDTLS_AES_ROM_TABLES
#define MBEDTLS_AES_FEWER_TABLES
#define MBEDTLS_CIPHER_C
#define MBEDTLS_GCM_C

/* Public-key: bignum, the two curves, ECDH, ECDSA (verify; DER). */
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_DP_CURVE25519_ENABLED
#define MBEDTLS_ECP_NIST_OPTIM
/* The caller always passes an RNG to mbedtls_ecp_mul: no internal DRBG. */
#define MBEDTLS_ECP_NO_INTERNAL_RNG
#define MBEDTLS_ECDH_C
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C /* referenced by ecdsa.c; dropped by --gc-sections */

/* Sizes: a small precomputation window and no fixed-point table in RAM;
 * MPIs no larger than the curves need (RSA is not built). */
#define MBEDTLS_ECP_WINDOW_SIZE 2
#define MBEDTLS_ECP_FIXED_POINT_OPTIM 0
#define MBEDTLS_ECP_MAX_BITS 256
#define MBEDTLS_MPI_WINDOW_SIZE 1
#define MBEDTLS_MPI_MAX_SIZE 64

#include "mbedtls/check_config.h"

#endif
