/*
 * CPU exceptions. Runs in ring 0 (emulated, ~1 us per instruction on PVM
 * hosts), which is fine: it runs once, reports and stops the VM.
 */
#include <stdint.h>

#include "boot/layout.h"
#include "lib/printf.h"
#include "lib/x86.h"

/* What boot/entry.S's stubs and the CPU pushed, lowest address first. */
struct trap_frame {
	uint64_t vector;
	uint64_t err;
	uint64_t rip;
	uint64_t cs;
	uint64_t rflags;
	uint64_t rsp;
	uint64_t ss;
};

void __attribute__((noreturn)) trap_panic(const struct trap_frame *f);

void trap_panic(const struct trap_frame *f)
{
	uint64_t cr2;
	uint16_t tr;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	/* The task register names this vCPU's TSS, hence its index. */
	__asm__ volatile("str %0" : "=r"(tr));
	printf("guest panic: vector %u rip %#lx err %#lx cr2 %#lx rsp %#lx cs %#lx rflags %#lx cpu %u\n",
	       (unsigned)f->vector, f->rip, f->err, cr2, f->rsp, f->cs, f->rflags,
	       (unsigned)(tr - SEL_TSS0) / 16);
	outl(PORT_EXIT, 0x80 | (uint32_t)f->vector);
	for (;;)
		__asm__ volatile("cli; hlt");
}
