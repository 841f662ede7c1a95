/*
 * workload=kv: the UDP key-value store of docs/kv-protocol.md. Boot:
 * virtio-blk, replay the log into the table, virtio-net, then serve.
 * A PUT is answered only once its record is written and flushed.
 */
#include <stdbool.h>

#include "lib/cmdline.h"
#include "lib/crc32c.h"
#include "lib/errno.h"
#include "lib/heap.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/sys.h"
#include "lib/time.h"
#include "lib/x86.h"
#include "net/net.h"
#include "virtio/blk.h"
#include "workload/kvdb.h"
#include "workload/kvlog.h"
#include "workload/kvstore.h"
#include "workload/netcfg.h"
#include "workload/resp_server.h"
#include "workload/service.h"
#include "workload/workload.h"

static uint64_t n_puts, n_gets;

static const char *kv_put(const char *key, size_t klen, const char *val, size_t vlen)
{
	struct kvlog_entry e = { key, klen, val, vlen, KVLOG_PUT };
	const char *why = kvdb_put(1, &e);
	/* "disk_full" is the protocol's word for "no room for this entry". */
	if (why && !strcmp(why, KVDB_STORE_FULL))
		return "disk_full";
	n_puts += !why;
	return why;
}

static int kv_get(const char *key, size_t klen, const char **val, size_t *vlen)
{
	n_gets++;
	return kvs_get(key, klen, val, vlen);
}

static void kv_stats(struct svc_stats *st)
{
	st->entries = kvs_count();
	st->puts = n_puts;
	st->gets = n_gets;
	st->dirtied = 0;
}

/* ---- the RESP service's store: the same table and log ---------------------- */

/* RESP's words for kvdb's errors. */
static const char *resp_why(const char *why)
{
	if (why && !strcmp(why, "too_long"))
		return "this store holds keys and values of up to 512 bytes";
	if (why && !strcmp(why, KVDB_STORE_FULL))
		return "store_full (no memory left for these keys)";
	return why;
}

static const char *resp_mset(size_t n, const struct kvlog_entry *e)
{
	const char *why = kvdb_put(n, e);
	n_puts += why ? 0 : n;
	return resp_why(why);
}

static const char *resp_set(const char *key, size_t klen, const char *val, size_t vlen)
{
	struct kvlog_entry e = { key, klen, val, vlen, KVLOG_PUT };
	return resp_mset(1, &e);
}

static const char *resp_del(size_t n, const struct kvlog_entry *keys, uint64_t *removed)
{
	return resp_why(kvdb_del(n, keys, removed));
}

static const char *resp_flushall(void)
{
	return resp_why(kvdb_flushall());
}

static int resp_get(const char *key, size_t klen, const char **val, size_t *vlen)
{
	return kv_get(key, klen, val, vlen);
}

static const struct resp_store resp_store = {
	.set = resp_set,
	.mset = resp_mset,
	.del = resp_del,
	.flushall = resp_flushall,
	.get = resp_get,
	.count = kvs_count,
};

static const struct svc_ops kv_ops = {
	.put = kv_put,
	.get = kv_get,
	.stats = kv_stats,
};

void workload_kv(void)
{
	struct netcfg nc;

	netcfg_parse(&nc, true, "kv");
	uint64_t resp_port = RESP_DEFAULT_PORT;
	const char *rp = cmdline_get("resp_port");
	if (rp && (parse_u64(rp, &resp_port) || resp_port > 65535 || resp_port == nc.port))
		guest_fatal("workload=kv: bad resp_port='%s' (0 for none, else 1..65535, not port=)", rp);
	if (cmdline_report_unused())
		guest_fatal("workload=kv: unknown parameters (kv takes ip= port= gw= resp_port=)");

	time_require("kv");

	crc32c_init();
	if (crc32c("123456789", 9) != 0xe3069283u)
		guest_fatal("CRC-32C self-test failed");

	int r = blk_init();
	if (r)
		guest_fatal("workload=kv needs a virtio-blk disk for its log (%d)", r);
	if (blk_capacity() < 2)
		guest_fatal("workload=kv: the disk is too small (%llu sectors)",
			    (unsigned long long)blk_capacity());

	/* All the heap: keys and values take what they need of it, and
	 * memory never written stays clean. */
	size_t want = (size_t)KVS_MAX_ENTRIES * (KVS_BYTES_PER_ENTRY + KVS_MIN_DATA_PER_ENTRY);
	size_t have = heap_available(4096);
	void *mem = heap_alloc(have, 4096);
	long cap = mem ? kvs_init(mem, have) : -ENOMEM;
	if (cap < 0)
		guest_fatal("workload=kv: not enough RAM for the table (%zu bytes free)", have);
	if ((unsigned long)cap < KVS_MAX_ENTRIES)
		printf("ftvm-guest: warning: kv table holds only %ld entries "
		       "(give the VM at least %zu MiB for %u)\n",
		       cap, (want >> 20) + 8, KVS_MAX_ENTRIES);
	uint64_t t0 = rdtsc();
	uint64_t dropped;
	long records = kvdb_replay(&dropped);
	if (records == -EPROTO)
		guest_fatal("workload=kv: the disk holds a log of the old format (KVR1, keys and "
			    "values of at most 64 bytes); this guest writes KVR2: give it a new disk");
	if (records < 0)
		guest_fatal("workload=kv: cannot read the log");
	uint64_t replay_us = tsc_to_us(rdtsc() - t0);
	if (dropped)
		printf("ftvm-guest: warning: kv: %llu logged entries did not fit the "
		       "table and are not served\n", (unsigned long long)dropped);

	netcfg_start(&nc, &kv_ops, "kv");
	if (resp_port && resp_server_start((uint16_t)resp_port, &resp_store))
		guest_fatal("workload=kv: cannot listen on TCP port %llu", (unsigned long long)resp_port);
	printf("ftvm-guest: ready workload=kv ip=%s port=%u resp_port=%llu entries=%llu records=%ld "
	       "capacity=%ld data_mib=%llu free_sectors=%llu replay_ms=%llu boot_ms=%llu\n",
	       nc.ip_str, nc.port, (unsigned long long)resp_port, (unsigned long long)kvs_count(), records, cap,
	       (unsigned long long)(kvs_data_free() >> 20),
	       (unsigned long long)kvlog_free(), (unsigned long long)(replay_us / 1000),
	       (unsigned long long)(guest_ns() / 1000000));

	for (;;) {
		if (net_poll(64) == 0)
			guest_idle(NET_IDLE_US);
	}
}
