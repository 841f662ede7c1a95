/*
 * queue.c - split virtqueues (virtio 1.x section 2.7). Every guest address
 * is checked against guest RAM before use: a broken or hostile driver gets
 * its device marked NEEDS_RESET, never a VMM crash.
 */
#include <stdatomic.h>
#include <string.h>

#include "vmm/virtio/virtio.h"

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

static uint16_t *virtq__avail_idx(struct virtio_mmio *t, struct virtq *q)
{
	return mem__ptr(&t->vm->mem, q->avail + 2, 2);
}

unsigned virtq__pending(struct virtio_mmio *t, struct virtq *q)
{
	uint16_t *idx;

	if (!q->ready || !q->num)
		return 0;
	idx = virtq__avail_idx(t, q);
	if (!idx)
		return 0;
	uint16_t n = (uint16_t)(__atomic_load_n(idx, __ATOMIC_ACQUIRE) - q->last_avail);
	return n <= q->num ? n : 0;
}

int virtq__pop(struct virtio_mmio *t, struct virtq *q, struct vq_chain *c)
{
	struct guest_mem *m = &t->vm->mem;
	uint16_t *avail_idx = virtq__avail_idx(t, q);
	uint16_t *ring = mem__ptr(m, q->avail + 4, 2u * q->num);
	struct virtq_desc *table = mem__ptr(m, q->desc, sizeof(struct virtq_desc) * q->num);

	if (!avail_idx || !ring || !table) {
		virtio_mmio__set_needs_reset(t, "virtqueue outside guest RAM");
		return -1;
	}
	/* Acquire: the ring entry and descriptors the driver wrote before
	 * publishing idx must be visible before we read them. */
	uint16_t idx = __atomic_load_n(avail_idx, __ATOMIC_ACQUIRE);
	if (idx == q->last_avail)
		return 0;
	if ((uint16_t)(idx - q->last_avail) > q->num) {
		virtio_mmio__set_needs_reset(t, "avail index ran ahead of the ring");
		return -1;
	}
	uint16_t head = ring[q->last_avail % q->num];
	uint16_t i = head;
	c->head = head;
	c->n = 0;
	for (unsigned hops = 0;; hops++) {
		struct virtq_desc d;
		if (i >= q->num || hops >= q->num) {
			virtio_mmio__set_needs_reset(t, "descriptor chain out of range or looping");
			return -1;
		}
		memcpy(&d, &table[i], sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			virtio_mmio__set_needs_reset(t, "indirect descriptor (not offered)");
			return -1;
		}
		if (d.len) {
			void *p = mem__ptr(m, d.addr, d.len);
			if (!p || c->n >= VIRTQ_MAX_SEGS) {
				virtio_mmio__set_needs_reset(t, p ? "too many segments"
								  : "buffer outside guest RAM");
				return -1;
			}
			c->iov[c->n] = (struct iovec){ .iov_base = p, .iov_len = d.len };
			c->gpa[c->n] = d.addr;
			c->writable[c->n] = d.flags & VIRTQ_DESC_F_WRITE;
			c->n++;
		}
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		i = d.next;
	}
	q->last_avail++;
	return 1;
}

void virtq__push(struct virtio_mmio *t, struct virtq *q, uint16_t head, uint32_t len)
{
	struct guest_mem *m = &t->vm->mem;
	uint64_t elem_gpa = q->used + 4 + sizeof(struct virtq_used_elem) * (q->used_idx % q->num);
	struct virtq_used_elem *elem = mem__ptr(m, elem_gpa, sizeof(*elem));
	uint16_t *used_idx = mem__ptr(m, q->used + 2, 2);

	if (!elem || !used_idx) {
		virtio_mmio__set_needs_reset(t, "used ring outside guest RAM");
		return;
	}
	elem->id = head;
	elem->len = len;
	q->used_idx++;
	/* Release: the element (and the buffer contents) before the index. */
	__atomic_store_n(used_idx, q->used_idx, __ATOMIC_RELEASE);
	mem__mark_dirty(m, elem_gpa, sizeof(*elem));
	mem__mark_dirty(m, q->used + 2, 2);
	t->r.interrupt_status |= 1;
}

/*
 * Copies between a flat buffer and the chain's segments of one direction,
 * starting `skip` bytes into them. Returns the bytes copied; segments
 * written (device-writable ones) are marked dirty.
 */
static size_t vq_chain__copy(struct virtio_mmio *t, const struct vq_chain *c, bool writable,
			     size_t skip, uint8_t *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < c->n && done < len; i++) {
		if (c->writable[i] != writable)
			continue;
		size_t seg = c->iov[i].iov_len;
		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		size_t n = seg - skip < len - done ? seg - skip : len - done;
		uint8_t *p = (uint8_t *)c->iov[i].iov_base + skip;
		if (writable) {
			memcpy(p, buf + done, n);
			mem__mark_dirty(&t->vm->mem, c->gpa[i] + skip, n);
		} else {
			memcpy(buf + done, p, n);
		}
		done += n;
		skip = 0;
	}
	return done;
}

size_t vq_chain__write(struct virtio_mmio *t, struct vq_chain *c, size_t skip,
		       const void *data, size_t len)
{
	return vq_chain__copy(t, c, true, skip, (uint8_t *)(uintptr_t)data, len);
}

size_t vq_chain__read(const struct vq_chain *c, size_t skip, void *data, size_t len)
{
	return vq_chain__copy(NULL, c, false, skip, data, len);
}
