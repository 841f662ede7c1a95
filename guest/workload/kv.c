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
#include "lib/sys.h"
#include "lib/time.h"
#include "lib/x86.h"
#include "net/net.h"
#include "virtio/blk.h"
#include "workload/kvlog.h"
#include "workload/kvstore.h"
#include "workload/netcfg.h"
#include "workload/resp_server.h"
#include "workload/service.h"
#include "workload/workload.h"

static uint64_t n_puts, n_gets, n_replay_dropped;

static const char *kv_put(const char *key, size_t klen, const char *val, size_t vlen)
{
	/* Refuse before writing a record the table could not hold. "disk_full"
	 * is the protocol's word for "no room for this entry". */
	if (!kvs_can_put(key, klen))
		return "disk_full";
	const char *why = kvlog_append(key, klen, val, vlen);
	if (why)
		return why;
	kvs_put(key, klen, val, vlen);
	n_puts++;
	return NULL;
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

/* The RESP service's store: the same table and log. This store holds keys
 * and values of 1 to KV_MAX_LEN bytes. */
/* A value the kv protocol can carry in VAL: [A-Za-z0-9_.-]. */
static bool kv_value_ok(const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

/* Why this store cannot hold the pair, or NULL. */
static const char *resp_unfit(const char *key, size_t klen, const char *val, size_t vlen)
{
	if (!klen || klen > KV_MAX_LEN || !vlen || vlen > KV_MAX_LEN || !kv_value_ok(val, vlen))
		return "this store holds keys of 1 to 64 bytes and values of 1 to 64 of [A-Za-z0-9_.-]";
	return NULL;
}

static const char *resp_set(const char *key, size_t klen, const char *val, size_t vlen)
{
	const char *why = resp_unfit(key, klen, val, vlen);
	return why ? why : kv_put(key, klen, val, vlen);
}

/* MSET: every pair in one write and one flush; all acknowledged or none. */
static const char *resp_mset(size_t n, const struct kvlog_entry *e)
{
	uint64_t fresh = 0;
	for (size_t i = 0; i < n; i++) {
		const char *v;
		size_t vl;
		const char *why = resp_unfit(e[i].key, e[i].klen, e[i].val, e[i].vlen);
		if (why)
			return why;
		fresh += kvs_get(e[i].key, e[i].klen, &v, &vl) != 0;
	}
	if (kvs_count() + fresh > kvs_capacity())
		return "disk_full";
	const char *why = kvlog_append_batch(e, n);
	if (why)
		return why;
	for (size_t i = 0; i < n; i++)
		kvs_put(e[i].key, e[i].klen, e[i].val, e[i].vlen);
	n_puts += n;
	return NULL;
}

static int resp_get(const char *key, size_t klen, const char **val, size_t *vlen)
{
	return kv_get(key, klen, val, vlen);
}

static const struct resp_store resp_store = {
	.set = resp_set,
	.mset = resp_mset,
	.get = resp_get,
	.count = kvs_count,
};

static const struct svc_ops kv_ops = {
	.put = kv_put,
	.get = kv_get,
	.stats = kv_stats,
};

static void replay_apply(const char *key, size_t klen, const char *val, size_t vlen)
{
	if (kvs_put(key, klen, val, vlen))
		n_replay_dropped++;
}

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

	size_t want = kvs_bytes_for_max();
	size_t have = heap_available(4096);
	size_t bytes = have < want ? have : want;
	void *mem = heap_alloc(bytes, 4096);
	long cap = mem ? kvs_init(mem, bytes) : -ENOMEM;
	if (cap < 0)
		guest_fatal("workload=kv: not enough RAM for the table (%zu bytes free)", have);
	if ((unsigned long)cap < KVS_MAX_ENTRIES)
		printf("ftvm-guest: warning: kv table holds only %ld entries "
		       "(give the VM at least %zu MiB for %u)\n",
		       cap, (want >> 20) + 8, KVS_MAX_ENTRIES);

	uint64_t t0 = rdtsc();
	long records = kvlog_replay(replay_apply);
	if (records < 0)
		guest_fatal("workload=kv: cannot read the log");
	uint64_t replay_us = tsc_to_us(rdtsc() - t0);
	if (n_replay_dropped)
		printf("ftvm-guest: warning: kv: %llu logged entries did not fit the "
		       "table and are not served\n", (unsigned long long)n_replay_dropped);

	netcfg_start(&nc, &kv_ops, "kv");
	if (resp_port && resp_server_start((uint16_t)resp_port, &resp_store))
		guest_fatal("workload=kv: cannot listen on TCP port %llu", (unsigned long long)resp_port);
	printf("ftvm-guest: ready workload=kv ip=%s port=%u resp_port=%llu entries=%llu records=%ld "
	       "capacity=%ld free_sectors=%llu replay_ms=%llu boot_ms=%llu\n",
	       nc.ip_str, nc.port, (unsigned long long)resp_port, (unsigned long long)kvs_count(), records, cap,
	       (unsigned long long)kvlog_free(), (unsigned long long)(replay_us / 1000),
	       (unsigned long long)(guest_ns() / 1000000));

	for (;;) {
		if (net_poll(64) == 0)
			guest_idle(NET_IDLE_US);
	}
}
