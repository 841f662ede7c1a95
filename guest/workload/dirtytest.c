/*
 * workload=dirtytest seed=S pages=K region=R rounds=N: the exact write
 * pattern tests/vmm reproduces to check the dirty log (guest/README.md).
 * Round r writes ((u64)r << 32) | i to page i for K LCG-chosen pages, then
 * reports r on the test-sync port; after round N the VM exits with 0.
 */
#include "lib/cmdline.h"
#include "lib/printf.h"
#include "lib/sys.h"
#include "lib/time.h"
#include "workload/region.h"
#include "workload/workload.h"

static uint64_t param(const char *key, uint64_t def, uint64_t min, uint64_t max)
{
	const char *s = cmdline_get(key);
	uint64_t v = def;

	if (s && (parse_u64(s, &v) || v < min || v > max))
		guest_fatal("workload=dirtytest: bad %s='%s' (%llu..%llu)", key, s,
			    (unsigned long long)min, (unsigned long long)max);
	return v;
}

void workload_dirtytest(void)
{
	uint64_t seed = param("seed", 1, 0, UINT64_MAX);
	uint64_t k = param("pages", 64, 1, 1ull << 32);
	uint64_t rpages = param("region", 1024, 1, 1ull << 28);
	uint64_t rounds = param("rounds", 10, 1, 0xffffffffull);

	if (cmdline_report_unused())
		guest_fatal("workload=dirtytest: unknown parameters (dirtytest takes seed= "
			    "pages= region= rounds=)");
	region_check(rpages, "dirtytest");
	printf("ftvm-guest: ready workload=dirtytest seed=%llu pages=%llu region=%llu "
	       "rounds=%llu boot_ms=%llu\n", (unsigned long long)seed,
	       (unsigned long long)k, (unsigned long long)rpages,
	       (unsigned long long)rounds, (unsigned long long)(guest_ns() / 1000000));

	uint8_t *base = (uint8_t *)(uintptr_t)DIRTY_REGION_BASE;
	for (uint64_t r = 1; r <= rounds; r++) {
		uint64_t x = seed + r;
		for (uint64_t j = 0; j < k; j++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			uint64_t i = (x >> 33) % rpages;
			*(volatile uint64_t *)(base + i * PAGE_SIZE) = (r << 32) | i;
		}
		guest_testsync((uint32_t)r);
	}
	printf("ftvm-guest: dirtytest done rounds=%llu\n", (unsigned long long)rounds);
	guest_exit(EXIT_OK);
}
