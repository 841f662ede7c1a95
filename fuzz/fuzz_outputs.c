/*
 * fuzz_outputs.c - libFuzzer over the event tap's output list
 * (eventtap/eventtap.c et_list__*): the OUTPUTS a secondary receives with a
 * checkpoint, and applies (disk) or re-issues (disk and frames) at failover.
 *
 * Input: byte 0: the checkpoint's epoch (1..16); byte 1: the disk's size
 * in 4 KiB units (1..64); the rest: the serialized list. The disk and the
 * NIC are in memory. Rule, besides the sanitizers: a list that check
 * accepted is reserved and applied without error, and every write lands
 * inside the disk; a list that check refused is never applied (the step
 * refuses the checkpoint); re-issue of an accepted list writes and sends
 * exactly what it holds.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "eventtap/eventtap.h"
#include "fuzz/mem_disk.h"

#define MAX_DISK (64u * 4096u)

static uint8_t disk_mem[MAX_DISK];
static uint64_t disk_size;
static unsigned writes, frames;

static int mem_rw(void *be, uint64_t off, const struct iovec *iov, int n, int write)
{
	(void)be;
	return mem_disk_rw(disk_mem, disk_size, off, iov, n, write);	/* aborts past the end */
}

static int mem_read(void *be, uint64_t off, const struct iovec *iov, int n)
{
	return mem_rw(be, off, iov, n, 0);
}

static int mem_write(void *be, uint64_t off, const struct iovec *iov, int n)
{
	writes++;
	return mem_rw(be, off, iov, n, 1);
}

static int mem_flush(void *be)
{
	(void)be;
	return 0;
}

static int mem_reserve(void *be, uint64_t off, uint64_t len)
{
	(void)be;
	return off <= disk_size && len <= disk_size - off ? 0 : -EINVAL;
}

static const struct disk_ops mem_ops = {
	.read = mem_read, .write = mem_write, .flush = mem_flush, .reserve = mem_reserve,
};

static int net_tx(void *be, const struct iovec *iov, int n)
{
	(void)be;
	(void)iov;
	(void)n;
	frames++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	char err[256];
	if (n < 2)
		return 0;
	uint64_t epoch = in[0] % 16 + 1;
	disk_size = (uint64_t)(in[1] % 64 + 1) * 4096u;
	struct disk d = { .ops = &mem_ops, .size = disk_size };
	struct net nic = { .ops = &(struct net_ops){ .tx = net_tx } };
	struct eventtap *et;
	if (eventtap__create(&d, &nic, &et))
		return 0;
	const uint8_t *list = in + 2;
	size_t len = n - 2;
	if (et_list__check(list, len, epoch, disk_size, err, sizeof(err)) == 0) {
		if (et_list__reserve_disk(et, list, len, 0, err, sizeof(err)) != 0)
			abort();	/* accepted, then not reservable */
		if (et_list__apply_disk(et, list, len, 0) != 0)
			abort();	/* accepted, then not applicable */
		uint32_t f = 0, w = 0;
		writes = frames = 0;
		if (et_list__reissue(et, list, len, true, &f, &w) != 0 || f != frames)
			abort();
	}
	eventtap__destroy(et);
	return 0;
}
