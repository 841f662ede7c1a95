/*
 * fuzz/guest_host/kv_host.c - the kv workload (guest/workload/kv.c, compiled
 * in here) booted on the host shim. workload_kv() never returns: it serves
 * until there is nothing to do and then idles; guest_idle() returns at
 * once while the input has more for the guest (a frame, or time to pass),
 * as an interrupt would wake it, and takes control back to the host when
 * the input is done.
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
	if (host_rx_pending())
		return;
	longjmp(idle_jmp, 1);
}

void host_kv_run(void)
{
	/* What a fresh VM has: every guest variable as the ELF gives it
	 * (guest_state.h, which this file is compiled with too, so the
	 * variables above start at 0 as well), the shim's devices and clock. */
	host_guest_reset();

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

_Static_assert(KVLOG_PUT == HOST_KV_PUT && KVLOG_DEL == HOST_KV_DEL &&
		       KVLOG_FLUSHALL == HOST_KV_FLUSHALL,
	       "host.h's record ops are kvlog.h's");

static void (*replay_fn)(int op, const char *key, size_t klen, const char *val, size_t vlen);

static void replay_entry(const struct kvlog_entry *e)
{
	replay_fn((int)e->op, e->key, e->klen, e->val, e->vlen);
}

long host_kv_replay(void (*apply)(int op, const char *key, size_t klen, const char *val,
				  size_t vlen))
{
	replay_fn = apply;
	return kvlog_replay(replay_entry);
}

const char *host_kv_probe(const char *key, size_t klen, const char *val, size_t vlen)
{
	struct kvlog_entry e = { key, klen, val, vlen, KVLOG_PUT };
	return kvlog_append(&e);
}

void host_kv_table(uint64_t *entries, uint64_t *data_bytes)
{
	*entries = kvs_capacity();
	*data_bytes = kvs_data_free();
}
