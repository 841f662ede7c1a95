/*
 * fuzz_virtio.c - libFuzzer over the virtio device models as a guest
 * driver drives them (vmm/virtio/mmio.c, queue.c, blk.c): the guest is
 * the least trusted party there is. No KVM: guest RAM is a malloc'd buffer
 * behind the VM's real memory-slot code, the disk is in memory.
 *
 * Input: u16 L (at most 32 KiB), then L bytes that become guest RAM from
 * 0 (rings, descriptors, request headers, data), then register accesses to
 * the device's MMIO window: u8 op (bit 0: write), u8 offset/4, u32 value.
 * Seeds (fuzz/seeds_virtio.py) are a driver's real sequence: negotiate,
 * set up a queue, post a read, a write, a flush. Rule, besides the sanitizers: no disk write outside the disk;
 * nothing read or written outside guest RAM (the models check every guest
 * address; ASan would see a miss).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vm_internal.h"
#include "vmm/virtio/virtio.h"
#include "fuzz/mem_disk.h"

#define RAM_SIZE (64u * 4096u)
#define DISK_SIZE (32u * 4096u)

static uint8_t disk_mem[DISK_SIZE];
static const struct io_handler *handler;
static struct io_handler handler_copy;

/* The MMIO bus, as the VMM's vm.c would hold it (not linked here). */
int io_bus__register(struct io_bus *bus, const struct io_handler *h)
{
	(void)bus;
	handler_copy = *h;
	handler = &handler_copy;
	return 0;
}

static int mem_rw(uint64_t off, const struct iovec *iov, int n, int write)
{
	return mem_disk_rw(disk_mem, DISK_SIZE, off, iov, n, write);
}

static int d_read(void *be, uint64_t off, const struct iovec *iov, int n)
{
	(void)be;
	return mem_rw(off, iov, n, 0);
}

static int d_write(void *be, uint64_t off, const struct iovec *iov, int n)
{
	(void)be;
	return mem_rw(off, iov, n, 1);
}

static int d_flush(void *be)
{
	(void)be;
	return 0;
}

static const struct disk_ops d_ops = { .read = d_read, .write = d_write, .flush = d_flush };

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	static struct vm vm;
	static uint8_t *ram;
	char err[VMM_ERR_LEN];

	if (!ram) {
		ram = aligned_alloc(4096, RAM_SIZE);
		vm.mem.slots[0] = (struct mem_slot){ .gpa = 0, .size = RAM_SIZE, .host = ram };
		vm.mem.nr_slots = 1;
		vm.mem.nr_pages = RAM_SIZE / VMM_PAGE_SIZE;
		if (!ram || page_set__init(&vm.mem.vmm_dirty, vm.mem.nr_pages))
			abort();
		pthread_mutex_init(&vm.dev_lock, NULL);
	}
	memset(ram, 0, RAM_SIZE);
	if (n < 2)
		return 0;
	size_t ram_part = ((size_t)in[0] | (size_t)in[1] << 8) % 32768u;
	if (ram_part > n - 2)
		ram_part = n - 2;
	memcpy(ram, in + 2, ram_part);
	ram_part += 2;
	struct disk d = { .ops = &d_ops, .size = DISK_SIZE };
	struct virtio_mmio *t = NULL;
	handler = NULL;
	if (virtio_blk__create(&vm, 0, &d, &t, err) || !handler)
		return 0;
	for (size_t i = ram_part; i + 6 <= n; i += 6) {
		uint32_t v;
		memcpy(&v, in + i + 2, 4);
		uint64_t off = (uint64_t)in[i + 1] * 4u % VIRTIO_MMIO_SIZE;
		if (in[i] & 1)
			handler->write(handler->dev, off, &v, 4);
		else
			handler->read(handler->dev, off, &v, 4);
	}
	virtio_mmio__destroy(t);
	page_set__clear(&vm.mem.vmm_dirty);
	return 0;
}
