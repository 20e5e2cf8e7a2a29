/* Context types of the mbedTLS crypto port (port/mbedtls/crypto.c). */
#ifndef OTAFLOW_OTA_PORT_MBEDTLS_H
#define OTAFLOW_OTA_PORT_MBEDTLS_H

#include <mbedtls/gcm.h>
#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>

typedef mbedtls_sha256_context ota_sha256_ctx;
typedef mbedtls_sha512_context ota_sha512_ctx;
typedef mbedtls_gcm_context ota_gcm_ctx;

#endif
