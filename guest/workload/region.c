#include "workload/region.h"

#include "lib/heap.h"
#include "lib/startinfo.h"
#include "lib/sys.h"

void region_check(uint64_t pages, const char *wl)
{
	if (heap_top() > DIRTY_REGION_BASE)
		guest_fatal("workload=%s: the guest image overlaps the region at %#llx", wl,
			    DIRTY_REGION_BASE);
	if (pages > (1ull << 40) / PAGE_SIZE ||
	    !ram_contains(DIRTY_REGION_BASE, pages * PAGE_SIZE))
		guest_fatal("workload=%s: %llu pages at %#llx do not fit in RAM "
			    "(needs %llu MiB of RAM)", wl, (unsigned long long)pages,
			    DIRTY_REGION_BASE,
			    (unsigned long long)((DIRTY_REGION_BASE + pages * PAGE_SIZE + (1 << 20) - 1) >> 20));
}
