/*
 * TSC-based time. The VMM publishes the guest TSC frequency in the
 * VMware/QEMU timing leaf 0x40000010 (kHz); Intel's leaf 0x15 is the next
 * best thing. There is no PIT or RTC to calibrate against on these
 * machines, so without either we assume 1 GHz and say so.
 */
#include "lib/time.h"

#include "lib/printf.h"
#include "lib/x86.h"

extern uint64_t boot_tsc[]; /* boot/entry.S */

static uint32_t khz = 1000000;
static const char *khz_src = "assumed";
static uint64_t tsc0;

static uint32_t khz_from_leaf15(void)
{
	uint32_t a, b, c, d;

	cpuid(0, 0, &a, &b, &c, &d);
	uint32_t max = a;
	if (max < 0x15)
		return 0;
	cpuid(0x15, 0, &a, &b, &c, &d);
	/* EAX/EBX: TSC/crystal ratio denominator/numerator; ECX: crystal Hz. */
	if (a == 0 || b == 0)
		return 0;
	uint64_t crystal_hz = c;
	if (crystal_hz == 0 && max >= 0x16) {
		/* Intel's documented fallback: derive the crystal from the
		 * processor base frequency (leaf 0x16 EAX, MHz). */
		uint32_t a16, b16, c16, d16;
		cpuid(0x16, 0, &a16, &b16, &c16, &d16);
		crystal_hz = (uint64_t)(a16 & 0xffff) * 1000000ull * a / b;
	}
	if (crystal_hz == 0)
		return 0;
	return (uint32_t)(crystal_hz * b / a / 1000);
}

void time_init(unsigned cpu)
{
	uint32_t a, b, c, d;

	tsc0 = boot_tsc[cpu];

	cpuid(0x40000000, 0, &a, &b, &c, &d);
	if (a >= 0x40000010 && a < 0x40010000) {
		cpuid(0x40000010, 0, &a, &b, &c, &d);
		if (a) {
			khz = a;
			khz_src = "cpuid-40000010";
			return;
		}
	}
	uint32_t k = khz_from_leaf15();
	if (k) {
		khz = k;
		khz_src = "cpuid-15";
		return;
	}
	printf("ftvm-guest: warning: TSC frequency unknown (no CPUID leaf "
	       "0x40000010 or 0x15), assuming 1 GHz\n");
}

uint32_t tsc_khz(void)
{
	return khz;
}

const char *tsc_khz_source(void)
{
	return khz_src;
}

uint64_t tsc_at_boot(void)
{
	return tsc0;
}

/* ticks * 1e6 / khz, split so no product can overflow 64 bits:
 * (ticks % khz) < 2^32 and 1e6 < 2^20. */
uint64_t tsc_to_ns(uint64_t ticks)
{
	return ticks / khz * 1000000ull + ticks % khz * 1000000ull / khz;
}

uint64_t tsc_to_us(uint64_t ticks)
{
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
