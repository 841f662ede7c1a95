/*
 * Ring-3 entry: boot/entry.S irets here on every vCPU. vCPU 0 parses the
 * command line and runs the workload; the others idle and publish their
 * TSC (groundwork for cross-vCPU TSC checks).
 */
#include <stdint.h>

#include "boot/percpu.h"
#include "lib/cmdline.h"
#include "lib/heap.h"
#include "lib/printf.h"
#include "lib/startinfo.h"
#include "lib/string.h"
#include "lib/sys.h"
#include "lib/time.h"
#include "lib/x86.h"
#include "workload/workload.h"

#define AP_IDLE_US 100000

struct cpu_slot cpu_slots[MAX_CPUS];

void __attribute__((noreturn)) guest_entry(uint64_t start_info, uint64_t cpu);

static void __attribute__((noreturn)) ap_main(unsigned cpu)
{
	struct cpu_slot *s = &cpu_slots[cpu];

	for (;;) {
		/* vCPU 0 published its TSC before we read ours: ours must not be
		 * smaller, or the two TSCs are not in step. */
		uint64_t bsp = cpu_slots[0].tsc;
		uint64_t now = rdtsc_ordered();
		if (now < bsp)
			s->order_errors++;
		s->tsc = now;
		s->iterations++;
		guest_idle(AP_IDLE_US);
	}
}

static const struct {
	const char *name;
	void (*run)(void);
} workloads[] = {
	{ "kv", workload_kv },
	{ "dirty", workload_dirty },
	{ "dirtytest", workload_dirtytest },
	{ "stringio", workload_stringio },
};

void guest_entry(uint64_t start_info, uint64_t cpu)
{
	if (cpu != 0)
		ap_main((unsigned)cpu);

	time_init(0);
	cpu_slots[0].tsc = rdtsc();
	if (startinfo_init(start_info))
		guest_fatal("no valid hvm_start_info at %#lx (not booted via PVH?)",
			    start_info);
	heap_init();
	/* One short line: on PVM hosts each console byte is a ~70 us exit. */
	printf("ftvm-guest: boot tsc_khz=%u (%s) ram_mib=%llu%s\n", tsc_khz(),
	       tsc_khz_source(), (unsigned long long)(ram_total() >> 20),
	       time_ring3_cpuid_native() ? " ring3-cpuid=host" : "");
	const char *cl = startinfo_cmdline();
	if (cmdline_parse(cl))
		guest_fatal("command line too long (max %d bytes, %d words)",
			    CMDLINE_MAX_LEN - 1, CMDLINE_MAX_WORDS);

	const char *w = cmdline_get("workload");
	if (!w || !*w)
		guest_fatal("no workload= on the command line (kv, dirty, dirtytest): '%s'", cl);
	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++) {
		if (strcmp(w, workloads[i].name) == 0) {
			workloads[i].run();
			guest_exit(EXIT_OK);
		}
	}
	guest_fatal("unknown workload '%s' (kv, dirty, dirtytest, stringio)", w);
}
