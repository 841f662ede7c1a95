/* The fixed RAM region the dirty and dirtytest workloads write to. */
#ifndef FTVM_GUEST_REGION_H
#define FTVM_GUEST_REGION_H

#include <stdint.h>

#define DIRTY_REGION_BASE 0x04000000ull /* 64 MiB */
#define PAGE_SIZE         4096ull

/* Exits the VM with a clear error unless `pages` pages from the region
 * base are RAM and clear of the guest image. */
void region_check(uint64_t pages, const char *workload);

#endif
