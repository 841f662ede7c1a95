/*
 * workload=dirty pages=N rate=R [warm=W] [ip=.. port=.. gw=..]: dirties N
 * pages of the region round-robin, R pages per second (0 = as fast as it
 * can), so replication can be measured under a known dirty rate. warm=W
 * first writes W pages of the region once, before it says ready: a guest
 * that has used that much RAM and now dirties little of it. Each write stores
 * the running count, so every write really changes the page. With ip= it
 * also answers TIME and STAT (dirtied=) over UDP.
 */
#include "lib/cmdline.h"
#include "lib/printf.h"
#include "lib/sys.h"
#include "lib/time.h"
#include "lib/x86.h"
#include "net/net.h"
#include "workload/netcfg.h"
#include "workload/region.h"
#include "workload/service.h"
#include "workload/workload.h"

#define DEFAULT_PAGES 1024
#define DEFAULT_RATE  0
#define MAX_RATE      1000000000ull
/* Most pages written between two network polls. */
#define BURST         4096
/* Below this, spinning beats an idle exit. */
#define MIN_IDLE_US   100

static volatile uint64_t dirtied;

static void dirty_stats(struct svc_stats *st)
{
	st->entries = 0;
	st->puts = 0;
	st->gets = 0;
	st->dirtied = dirtied;
}

static const struct svc_ops dirty_ops = {
	.stats = dirty_stats,
};

static uint64_t param(const char *key, uint64_t def, uint64_t min, uint64_t max)
{
	const char *s = cmdline_get(key);
	uint64_t v = def;

	if (s && (parse_u64(s, &v) || v < min || v > max))
		guest_fatal("workload=dirty: bad %s='%s' (%llu..%llu)", key, s,
			    (unsigned long long)min, (unsigned long long)max);
	return v;
}

/* Pages due after `us` microseconds at `rate` per second, overflow-free. */
static uint64_t due_after(uint64_t us, uint64_t rate)
{
	return us / 1000000 * rate + us % 1000000 * rate / 1000000;
}

void workload_dirty(void)
{
	struct netcfg nc;
	uint64_t pages = param("pages", DEFAULT_PAGES, 1, 1ull << 28);
	uint64_t rate = param("rate", DEFAULT_RATE, 0, MAX_RATE);
	uint64_t warm = param("warm", 0, 0, 1ull << 28);

	time_require("dirty");

	netcfg_parse(&nc, false, "dirty");
	if (cmdline_report_unused())
		guest_fatal("workload=dirty: unknown parameters (dirty takes pages= rate= "
			    "warm= ip= port= gw=)");
	region_check(pages > warm ? pages : warm, "dirty");
	uint8_t *base = (uint8_t *)(uintptr_t)DIRTY_REGION_BASE;
	for (uint64_t i = 0; i < warm; i++)
		*(volatile uint64_t *)(base + i * PAGE_SIZE) = i + 1;
	if (nc.enabled)
		netcfg_start(&nc, &dirty_ops, "dirty");

	if (nc.enabled)
		printf("ftvm-guest: ready workload=dirty pages=%llu rate=%llu ip=%s port=%u "
		       "boot_ms=%llu\n", (unsigned long long)pages, (unsigned long long)rate,
		       nc.ip_str, nc.port, (unsigned long long)(guest_ns() / 1000000));
	else
		printf("ftvm-guest: ready workload=dirty pages=%llu rate=%llu boot_ms=%llu\n",
		       (unsigned long long)pages, (unsigned long long)rate,
		       (unsigned long long)(guest_ns() / 1000000));

	uint64_t next = 0; /* next page index, round-robin */
	uint64_t n = 0;    /* pages written (mirrored in `dirtied`) */
	uint64_t start = rdtsc();

	for (;;) {
		uint64_t target;
		if (rate == 0) {
			target = n + BURST;
		} else {
			target = due_after(tsc_to_us(rdtsc() - start), rate);
			if (target > n + BURST)
				target = n + BURST; /* catch up over several rounds */
		}
		while (n < target) {
			*(volatile uint64_t *)(base + next * PAGE_SIZE) = ++n;
			if (++next == pages)
				next = 0;
		}
		dirtied = n;

		int got = nc.enabled ? net_poll(64) : 0;
		if (rate == 0 || got)
			continue;
		/* Caught up: sleep until the next page is due (or a frame comes). */
		uint64_t now_us = tsc_to_us(rdtsc() - start);
		uint64_t next_us = (n + 1) / rate * 1000000 + (n + 1) % rate * 1000000 / rate;
		if (next_us > now_us + MIN_IDLE_US) {
			uint64_t wait = next_us - now_us;
			guest_idle(wait > NET_IDLE_US ? NET_IDLE_US : (uint32_t)wait);
		}
	}
}
