/*
 * Stack painting and the mbedTLS arena of the Cortex-M4 test programs.
 * Test support only: the state below is global on purpose.
 */
#include <stdint.h>

#include <mbedtls/memory_buffer_alloc.h>

#include "measure.h"

#define PAINT 0xC5A5C5A5u

/* The stack region of mps2-an386.ld. */
extern uint32_t __stack_limit[];

static uint32_t *painted_top; /* SP when painted: use is measured from here */
static int heap_ready;
static unsigned char arena[OTA_HEAP_ARENA_SIZE] __attribute__((aligned(8)));

/* Not inlined and without library calls: a memset would run with its own
 * frame inside the region being painted. */
__attribute__((noinline)) void ota_stack_paint(void)
{
	uint32_t *sp;
	volatile uint32_t *p;
	__asm__ volatile("mov %0, sp" : "=r"(sp));
	painted_top = sp;
	for (p = __stack_limit; p < (volatile uint32_t *)sp; p++)
		*p = PAINT;
}

size_t ota_stack_peak(void)
{
	const volatile uint32_t *p = __stack_limit;
	if (!painted_top)
		return 0;
	while (p < (const volatile uint32_t *)painted_top && *p == PAINT)
		p++;
	return (size_t)((const volatile unsigned char *)painted_top - (const volatile unsigned char *)p);
}

void ota_heap_init(void)
{
	mbedtls_memory_buffer_alloc_init(arena, sizeof arena);
	heap_ready = 1;
}

/* mbedTLS's own estimate (mbedtls_memory_buffer_alloc_status): a block
 * header is 8 words with MBEDTLS_MEMORY_DEBUG and without backtraces. */
#define BLOCK_HEADER (8 * sizeof(size_t))

size_t ota_heap_peak(void)
{
	size_t used, blocks;
	if (!heap_ready)
		return 0;
	mbedtls_memory_buffer_alloc_max_get(&used, &blocks);
	return used + blocks * BLOCK_HEADER;
}

size_t ota_heap_peak_payload(void)
{
	size_t used, blocks;
	if (!heap_ready)
		return 0;
	mbedtls_memory_buffer_alloc_max_get(&used, &blocks);
	return used;
}
