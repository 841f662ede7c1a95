/*
 * TSC-based time. The TSC rate comes from the hypervisor, never from a
 * guess: first the timing leaf 0x40000010 (EAX = TSC kHz; VMware's leaf,
 * which ftvm, KVM hosts and QEMU's vmware-cpuid-freq publish), then
 * kvmclock's pvclock data (the rate KVM converts TSC ticks with). Both
 * were read or turned on by vCPU 0 in ring 0 (boot/entry.S: a ring-3
 * CPUID may be the host's own on hosts without CPUID faulting). With
 * neither the rate is unknown: time_require() refuses to start a
 * workload that needs time. Leaf 0x15 is not used: KVM passes the host's
 * crystal through unchanged even where it scales the guest's TSC.
 */
#include "lib/time.h"

#include "boot/layout.h"
#include "lib/printf.h"
#include "lib/sys.h"
#include "lib/x86.h"

extern uint64_t boot_tsc[];	/* boot/entry.S */
extern uint32_t boot_hv[HV_SIZE / 4];

/* struct pvclock_vcpu_time_info, as KVM writes it. */
struct pvclock {
	uint32_t version;	/* odd while KVM updates it */
	uint32_t pad0;
	uint64_t tsc_timestamp;
	uint64_t system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags;
	uint8_t pad[2];
};
extern volatile struct pvclock boot_pvclock;

#define KVMCLOCK_SPINS (1u << 24)	/* pvclock data not there after this: give up */

static uint32_t khz;		/* 0: unknown */
static const char *khz_src = "none";
static bool ring3_cpuid_native;
static uint64_t tsc0;

static uint32_t hv(unsigned off)
{
	return boot_hv[off / 4];
}

/* ns = ((ticks << shift) * mul) >> 32, so kHz = 1e6 * 2^32 / (mul << shift). */
static uint32_t khz_from_pvclock(void)
{
	uint32_t v = 0, mul = 0;
	int8_t shift = 0;

	for (unsigned i = 0; i < KVMCLOCK_SPINS; i++) {
		v = boot_pvclock.version;
		barrier();
		mul = boot_pvclock.tsc_to_system_mul;
		shift = boot_pvclock.tsc_shift;
		barrier();
		if (v && !(v & 1) && v == boot_pvclock.version)
			break;
		v = 0;
		cpu_relax();
	}
	if (!v || !mul || shift < -16 || shift > 16)
		return 0;
	uint64_t num = 1000000ull << 32, den = mul;
	if (shift >= 0)
		den <<= shift;
	else
		num <<= -shift;
	return (uint32_t)((num + den / 2) / den);
}

void time_init(unsigned cpu)
{
	uint32_t a, b, c, d;

	tsc0 = boot_tsc[cpu];
	/* Only to say so: does ring 3 see the leaves ring 0 saw? */
	cpuid(0x40000000, 0, &a, &b, &c, &d);
	ring3_cpuid_native = a != hv(HV_MAX) || b != hv(HV_SIG) || c != hv(HV_SIG + 4) ||
			     d != hv(HV_SIG + 8);

	uint32_t max = hv(HV_MAX);
	if (max >= 0x40000010 && max < 0x40010000 && hv(HV_TSC_KHZ)) {
		khz = hv(HV_TSC_KHZ);
		khz_src = "cpuid-40000010";
	} else if (hv(HV_KVMCLOCK_ON) && (khz = khz_from_pvclock())) {
		khz_src = "kvmclock";
	} else {
		khz = 0;
		khz_src = hv(HV_KVMCLOCK_ON) ? "none: kvmclock published no data" : "none";
	}
}

void time_require(const char *workload)
{
	if (!khz)
		guest_fatal("workload=%s needs the TSC rate and the hypervisor gives none (no "
			    "CPUID leaf 0x40000010, no kvmclock): refusing to start", workload);
}

uint32_t tsc_khz(void)
{
	return khz;
}

const char *tsc_khz_source(void)
{
	return khz_src;
}

bool time_ring3_cpuid_native(void)
{
	return ring3_cpuid_native;
}

uint64_t tsc_at_boot(void)
{
	return tsc0;
}

/* ticks * 1e6 / khz, split so no product can overflow 64 bits:
 * (ticks % khz) < 2^32 and 1e6 < 2^20. Rate unknown: 0. */
uint64_t tsc_to_ns(uint64_t ticks)
{
	if (!khz)
		return 0;
	return ticks / khz * 1000000ull + ticks % khz * 1000000ull / khz;
}

uint64_t tsc_to_us(uint64_t ticks)
{
	if (!khz)
		return 0;
	return ticks / khz * 1000ull + ticks % khz * 1000ull / khz;
}

uint64_t us_to_tsc(uint64_t us)
{
	return us / 1000 * khz + us % 1000 * khz / 1000;
}

uint64_t guest_ns(void)
{
	return tsc_to_ns(rdtsc() - tsc0);
}
