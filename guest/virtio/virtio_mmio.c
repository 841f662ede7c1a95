/*
 * virtio-mmio transport, driven entirely from ring 3 without interrupts.
 * Every register access is a VM exit, so the paths here touch as few
 * registers as the spec allows; the rings themselves are plain memory.
 */
#include "virtio/virtio_mmio.h"

#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/time.h"
#include "lib/x86.h"

/* Register offsets (virtio 1.x 4.2.2). */
#define R_MAGIC          0x000
#define R_VERSION        0x004
#define R_DEVICE_ID      0x008
#define R_DEV_FEATURES   0x010
#define R_DEV_FEAT_SEL   0x014
#define R_DRV_FEATURES   0x020
#define R_DRV_FEAT_SEL   0x024
#define R_QUEUE_SEL      0x030
#define R_QUEUE_NUM_MAX  0x034
#define R_QUEUE_NUM      0x038
#define R_QUEUE_READY    0x044
#define R_QUEUE_NOTIFY   0x050
#define R_STATUS         0x070
#define R_QUEUE_DESC_LO  0x080
#define R_QUEUE_DESC_HI  0x084
#define R_QUEUE_AVAIL_LO 0x090
#define R_QUEUE_AVAIL_HI 0x094
#define R_QUEUE_USED_LO  0x0a0
#define R_QUEUE_USED_HI  0x0a4
#define R_CONFIG_GEN     0x0fc
#define R_CONFIG         0x100

#define MAGIC_VIRT       0x74726976u /* "virt" */

#define S_ACKNOWLEDGE    1
#define S_DRIVER         2
#define S_DRIVER_OK      4
#define S_FEATURES_OK    8
#define S_FAILED         128

static inline uint32_t rd(struct virtio_dev *d, uint32_t off)
{
	return *(volatile uint32_t *)(d->base + off);
}

static inline void wr(struct virtio_dev *d, uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(d->base + off) = v;
}

/* What the one scan of the slots found (device id 0 = empty slot). */
static struct {
	uint32_t device_id;
	uint32_t version;
} slots[VIRTIO_MMIO_SLOTS];
static bool scanned;

static void scan(void)
{
	for (int i = 0; i < VIRTIO_MMIO_SLOTS; i++) {
		struct virtio_dev d = {
			.base = VIRTIO_MMIO_BASE + (uintptr_t)i * VIRTIO_MMIO_STRIDE,
		};
		/* Magic first: an empty ftvm slot costs one exit. */
		if (rd(&d, R_MAGIC) != MAGIC_VIRT)
			continue;
		slots[i].device_id = rd(&d, R_DEVICE_ID);
		if (slots[i].device_id)
			slots[i].version = rd(&d, R_VERSION);
	}
	scanned = true;
}

int virtio_probe(uint32_t device_id, struct virtio_dev *out, int max)
{
	int n = 0;

	/* Every register read is a VM exit: scan the slots only once. */
	if (!scanned)
		scan();
	for (int i = 0; i < VIRTIO_MMIO_SLOTS && n < max; i++) {
		if (slots[i].device_id != device_id)
			continue;
		if (slots[i].version != 2) {
			printf("ftvm-guest: virtio-mmio slot %d: device %u has version %u, "
			       "need 2 (QEMU: -global virtio-mmio.force-legacy=false)\n",
			       i, device_id, slots[i].version);
			continue;
		}
		out[n].base = VIRTIO_MMIO_BASE + (uintptr_t)i * VIRTIO_MMIO_STRIDE;
		out[n].slot = i;
		out[n].device_id = device_id;
		out[n].features = 0;
		n++;
	}
	return n;
}

int virtio_begin_init(struct virtio_dev *d, uint64_t wanted)
{
	/* Reset, and wait for the device to acknowledge it (reads 0). */
	wr(d, R_STATUS, 0);
	for (int i = 0; rd(d, R_STATUS) != 0; i++) {
		if (i > 1000000)
			return -EIO;
		cpu_relax();
	}
	wr(d, R_STATUS, S_ACKNOWLEDGE);
	wr(d, R_STATUS, S_ACKNOWLEDGE | S_DRIVER);

	wr(d, R_DEV_FEAT_SEL, 0);
	uint64_t offered = rd(d, R_DEV_FEATURES);
	wr(d, R_DEV_FEAT_SEL, 1);
	offered |= (uint64_t)rd(d, R_DEV_FEATURES) << 32;
	if (!(offered & VIRTIO_F_VERSION_1)) {
		virtio_fail(d);
		return -ENOTSUP;
	}
	d->features = offered & wanted;
	wr(d, R_DRV_FEAT_SEL, 0);
	wr(d, R_DRV_FEATURES, (uint32_t)d->features);
	wr(d, R_DRV_FEAT_SEL, 1);
	wr(d, R_DRV_FEATURES, (uint32_t)(d->features >> 32));

	wr(d, R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
	if (!(rd(d, R_STATUS) & S_FEATURES_OK)) {
		virtio_fail(d);
		return -ENOTSUP;
	}
	return 0;
}

int virtio_queue_init(struct virtio_dev *d, struct virtq *q, uint16_t index,
		      struct virtq_mem *mem, uint16_t max_size)
{
	wr(d, R_QUEUE_SEL, index);
	if (rd(d, R_QUEUE_READY))
		return -EBUSY;
	uint32_t nmax = rd(d, R_QUEUE_NUM_MAX);
	if (nmax == 0)
		return -ENODEV;
	uint32_t n = nmax < max_size ? nmax : max_size;
	if (n > VIRTQ_MAX_SIZE)
		n = VIRTQ_MAX_SIZE;
	/* Split rings want a power of two. */
	while (n & (n - 1))
		n &= n - 1;

	memset(mem, 0, sizeof(*mem));
	/* We poll; ask the device not to bother raising interrupts. */
	mem->avail.flags = VIRTQ_AVAIL_F_NO_INTERRUPT;

	q->dev = d;
	q->index = index;
	q->size = (uint16_t)n;
	q->avail_idx = 0;
	q->used_idx = 0;
	q->mem = mem;

	uint64_t desc = (uintptr_t)mem->desc;
	uint64_t avail = (uintptr_t)&mem->avail;
	uint64_t used = (uintptr_t)&mem->used;
	wr(d, R_QUEUE_NUM, n);
	wr(d, R_QUEUE_DESC_LO, (uint32_t)desc);
	wr(d, R_QUEUE_DESC_HI, (uint32_t)(desc >> 32));
	wr(d, R_QUEUE_AVAIL_LO, (uint32_t)avail);
	wr(d, R_QUEUE_AVAIL_HI, (uint32_t)(avail >> 32));
	wr(d, R_QUEUE_USED_LO, (uint32_t)used);
	wr(d, R_QUEUE_USED_HI, (uint32_t)(used >> 32));
	wr(d, R_QUEUE_READY, 1);
	return 0;
}

void virtio_driver_ok(struct virtio_dev *d)
{
	wr(d, R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

void virtio_fail(struct virtio_dev *d)
{
	wr(d, R_STATUS, rd(d, R_STATUS) | S_FAILED);
}

uint8_t virtio_cfg_read8(struct virtio_dev *d, uint32_t off)
{
	return *(volatile uint8_t *)(d->base + R_CONFIG + off);
}

uint32_t virtio_cfg_read32(struct virtio_dev *d, uint32_t off)
{
	return rd(d, R_CONFIG + off);
}

uint64_t virtio_cfg_read64(struct virtio_dev *d, uint32_t off)
{
	uint32_t gen, lo, hi;

	do {
		gen = rd(d, R_CONFIG_GEN);
		lo = rd(d, R_CONFIG + off);
		hi = rd(d, R_CONFIG + off + 4);
	} while (rd(d, R_CONFIG_GEN) != gen);
	return ((uint64_t)hi << 32) | lo;
}

void virtq_push(struct virtq *q, uint16_t head)
{
	q->mem->avail.ring[q->avail_idx & (q->size - 1)] = head;
	q->avail_idx++;
}

void virtq_kick(struct virtq *q)
{
	volatile struct virtq_avail *av = &q->mem->avail;

	/* Descriptors and ring entries before the index... */
	barrier();
	av->idx = q->avail_idx;
	/* ...and the index before the doorbell, and before we read the
	 * device's NO_NOTIFY hint (it may change concurrently). */
	mb();
	if (!(((volatile struct virtq_used *)&q->mem->used)->flags & VIRTQ_USED_F_NO_NOTIFY))
		wr(q->dev, R_QUEUE_NOTIFY, q->index);
}

bool virtq_pop_used(struct virtq *q, uint16_t *id, uint32_t *len)
{
	volatile struct virtq_used *u = &q->mem->used;

	if (u->idx == q->used_idx)
		return false;
	/* Read the entry only after seeing the index that covers it. */
	barrier();
	const volatile struct virtq_used_elem *e = &u->ring[q->used_idx & (q->size - 1)];
	*id = (uint16_t)e->id;
	*len = e->len;
	q->used_idx++;
	return true;
}

int virtq_wait_used(struct virtq *q, uint16_t *id, uint32_t *len,
		    uint64_t timeout_us)
{
	if (virtq_pop_used(q, id, len))
		return 0;
	uint64_t deadline = rdtsc() + us_to_tsc(timeout_us);
	for (;;) {
		for (int i = 0; i < 1000; i++) {
			if (virtq_pop_used(q, id, len))
				return 0;
			cpu_relax();
		}
		if ((int64_t)(rdtsc() - deadline) > 0)
			return virtq_pop_used(q, id, len) ? 0 : -ETIMEDOUT;
	}
}
