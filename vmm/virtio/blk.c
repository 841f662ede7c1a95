/*
 * blk.c - virtio-blk (device id 2) over a struct disk backend.
 *
 * Requests are completed synchronously in the vCPU thread that wrote
 * QueueNotify: when a checkpoint pauses the VM there is never a block
 * request in flight, so the device has no in-flight state to save.
 * Writes and flushes reach the backend only through disk->ops: that is
 * where the event tap hooks in.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/virtio/virtio.h"

#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define SECTOR 512u

struct virtio_blk {
	struct disk *disk;
};

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* The iovecs covering bytes [skip, skip+len) of the chain's segments of one direction. */
static int blk__slice(const struct vq_chain *c, bool writable, size_t skip, size_t len,
		      struct iovec *out)
{
	int n = 0;
	for (unsigned i = 0; i < c->n && len; i++) {
		if (c->writable[i] != writable)
			continue;
		size_t seg = c->iov[i].iov_len;
		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		size_t take = seg - skip < len ? seg - skip : len;
		out[n++] = (struct iovec){ (uint8_t *)c->iov[i].iov_base + skip, take };
		len -= take;
		skip = 0;
	}
	return n;
}

static size_t blk__bytes(const struct vq_chain *c, bool writable)
{
	size_t n = 0;
	for (unsigned i = 0; i < c->n; i++)
		if (c->writable[i] == writable)
			n += c->iov[i].iov_len;
	return n;
}

static bool blk__in_range(struct disk *d, uint64_t sector, size_t len)
{
	if (sector > d->size / SECTOR)
		return false;
	return len <= d->size - sector * SECTOR && len % SECTOR == 0;
}

/* Handles one request; returns the bytes written to device-writable buffers. */
static uint32_t blk__handle(struct virtio_mmio *t, struct vq_chain *c)
{
	struct virtio_blk *b = t->priv;
	struct disk *d = b->disk;
	struct blk_req_hdr h;
	struct iovec iov[VIRTQ_MAX_SEGS];
	size_t rd = blk__bytes(c, false), wr = blk__bytes(c, true);
	uint8_t status = VIRTIO_BLK_S_OK;
	uint32_t written = 0;

	if (wr < 1 || vq_chain__read(c, 0, &h, sizeof(h)) != sizeof(h)) {
		virtio_mmio__set_needs_reset(t, "block request without header or status byte");
		return 0;
	}
	size_t in_len = wr - 1;	/* device-writable bytes before the status byte */
	size_t out_len = rd - sizeof(h);

	switch (h.type) {
	case VIRTIO_BLK_T_IN: {
		if (!blk__in_range(d, h.sector, in_len)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		int n = blk__slice(c, true, 0, in_len, iov);
		if (d->ops->read(d->be, h.sector * SECTOR, iov, n) < 0) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		for (unsigned i = 0, left = in_len; i < c->n && left; i++) {
			if (!c->writable[i])
				continue;
			size_t take = c->iov[i].iov_len < left ? c->iov[i].iov_len : left;
			mem__mark_dirty(&t->vm->mem, c->gpa[i], take);
			left -= take;
		}
		written = in_len;
		break;
	}
	case VIRTIO_BLK_T_OUT: {
		if (!blk__in_range(d, h.sector, out_len)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		int n = blk__slice(c, false, sizeof(h), out_len, iov);
		if (d->ops->write(d->be, h.sector * SECTOR, iov, n) < 0)
			status = VIRTIO_BLK_S_IOERR;
		break;
	}
	case VIRTIO_BLK_T_FLUSH:
		if (d->ops->flush(d->be) < 0)
			status = VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		char id[20] = { 0 };
		memcpy(id, d->serial, strnlen(d->serial, sizeof(id)));
		written = vq_chain__write(t, c, 0, id, in_len < sizeof(id) ? in_len : sizeof(id));
		break;
	}
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	vq_chain__write(t, c, in_len, &status, 1);
	return written + 1;
}

static void blk__notify(struct virtio_mmio *t, unsigned queue)
{
	struct virtq *q = &t->r.vq[queue];
	struct vq_chain c;

	while (virtq__pop(t, q, &c) == 1) {
		uint32_t len = blk__handle(t, &c);
		if (t->r.status & VIRTIO_STATUS_NEEDS_RESET)
			return;
		virtq__push(t, q, c.head, len);
	}
}

static void blk__config_read(struct virtio_mmio *t, uint64_t off, void *data, unsigned size)
{
	struct virtio_blk *b = t->priv;
	struct {
		uint64_t capacity;
		uint32_t size_max;
		uint32_t seg_max;
		uint8_t geometry[4];
		uint32_t blk_size;
	} __attribute__((packed)) cfg = {
		.capacity = b->disk->size / SECTOR,
		.size_max = 0,
		.seg_max = VIRTQ_MAX_SEGS - 2,
		.blk_size = SECTOR,
	};
	if (off < sizeof(cfg) && size <= sizeof(cfg) - off)
		memcpy(data, (uint8_t *)&cfg + off, size);
}

static void blk__destroy(struct virtio_mmio *t)
{
	free(t->priv);
}

static const struct virtio_dev_ops virtio_blk_ops = {
	.name = "virtio-blk",
	.device_id = 2,
	.features = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
		    (1ull << VIRTIO_BLK_F_FLUSH),
	.nr_queues = 1,
	.config_read = blk__config_read,
	.notify = blk__notify,
	.destroy = blk__destroy,
};

int virtio_blk__create(struct vm *vm, unsigned slot, struct disk *disk,
		       struct virtio_mmio **out, char *err)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	int ret;

	if (!b)
		return -ENOMEM;
	b->disk = disk;
	ret = virtio_mmio__create(vm, slot, &virtio_blk_ops, b, out);
	if (ret) {
		free(b);
		snprintf(err, VMM_ERR_LEN, "virtio-blk: %s", strerror(-ret));
	}
	return ret;
}
