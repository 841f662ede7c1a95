/*
 * mmio.c - the virtio-mmio transport (virtio 1.x, "modern", version 2),
 * at the QEMU microvm addresses: VIRTIO_MMIO_BASE + slot * 0x200.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/state/state.h"
#include "vmm/virtio/virtio.h"

enum {
	REG_MAGIC = 0x000, REG_VERSION = 0x004, REG_DEVICE_ID = 0x008, REG_VENDOR_ID = 0x00c,
	REG_DEVICE_FEATURES = 0x010, REG_DEVICE_FEATURES_SEL = 0x014,
	REG_DRIVER_FEATURES = 0x020, REG_DRIVER_FEATURES_SEL = 0x024,
	REG_QUEUE_SEL = 0x030, REG_QUEUE_NUM_MAX = 0x034, REG_QUEUE_NUM = 0x038,
	REG_QUEUE_READY = 0x044, REG_QUEUE_NOTIFY = 0x050,
	REG_INTERRUPT_STATUS = 0x060, REG_INTERRUPT_ACK = 0x064, REG_STATUS = 0x070,
	REG_QUEUE_DESC_LOW = 0x080, REG_QUEUE_DESC_HIGH = 0x084,
	REG_QUEUE_DRIVER_LOW = 0x090, REG_QUEUE_DRIVER_HIGH = 0x094,
	REG_QUEUE_DEVICE_LOW = 0x0a0, REG_QUEUE_DEVICE_HIGH = 0x0a4,
	REG_CONFIG_GENERATION = 0x0fc, REG_CONFIG = 0x100,
};

#define VIRTIO_MMIO_MAGIC 0x74726976u	/* "virt" */
#define VIRTIO_VENDOR_FTVM 0x4d565446u	/* "FTVM" */

static struct virtq *mmio__cur_queue(struct virtio_mmio *t)
{
	if (t->r.queue_sel >= t->ops->nr_queues)
		return NULL;
	return &t->r.vq[t->r.queue_sel];
}

static void mmio__reset(struct virtio_mmio *t)
{
	memset(&t->r, 0, sizeof(t->r));
	if (t->ops->reset)
		t->ops->reset(t);
}

static void mmio__read(void *dev, uint64_t off, void *data, unsigned size)
{
	struct virtio_mmio *t = dev;
	struct virtq *q = mmio__cur_queue(t);
	uint32_t v = 0;

	if (off >= REG_CONFIG) {
		memset(data, 0, size);
		if (t->ops->config_read)
			t->ops->config_read(t, off - REG_CONFIG, data, size);
		return;
	}
	if (size != 4) {	/* the spec requires 32-bit access to registers */
		memset(data, 0xff, size);
		return;
	}
	switch (off) {
	case REG_MAGIC: v = VIRTIO_MMIO_MAGIC; break;
	case REG_VERSION: v = 2; break;
	case REG_DEVICE_ID: v = t->ops->device_id; break;
	case REG_VENDOR_ID: v = VIRTIO_VENDOR_FTVM; break;
	case REG_DEVICE_FEATURES: {
		uint64_t f = t->ops->features | (1ull << VIRTIO_F_VERSION_1);
		v = t->r.device_features_sel == 0 ? (uint32_t)f :
		    t->r.device_features_sel == 1 ? (uint32_t)(f >> 32) : 0;
		break;
	}
	case REG_QUEUE_NUM_MAX: v = q ? VIRTQ_MAX_SIZE : 0; break;
	case REG_QUEUE_READY: v = q ? q->ready : 0; break;
	case REG_INTERRUPT_STATUS: v = t->r.interrupt_status; break;
	case REG_STATUS: v = t->r.status; break;
	case REG_CONFIG_GENERATION: v = t->r.config_generation; break;
	default: v = 0; break;
	}
	memcpy(data, &v, 4);
}

static void set_low(uint64_t *r, uint32_t v) { *r = (*r & ~0xffffffffull) | v; }
static void set_high(uint64_t *r, uint32_t v) { *r = (*r & 0xffffffffull) | ((uint64_t)v << 32); }

static void mmio__write(void *dev, uint64_t off, const void *data, unsigned size)
{
	struct virtio_mmio *t = dev;
	struct virtq *q = mmio__cur_queue(t);
	uint32_t v;

	if (off >= REG_CONFIG || size != 4)
		return;	/* our devices' config space is read-only */
	memcpy(&v, data, 4);
	/* Queue layout may only change while the queue is not ready (spec 4.2.2.2). */
	bool q_writable = q && !q->ready;
	switch (off) {
	case REG_DEVICE_FEATURES_SEL: t->r.device_features_sel = v; break;
	case REG_DRIVER_FEATURES_SEL: t->r.driver_features_sel = v; break;
	case REG_DRIVER_FEATURES:
		if (t->r.status & VIRTIO_STATUS_FEATURES_OK)
			break;
		if (t->r.driver_features_sel == 0)
			set_low(&t->r.driver_features, v);
		else if (t->r.driver_features_sel == 1)
			set_high(&t->r.driver_features, v);
		break;
	case REG_QUEUE_SEL: t->r.queue_sel = v; break;
	case REG_QUEUE_NUM:
		/* split rings: any size up to the max; we require a power of 2 */
		if (q_writable && v && v <= VIRTQ_MAX_SIZE && !(v & (v - 1)))
			q->num = (uint16_t)v;
		break;
	case REG_QUEUE_READY:
		if (q) {
			q->ready = v & 1;
			if (q->ready && !q->num) {
				q->ready = 0;
				virtio_mmio__set_needs_reset(t, "queue made ready without a size");
			}
		}
		break;
	case REG_QUEUE_NOTIFY:
		if (v < t->ops->nr_queues && t->r.vq[v].ready &&
		    (t->r.status & VIRTIO_STATUS_DRIVER_OK) &&
		    !(t->r.status & VIRTIO_STATUS_NEEDS_RESET))
			t->ops->notify(t, v);
		break;
	case REG_INTERRUPT_ACK: t->r.interrupt_status &= ~v; break;
	case REG_STATUS:
		if (v == 0) {
			mmio__reset(t);
			break;
		}
		if ((v & VIRTIO_STATUS_FEATURES_OK) && !(t->r.status & VIRTIO_STATUS_FEATURES_OK)) {
			uint64_t offered = t->ops->features | (1ull << VIRTIO_F_VERSION_1);
			/* A modern device refuses drivers that did not accept
			 * VERSION_1 or that accepted what we never offered. */
			if (!(t->r.driver_features & (1ull << VIRTIO_F_VERSION_1)) ||
			    (t->r.driver_features & ~offered))
				v &= ~VIRTIO_STATUS_FEATURES_OK;
		}
		t->r.status = v | (t->r.status & VIRTIO_STATUS_NEEDS_RESET);
		break;
	case REG_QUEUE_DESC_LOW: if (q_writable) set_low(&q->desc, v); break;
	case REG_QUEUE_DESC_HIGH: if (q_writable) set_high(&q->desc, v); break;
	case REG_QUEUE_DRIVER_LOW: if (q_writable) set_low(&q->avail, v); break;
	case REG_QUEUE_DRIVER_HIGH: if (q_writable) set_high(&q->avail, v); break;
	case REG_QUEUE_DEVICE_LOW: if (q_writable) set_low(&q->used, v); break;
	case REG_QUEUE_DEVICE_HIGH: if (q_writable) set_high(&q->used, v); break;
	default: break;
	}
}

void virtio_mmio__set_needs_reset(struct virtio_mmio *t, const char *why)
{
	if (!(t->r.status & VIRTIO_STATUS_NEEDS_RESET))
		fprintf(stderr, "ftvm: %s: guest driver error: %s; device needs reset\n",
			t->ops->name, why);
	t->r.status |= VIRTIO_STATUS_NEEDS_RESET;
	t->r.interrupt_status |= 2;	/* configuration change */
}

int virtio_mmio__create(struct vm *vm, unsigned slot, const struct virtio_dev_ops *ops,
			void *priv, struct virtio_mmio **out)
{
	struct virtio_mmio *t;
	int ret;

	if (slot >= VIRTIO_MMIO_SLOTS || ops->nr_queues > VIRTIO_MAX_QUEUES)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->vm = vm;
	t->ops = ops;
	t->slot = slot;
	t->base = VIRTIO_MMIO_BASE + slot * VIRTIO_MMIO_SIZE;
	t->priv = priv;
	ret = io_bus__register(&vm->mmio, &(struct io_handler){
		.base = t->base, .len = VIRTIO_MMIO_SIZE, .read = mmio__read,
		.write = mmio__write, .dev = t });
	if (ret) {
		free(t);
		return ret;
	}
	*out = t;
	return 0;
}

void virtio_mmio__destroy(struct virtio_mmio *t)
{
	if (t->ops->destroy)
		t->ops->destroy(t);
	free(t);
}

/* ---- saved state ------------------------------------------------------- */

static const struct vmstate_field virtq_fields[] = {
	VMSTATE_FIELD(struct virtq, num),
	VMSTATE_FIELD(struct virtq, ready),
	VMSTATE_FIELD(struct virtq, last_avail),
	VMSTATE_FIELD(struct virtq, used_idx),
	VMSTATE_FIELD(struct virtq, desc),
	VMSTATE_FIELD(struct virtq, avail),
	VMSTATE_FIELD(struct virtq, used),
};
static const struct vmstate_desc virtq_desc =
	VMSTATE_DESC("virtq", struct virtq, 1, 1, virtq_fields);

static const struct vmstate_field virtio_mmio_fields[] = {
	VMSTATE_FIELD(struct virtio_mmio_regs, device_features_sel),
	VMSTATE_FIELD(struct virtio_mmio_regs, driver_features_sel),
	VMSTATE_FIELD(struct virtio_mmio_regs, driver_features),
	VMSTATE_FIELD(struct virtio_mmio_regs, queue_sel),
	VMSTATE_FIELD(struct virtio_mmio_regs, status),
	VMSTATE_FIELD(struct virtio_mmio_regs, interrupt_status),
	VMSTATE_FIELD(struct virtio_mmio_regs, config_generation),
	VMSTATE_STRUCT_ARRAY(struct virtio_mmio_regs, vq, virtq_desc),
};
static const struct vmstate_desc virtio_mmio_desc =
	VMSTATE_DESC("virtio-mmio", struct virtio_mmio_regs, 1, 1, virtio_mmio_fields);

int virtio_mmio__save(struct virtio_mmio *t, struct sbuf *out)
{
	return vmstate__save(&virtio_mmio_desc, &t->r, out);
}

int virtio_mmio__load(struct virtio_mmio *t, const void *data, size_t len, bool check_only,
		      char *err)
{
	struct virtio_mmio_regs r = t->r;
	int ret = vmstate__load(&virtio_mmio_desc, &r, data, len, err, VMM_ERR_LEN);
	if (ret)
		return ret;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		if (r.vq[i].num > VIRTQ_MAX_SIZE || (r.vq[i].num & (r.vq[i].num - 1))) {
			snprintf(err, VMM_ERR_LEN, "%s: saved queue %u has invalid size %u",
				 t->ops->name, i, r.vq[i].num);
			return -EBADMSG;
		}
	}
	if (!check_only)
		t->r = r;
	return 0;
}
