/*
 * fuzz_virtio.c - libFuzzer over the virtio device models as a guest
 * driver drives them (vmm/virtio/mmio.c, queue.c, blk.c): the guest is
 * the least trusted party there is. No KVM: guest RAM is a malloc'd buffer
 * behind the VM's real memory-slot code, the disk is in memory.
 *
 * Input: u8 device (even: blk, odd: net), u16 L (at most 32 KiB), then L
 * bytes that become guest RAM from 0 (rings, descriptors, request headers,
 * data), then register accesses to the device's MMIO window: u8 op (bit 0:
 * write; bit 1 with net: deliver a frame to RX afterwards), u8 offset/4,
 * u32 value. A delivered frame is the next 64 bytes of the input's RAM
 * part. Seeds (fuzz/seeds_virtio.py) are a driver's real sequence:
 * negotiate, set up queues, post a read, a write, a flush; a frame to send,
 * buffers to receive into. Rule, besides the sanitizers: no disk write outside the disk;
 * nothing read or written outside guest RAM (the models check every guest
 * address; ASan would see a miss).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fake_vm.h"
#include "fuzz/mem_disk.h"
#include "vmm/virtio/virtio.h"

#define DISK_SIZE (32u * 4096u)

static uint8_t disk_mem[DISK_SIZE];

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

/* The NIC: frames sent are counted; one frame is waiting when `pending`. */
static const uint8_t *frame;
static bool pending;
static unsigned sent;

static int n_tx(void *be, const struct iovec *iov, int n)
{
	(void)be;
	size_t len = 0;
	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (len > 65536)
		abort();	/* more than a frame from one TX chain */
	sent++;
	return 0;
}

static ssize_t n_rx(void *be, void *buf, size_t len)
{
	(void)be;
	if (!pending)
		return -EAGAIN;
	pending = false;
	size_t n = len < 64 ? len : 64;
	memcpy(buf, frame, n);
	return (ssize_t)n;
}

static int n_rx_fd(void *be)
{
	(void)be;
	return -1;
}

static const struct net_ops n_ops = { .tx = n_tx, .rx = n_rx, .rx_fd = n_rx_fd };

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	uint8_t *ram;
	struct vm *vm = fake_vm(&ram);
	char err[VMM_ERR_LEN];

	if (n < 3)
		return 0;
	bool net = in[0] & 1;
	size_t ram_part = ((size_t)in[1] | (size_t)in[2] << 8) % 32768u;
	if (ram_part > n - 3)
		ram_part = n - 3;
	memcpy(ram, in + 3, ram_part);
	static uint8_t frame_buf[64];
	memcpy(frame_buf, in + 3, ram_part < 64 ? ram_part : 64);
	frame = frame_buf;
	ram_part += 3;
	struct disk d = { .ops = &d_ops, .size = DISK_SIZE };
	struct net nic = { .ops = &n_ops };
	static const uint8_t mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };
	struct virtio_mmio *t = NULL;
	pending = false;
	int r = net ? virtio_net__create(vm, 1, &nic, mac, &t, err) : virtio_blk__create(vm, 0, &d, &t, err);
	const struct io_handler *handler = fake_vm_handler;
	if (r || !handler)
		return 0;
	for (size_t i = ram_part; i + 6 <= n; i += 6) {
		uint32_t v;
		memcpy(&v, in + i + 2, 4);
		uint64_t off = (uint64_t)in[i + 1] * 4u % VIRTIO_MMIO_SIZE;
		if (in[i] & 1)
			handler->write(handler->dev, off, &v, 4);
		else
			handler->read(handler->dev, off, &v, 4);
		if (net && (in[i] & 2)) {
			pending = true;
			virtio_net__rx_pump(t);
		}
	}
	virtio_mmio__destroy(t);
	return 0;
}
