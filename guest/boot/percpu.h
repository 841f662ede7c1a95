/* Per-vCPU data shared between vCPUs. */
#ifndef FTVM_GUEST_PERCPU_H
#define FTVM_GUEST_PERCPU_H

#include <stdint.h>

#include "boot/layout.h"

/* One cache line per vCPU so publishing does not bounce other lines. */
struct cpu_slot {
	volatile uint64_t tsc;        /* last rdtsc the vCPU published */
	volatile uint64_t iterations; /* how many times it did */
	/* times this vCPU read a TSC below one another vCPU had already
	 * published: their TSCs are not synchronised */
	volatile uint64_t order_errors;
	uint8_t pad[40];
} __attribute__((aligned(64)));

extern struct cpu_slot cpu_slots[MAX_CPUS];

#endif
