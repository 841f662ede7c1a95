/* Guest time from the TSC. */
#ifndef FTVM_GUEST_TIME_H
#define FTVM_GUEST_TIME_H

#include <stdbool.h>
#include <stdint.h>

/* Learns the TSC rate from the hypervisor (CPUID 0x40000010, else
 * kvmclock; lib/time.c) and notes the boot TSC of `cpu`. */
void time_init(unsigned cpu);
/* Stops the guest with a console error if the rate is unknown. */
void time_require(const char *workload);

/* kHz; 0 if the hypervisor gave no rate (then every conversion gives 0). */
uint32_t tsc_khz(void);
/* Where the rate came from: "cpuid-40000010", "kvmclock", "none...". */
const char *tsc_khz_source(void);
/* True if a ring-3 CPUID answers other than the VMM's table (no CPUID
 * faulting on this host: ring 3 sees the host CPU's leaves). */
bool time_ring3_cpuid_native(void);
/* The TSC the boot stub read as its very first instruction. */
uint64_t tsc_at_boot(void);

/* Exact conversions (no overflow for any 64-bit TSC delta). */
uint64_t tsc_to_ns(uint64_t ticks);
uint64_t tsc_to_us(uint64_t ticks);
uint64_t us_to_tsc(uint64_t us);

/* Nanoseconds since the boot stub started. */
uint64_t guest_ns(void);

#endif
