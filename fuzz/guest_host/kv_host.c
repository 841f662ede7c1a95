/*
 * fuzz/guest_host/kv_host.c - the kv workload (guest/workload/kv.c, compiled
 * in here so that its counters can be reset per input) booted on the host
 * shim. workload_kv() never returns: it serves until there is nothing to
 * do and then idles, and guest_idle() is where the host takes control back
 * (the input's frames are all handled by then).
 */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/guest_host/host.h"
#include "workload/kv.c"

void host_guest_reset(void);

static jmp_buf idle_jmp;
static int serving;

void guest_idle(uint32_t us)
{
	(void)us;
	if (!serving)
		abort(); /* idling outside host_kv_run(): nothing can wake it */
	longjmp(idle_jmp, 1);
}

void host_kv_run(void)
{
	/* The state the boot does not set up itself: what a fresh VM has. */
	host_guest_reset();
	memset(&netif, 0, sizeof(netif));
	n_puts = n_gets = n_replay_dropped = 0;

	/* As guest/main.c before it dispatches to the workload. */
	time_init(0);
	heap_init();
	if (cmdline_parse(HOST_GUEST_CMDLINE) || !cmdline_get("workload"))
		abort();
	if (setjmp(idle_jmp) == 0) {
		serving = 1;
		workload_kv();
		abort(); /* it does not return */
	}
	serving = 0;
}

long host_kv_replay(void (*apply)(const char *key, size_t klen, const char *val,
				  size_t vlen))
{
	return kvlog_replay(apply);
}
