/* Guest time from the TSC. */
#ifndef FTVM_GUEST_TIME_H
#define FTVM_GUEST_TIME_H

#include <stdint.h>

/* Finds the TSC frequency (CPUID 0x40000010, then 0x15/0x16, else assumes
 * 1 GHz with a warning) and notes the boot TSC of `cpu`. */
void time_init(unsigned cpu);

uint32_t tsc_khz(void);
/* Where the frequency came from: "cpuid-40000010", "cpuid-15", "assumed". */
const char *tsc_khz_source(void);
/* The TSC the boot stub read as its very first instruction. */
uint64_t tsc_at_boot(void);

/* Exact conversions (no overflow for any 64-bit TSC delta). */
uint64_t tsc_to_ns(uint64_t ticks);
uint64_t tsc_to_us(uint64_t ticks);
uint64_t us_to_tsc(uint64_t us);

/* Nanoseconds since the boot stub started. */
uint64_t guest_ns(void);

#endif
