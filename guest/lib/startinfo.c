/*
 * hvm_start_info parsing. Physical addresses are usable as pointers: the
 * boot stub identity-maps the first 4 GiB with user access.
 */
#include "lib/startinfo.h"

#include <stddef.h>

#include "lib/errno.h"
#include "lib/printf.h"

static const struct hvm_start_info *si;
static const struct hvm_memmap_entry *mm;
static uint32_t mm_n;

/* Without a memory map (version 0) assume this much RAM from 0. */
#define FALLBACK_RAM (64ull << 20)
static const struct hvm_memmap_entry fallback_map = { 0, FALLBACK_RAM, E820_RAM, 0 };

int startinfo_init(uint64_t paddr)
{
	if (paddr == 0 || paddr >= (1ull << 32))
		return -EINVAL;
	si = (const struct hvm_start_info *)(uintptr_t)paddr;
	if (si->magic != HVM_START_MAGIC) {
		si = NULL;
		return -EINVAL;
	}
	if (si->version >= 1 && si->memmap_entries && si->memmap_paddr &&
	    si->memmap_paddr < (1ull << 32)) {
		mm = (const struct hvm_memmap_entry *)(uintptr_t)si->memmap_paddr;
		mm_n = si->memmap_entries;
	} else {
		printf("ftvm-guest: warning: no memory map in hvm_start_info, "
		       "assuming %llu MiB of RAM\n", FALLBACK_RAM >> 20);
		mm = &fallback_map;
		mm_n = 1;
	}
	return 0;
}

const char *startinfo_cmdline(void)
{
	if (!si || !si->cmdline_paddr || si->cmdline_paddr >= (1ull << 32))
		return "";
	return (const char *)(uintptr_t)si->cmdline_paddr;
}

int ram_contains(uint64_t addr, uint64_t len)
{
	for (uint32_t i = 0; i < mm_n; i++) {
		if (mm[i].type != E820_RAM)
			continue;
		if (addr >= mm[i].addr && len <= mm[i].size &&
		    addr - mm[i].addr <= mm[i].size - len)
			return 1;
	}
	return 0;
}

uint64_t ram_end_from(uint64_t addr)
{
	for (uint32_t i = 0; i < mm_n; i++) {
		if (mm[i].type == E820_RAM && addr >= mm[i].addr &&
		    addr - mm[i].addr < mm[i].size)
			return mm[i].addr + mm[i].size;
	}
	return 0;
}

uint64_t ram_total(void)
{
	uint64_t t = 0;

	for (uint32_t i = 0; i < mm_n; i++) {
		if (mm[i].type == E820_RAM)
			t += mm[i].size;
	}
	return t;
}
