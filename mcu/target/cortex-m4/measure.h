/*
 * Stack and heap measurement for the Cortex-M4 test programs (not part of
 * the library). Typical use:
 *
 *   ota_heap_init();    // mbedTLS allocates from a static arena
 *   ota_stack_paint();  // then run the code under test
 *   ...
 *   printf("stack %u heap %u\n", (unsigned)ota_stack_peak(), (unsigned)ota_heap_peak());
 */
#ifndef OTAFLOW_M4_MEASURE_H
#define OTAFLOW_M4_MEASURE_H

#include <stddef.h>

/* The arena's size; a test may raise it with -DOTA_HEAP_ARENA_SIZE=... */
#ifndef OTA_HEAP_ARENA_SIZE
#define OTA_HEAP_ARENA_SIZE (16 * 1024)
#endif

/* ota_stack_paint fills the unused stack below the current SP with a
 * pattern; ota_stack_peak returns the deepest use below that SP since, in
 * bytes (the whole region when the pattern was used up). */
void ota_stack_paint(void);
size_t ota_stack_peak(void);

/* ota_heap_init makes mbedTLS allocate from the static arena and resets the
 * peak. ota_heap_peak is the arena's high-water mark in bytes as mbedTLS
 * counts it (bytes in use plus a header per block, each at their maximum):
 * the arena a device needs. ota_heap_peak_payload is the bytes in use only.
 * 0 before ota_heap_init. */
void ota_heap_init(void);
size_t ota_heap_peak(void);
size_t ota_heap_peak_payload(void);

#endif
