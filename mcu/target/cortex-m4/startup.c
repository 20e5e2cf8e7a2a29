/*
 * Vector table of the mps2-an386 test programs. Reset enters newlib's
 * rdimon crt0 (_start), which zeroes .bss, sets up semihosting stdio and
 * argv, and calls main. Faults report through semihosting and stop QEMU
 * with a failure status instead of hanging until the runner's timeout.
 */
#include <stdint.h>

extern uint32_t __stack_top[];
void _start(void);
void ota_m4_fault(void);

/* Semihosting calls (ARM semihosting: BKPT 0xAB on M-profile). */
#define SYS_WRITE0 0x04
#define SYS_EXIT 0x18
#define ADP_STOPPED_RUNTIME_ERROR 0x20023

static void semihost(uint32_t op, uint32_t arg)
{
	register uint32_t r0 __asm__("r0") = op;
	register uint32_t r1 __asm__("r1") = arg;
	__asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
}

void ota_m4_fault(void)
{
	static const char msg[] = "\nFAULT: the program took an exception (hard fault)\nRESULT: FAIL\n";
	semihost(SYS_WRITE0, (uint32_t)(uintptr_t)msg);
	semihost(SYS_EXIT, ADP_STOPPED_RUNTIME_ERROR);
	for (;;) {
	}
}

/* Initial SP, reset, then NMI .. SysTick: every exception is a fault here
 * (the test programs use no interrupts). */
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
	(void (*)(void))(uintptr_t)__stack_top,
	_start,
	ota_m4_fault, ota_m4_fault, ota_m4_fault, ota_m4_fault, ota_m4_fault,
	0, 0, 0, 0,
	ota_m4_fault, ota_m4_fault, 0,
	ota_m4_fault, ota_m4_fault,
};
