/*
 * memory.c - guest RAM: KVM memory slots, host mappings (dirty tracking:
 * dirty_log.c).
 *
 * RAM below the 32-bit MMIO hole is slot 0 at gpa 0; RAM beyond
 * VM_LOW_MEM_END continues in slot 1 at 4 GiB. Page numbers used by the
 * dirty-tracking API are flat across slots (slot 0 first).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

#include "vmm/vm_internal.h"

static int mem__set_slot(struct guest_mem *m, int vm_fd, unsigned i)
{
	struct mem_slot *s = &m->slots[i];
	struct kvm_userspace_memory_region r = {
		.slot = i,
		.flags = m->dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = s->gpa,
		.memory_size = s->size,
		.userspace_addr = (uintptr_t)s->host,
	};
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return -errno;
	return 0;
}

int mem__init(struct guest_mem *m, int vm_fd, const struct vm_config *cfg, char *err)
{
	uint64_t size = cfg->mem_size;
	uint64_t low = size < VM_LOW_MEM_END ? size : VM_LOW_MEM_END;
	int ret;

	memset(m, 0, sizeof(*m));
	m->dirty_log = cfg->dirty_log;
	m->slots[0] = (struct mem_slot){ .gpa = 0, .size = low };
	m->nr_slots = 1;
	if (size > low) {
		m->slots[1] = (struct mem_slot){ .gpa = VM_HIGH_MEM_BASE, .size = size - low,
						 .first_page = low / VMM_PAGE_SIZE };
		m->nr_slots = 2;
	}
	m->nr_pages = size / VMM_PAGE_SIZE;
	/* Before any slot or vCPU exists: KVM takes the ring mode only then. */
	ret = dirty_log__setup(m, vm_fd, cfg->dirty_mode, cfg->x_dirty_ring_bytes, err);
	if (ret) {
		mem__free(m);
		return ret;
	}
	for (unsigned i = 0; i < m->nr_slots; i++) {
		struct mem_slot *s = &m->slots[i];
		s->host = mmap(NULL, s->size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (s->host == MAP_FAILED) {
			ret = -errno;
			s->host = NULL;
			snprintf(err, VMM_ERR_LEN, "cannot allocate %llu MiB of guest memory: %s",
				 (unsigned long long)(s->size >> 20), strerror(-ret));
			mem__free(m);
			return ret;
		}
		madvise(s->host, s->size, MADV_MERGEABLE);
		ret = mem__set_slot(m, vm_fd, i);
		if (ret) {
			snprintf(err, VMM_ERR_LEN, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-ret));
			mem__free(m);
			return ret;
		}
	}
	if (page_set__init(&m->vmm_dirty, m->nr_pages)) {
		mem__free(m);
		snprintf(err, VMM_ERR_LEN, "out of memory for the dirty bitmap");
		return -ENOMEM;
	}
	return 0;
}

void mem__free(struct guest_mem *m)
{
	for (unsigned i = 0; i < m->nr_slots; i++)
		if (m->slots[i].host)
			munmap(m->slots[i].host, m->slots[i].size);
	page_set__free(&m->vmm_dirty);
	dirty_log__free(m);
	memset(m, 0, sizeof(*m));
}

static struct mem_slot *mem__slot_of(struct guest_mem *m, uint64_t gpa, size_t len)
{
	for (unsigned i = 0; i < m->nr_slots; i++) {
		struct mem_slot *s = &m->slots[i];
		if (gpa >= s->gpa && len <= s->size && gpa - s->gpa <= s->size - len)
			return s;
	}
	return NULL;
}

void *mem__ptr(struct guest_mem *m, uint64_t gpa, size_t len)
{
	struct mem_slot *s = mem__slot_of(m, gpa, len);
	return s ? s->host + (gpa - s->gpa) : NULL;
}

void mem__mark_dirty(struct guest_mem *m, uint64_t gpa, size_t len)
{
	struct mem_slot *s = mem__slot_of(m, gpa, len ? len : 1);
	if (!s || !len)
		return;
	uint64_t first = s->first_page + (gpa - s->gpa) / VMM_PAGE_SIZE;
	uint64_t last = s->first_page + (gpa - s->gpa + len - 1) / VMM_PAGE_SIZE;
	for (uint64_t p = first; p <= last; p++)
		page_set__add(&m->vmm_dirty, p);
}

int mem__set_dirty_log(struct guest_mem *m, int vm_fd, bool on)
{
	if (m->dirty_log == on)
		return 0;
	m->dirty_log = on;
	dirty_log__reset_hot(m);
	for (unsigned i = 0; i < m->nr_slots; i++) {
		int ret = mem__set_slot(m, vm_fd, i);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * /proc/self/pagemap: one u64 a page of our address space; bit 63 present,
 * bit 62 swapped. Guest RAM is private anonymous memory, so a page that is
 * neither has not been written since it was mapped or discarded
 * (MADV_DONTNEED), and reads as zeros.
 */
int64_t mem__populated(struct guest_mem *m, uint64_t *bitmap)
{
	enum { BATCH = 4096 };
	uint64_t entries[BATCH];
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int64_t set = 0;

	if (fd < 0)
		return -errno;
	for (unsigned i = 0; i < m->nr_slots; i++) {
		const struct mem_slot *s = &m->slots[i];
		uint64_t pages = s->size / VMM_PAGE_SIZE, vpn = (uintptr_t)s->host / VMM_PAGE_SIZE;
		for (uint64_t done = 0; done < pages;) {
			size_t n = pages - done < BATCH ? (size_t)(pages - done) : BATCH;
			ssize_t got = pread(fd, entries, n * 8, (off_t)((vpn + done) * 8));
			if (got != (ssize_t)(n * 8)) {
				int ret = got < 0 ? -errno : -EIO;
				close(fd);
				return ret;
			}
			for (size_t k = 0; k < n; k++) {
				if (!(entries[k] >> 62))
					continue;
				uint64_t p = s->first_page + done + k;
				bitmap[p / 64] |= 1ull << (p % 64);
				set++;
			}
			done += n;
		}
	}
	close(fd);
	return set;
}

int mem__zero(struct guest_mem *m)
{
	for (unsigned i = 0; i < m->nr_slots; i++)
		if (madvise(m->slots[i].host, m->slots[i].size, MADV_DONTNEED) < 0)
			return -errno;
	page_set__clear(&m->vmm_dirty);
	return 0;
}
