/* The PVH hvm_start_info the VMM hands over in EBX. */
#ifndef FTVM_GUEST_STARTINFO_H
#define FTVM_GUEST_STARTINFO_H

#include <stdint.h>

#define HVM_START_MAGIC 0x336ec578u
#define E820_RAM        1

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	/* version >= 1 */
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

/* Validates the structure; 0 or -EINVAL. */
int startinfo_init(uint64_t paddr);
/* The command line ("" if none). */
const char *startinfo_cmdline(void);
/* Is [addr, addr+len) entirely inside one RAM range of the memory map? */
int ram_contains(uint64_t addr, uint64_t len);
/* End of the RAM range that holds addr (0 if addr is not RAM). */
uint64_t ram_end_from(uint64_t addr);
/* Total RAM in the map. */
uint64_t ram_total(void);

#endif
