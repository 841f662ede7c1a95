/* virtio-mmio (version 2, "modern") transport and split virtqueues, polled. */
#ifndef FTVM_GUEST_VIRTIO_MMIO_H
#define FTVM_GUEST_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stdint.h>

#define VIRTIO_MMIO_BASE   0xfeb00000u
#define VIRTIO_MMIO_STRIDE 0x200u
#define VIRTIO_MMIO_SLOTS  24

#define VIRTIO_ID_NET      1
#define VIRTIO_ID_BLOCK    2

#define VIRTIO_F_VERSION_1 (1ull << 32)

#define VIRTQ_MAX_SIZE     256

struct virtio_dev {
	uintptr_t base;
	uint32_t device_id;
	int slot;
	uint64_t features; /* negotiated */
};

/* Split virtqueue layout (virtio 1.x 2.7). */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
#define VIRTQ_DESC_F_NEXT  1
#define VIRTQ_DESC_F_WRITE 2

struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[VIRTQ_MAX_SIZE];
	uint16_t used_event;
};
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[VIRTQ_MAX_SIZE];
	uint16_t avail_event;
};
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Backing memory for one queue of up to VIRTQ_MAX_SIZE entries. */
struct virtq_mem {
	struct virtq_desc desc[VIRTQ_MAX_SIZE];
	struct virtq_avail avail;
	struct virtq_used used __attribute__((aligned(4096)));
} __attribute__((aligned(4096)));

struct virtq {
	struct virtio_dev *dev;
	uint16_t index;      /* queue number */
	uint16_t size;       /* entries, a power of two */
	uint16_t avail_idx;  /* our copy of avail.idx (next free avail slot) */
	uint16_t used_idx;   /* next used entry we will consume */
	struct virtq_mem *mem;
};

/* Finds devices with this id, in slot order; returns how many (<= max). */
int virtio_probe(uint32_t device_id, struct virtio_dev *out, int max);

/* Reset, ACKNOWLEDGE, DRIVER, then negotiates: accepts `wanted & offered`.
 * VERSION_1 is required (and must be in `wanted`). Ends with FEATURES_OK
 * checked. 0, -ENODEV (not v2), -ENOTSUP (feature refused). */
int virtio_begin_init(struct virtio_dev *d, uint64_t wanted);
/* Sets up queue `index` with at most `max_size` entries. 0, -ENODEV. */
int virtio_queue_init(struct virtio_dev *d, struct virtq *q, uint16_t index,
		      struct virtq_mem *mem, uint16_t max_size);
void virtio_driver_ok(struct virtio_dev *d);
/* Marks the device FAILED (after an init error). */
void virtio_fail(struct virtio_dev *d);

uint8_t virtio_cfg_read8(struct virtio_dev *d, uint32_t off);
uint32_t virtio_cfg_read32(struct virtio_dev *d, uint32_t off);
/* A 64-bit config field, read consistently (ConfigGeneration). */
uint64_t virtio_cfg_read64(struct virtio_dev *d, uint32_t off);

/* Puts a descriptor chain head into the avail ring (not yet visible). */
void virtq_push(struct virtq *q, uint16_t head);
/* Makes pushed entries visible to the device and notifies it. */
void virtq_kick(struct virtq *q);
/* Takes the next used entry; false if none. */
bool virtq_pop_used(struct virtq *q, uint16_t *id, uint32_t *len);
/* Waits (busy) for a used entry; 0 or -ETIMEDOUT after timeout_us. */
int virtq_wait_used(struct virtq *q, uint16_t *id, uint32_t *len,
		    uint64_t timeout_us);

#endif
