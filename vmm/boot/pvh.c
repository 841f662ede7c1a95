/*
 * pvh.c - loads an ELF kernel with a PVH entry note and builds the
 * hvm_start_info the PVH boot ABI hands to it (docs/guest-abi.md).
 *
 * Every number in the file is checked before it is used: a malformed or
 * truncated kernel is refused with a message, never half-loaded.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/vm_internal.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578u
#define KERNEL_MAX_SIZE (256u << 20)
#define CMDLINE_MAX 2048

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
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

#define START_INFO_GPA PVH_START_INFO_GPA
#define MEMMAP_GPA (START_INFO_GPA + 0x40)
#define CMDLINE_GPA (START_INFO_GPA + 0x200)
#define BOOT_AREA_END (CMDLINE_GPA + CMDLINE_MAX)

/* A program header, read from either ELF class. */
struct phdr {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz;
};

static int read_file(const char *path, uint8_t **buf, size_t *len, char *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, VMM_ERR_LEN, "--kernel: cannot open %s: %s", path, strerror(e));
		return -e;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > KERNEL_MAX_SIZE) {
		snprintf(err, VMM_ERR_LEN, "--kernel: %s is not a regular file under 256 MiB", path);
		close(fd);
		return -EINVAL;
	}
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf) {
		close(fd);
		return -ENOMEM;
	}
	size_t off = 0;
	while (off < *len) {
		ssize_t r = read(fd, *buf + off, *len - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, VMM_ERR_LEN, "--kernel: reading %s failed", path);
			free(*buf);
			close(fd);
			return -EIO;
		}
		off += (size_t)r;
	}
	close(fd);
	return 0;
}

static bool in_file(size_t flen, uint64_t off, uint64_t len)
{
	return off <= flen && len <= flen - off;
}

static int get_phdr(const uint8_t *f, size_t flen, bool is64, unsigned i, struct phdr *p)
{
	if (is64) {
		const Elf64_Ehdr *eh = (const void *)f;
		uint64_t off = eh->e_phoff + (uint64_t)i * eh->e_phentsize;
		if (eh->e_phentsize < sizeof(Elf64_Phdr) || !in_file(flen, off, sizeof(Elf64_Phdr)))
			return -1;
		Elf64_Phdr ph;
		memcpy(&ph, f + off, sizeof(ph));
		*p = (struct phdr){ ph.p_type, ph.p_offset, ph.p_paddr, ph.p_filesz, ph.p_memsz };
	} else {
		const Elf32_Ehdr *eh = (const void *)f;
		uint64_t off = eh->e_phoff + (uint64_t)i * eh->e_phentsize;
		if (eh->e_phentsize < sizeof(Elf32_Phdr) || !in_file(flen, off, sizeof(Elf32_Phdr)))
			return -1;
		Elf32_Phdr ph;
		memcpy(&ph, f + off, sizeof(ph));
		*p = (struct phdr){ ph.p_type, ph.p_offset, ph.p_paddr, ph.p_filesz, ph.p_memsz };
	}
	return 0;
}

/* Looks for the Xen PHYS32_ENTRY note in one PT_NOTE segment. */
static bool find_pvh_note(const uint8_t *n, uint64_t len, uint32_t *entry)
{
	uint64_t off = 0;
	while (len - off >= 12) {
		uint32_t namesz, descsz, type;
		memcpy(&namesz, n + off, 4);
		memcpy(&descsz, n + off + 4, 4);
		memcpy(&type, n + off + 8, 4);
		uint64_t name_off = off + 12;
		uint64_t desc_off = name_off + ((namesz + 3ull) & ~3ull);
		uint64_t next = desc_off + ((descsz + 3ull) & ~3ull);
		if (next > len)
			return false;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
		    memcmp(n + name_off, "Xen", 4) == 0 && (descsz == 4 || descsz == 8)) {
			uint64_t v = 0;
			memcpy(&v, n + desc_off, descsz);
			if (v > 0xffffffffull)
				return false;
			*entry = (uint32_t)v;
			return true;
		}
		off = next;
	}
	return false;
}

static int pvh__write_start_info(struct vm *vm, const char *cmdline, char *err)
{
	struct guest_mem *m = &vm->mem;
	size_t clen = strlen(cmdline);
	struct hvm_memmap_entry map[3];
	uint32_t n = 0;
	uint64_t low = m->slots[0].size;

	if (clen >= CMDLINE_MAX) {
		snprintf(err, VMM_ERR_LEN, "--append: command line is %zu bytes, limit %d",
			 clen, CMDLINE_MAX - 1);
		return -E2BIG;
	}
	map[n++] = (struct hvm_memmap_entry){ .addr = 0, .size = 0x9fc00, .type = 1 };
	map[n++] = (struct hvm_memmap_entry){ .addr = 0x100000, .size = low - 0x100000, .type = 1 };
	if (m->nr_slots > 1)
		map[n++] = (struct hvm_memmap_entry){ .addr = m->slots[1].gpa,
						      .size = m->slots[1].size, .type = 1 };
	struct hvm_start_info si = {
		.magic = HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = CMDLINE_GPA,
		.memmap_paddr = MEMMAP_GPA,
		.memmap_entries = n,
	};
	memcpy(mem__ptr(m, START_INFO_GPA, sizeof(si)), &si, sizeof(si));
	memcpy(mem__ptr(m, MEMMAP_GPA, sizeof(map[0]) * n), map, sizeof(map[0]) * n);
	memcpy(mem__ptr(m, CMDLINE_GPA, clen + 1), cmdline, clen + 1);
	return 0;
}

int pvh__load(struct vm *vm, const char *kernel, const char *cmdline, uint32_t *entry, char *err)
{
	uint8_t *f = NULL;
	size_t flen = 0;
	bool is64, have_entry = false;
	unsigned phnum;
	int ret;

	if (!kernel) {
		snprintf(err, VMM_ERR_LEN, "no --kernel given");
		return -EINVAL;
	}
	ret = read_file(kernel, &f, &flen, err);
	if (ret)
		return ret;
	ret = -ENOEXEC;
	if (flen < EI_NIDENT || memcmp(f, ELFMAG, SELFMAG) != 0) {
		snprintf(err, VMM_ERR_LEN, "--kernel: %s is not an ELF file", kernel);
		goto out;
	}
	is64 = f[EI_CLASS] == ELFCLASS64;
	if ((!is64 && f[EI_CLASS] != ELFCLASS32) || f[EI_DATA] != ELFDATA2LSB ||
	    flen < (is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr))) {
		snprintf(err, VMM_ERR_LEN, "--kernel: %s is not a little-endian ELF32/ELF64 file",
			 kernel);
		goto out;
	}
	phnum = is64 ? ((const Elf64_Ehdr *)(void *)f)->e_phnum : ((const Elf32_Ehdr *)(void *)f)->e_phnum;
	/* Pass 1: check every header and find the entry; nothing is loaded
	 * unless the whole file makes sense. */
	for (unsigned i = 0; i < phnum; i++) {
		struct phdr p;
		if (get_phdr(f, flen, is64, i, &p) < 0) {
			snprintf(err, VMM_ERR_LEN, "--kernel: %s: program header %u lies outside the file",
				 kernel, i);
			goto out;
		}
		if (p.type != PT_LOAD && p.type != PT_NOTE)
			continue;
		if (!in_file(flen, p.offset, p.filesz) || (p.type == PT_LOAD && p.filesz > p.memsz)) {
			snprintf(err, VMM_ERR_LEN, "--kernel: %s is truncated or malformed (segment %u)",
				 kernel, i);
			goto out;
		}
		if (p.type == PT_NOTE && !have_entry)
			have_entry = find_pvh_note(f + p.offset, p.filesz, entry);
	}
	if (!have_entry) {
		snprintf(err, VMM_ERR_LEN,
			 "--kernel: %s has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)", kernel);
		goto out;
	}
	/* Pass 2 checks that every segment fits, pass 3 copies. */
	for (int copy = 0; copy < 2; copy++) {
		for (unsigned i = 0; i < phnum; i++) {
			struct phdr p;
			get_phdr(f, flen, is64, i, &p);
			if (p.type != PT_LOAD || !p.memsz)
				continue;
			uint8_t *dst = mem__ptr(&vm->mem, p.paddr, p.memsz);
			if (copy) {
				memcpy(dst, f + p.offset, p.filesz);
				memset(dst + p.filesz, 0, p.memsz - p.filesz);
			} else if (!dst || (p.paddr < BOOT_AREA_END && p.paddr + p.memsz > START_INFO_GPA)) {
				snprintf(err, VMM_ERR_LEN,
					 "--kernel: segment %u [0x%llx, 0x%llx) does not fit guest RAM "
					 "above the boot area (--memory too small?)", i,
					 (unsigned long long)p.paddr,
					 (unsigned long long)(p.paddr + p.memsz));
				goto out;
			}
		}
	}
	ret = pvh__write_start_info(vm, cmdline, err);
out:
	free(f);
	return ret;
}
