/*
 * virtio.h - virtio-mmio transport, split virtqueues and the devices built
 * on them (internal to vmm/).
 */
#ifndef FTVM_VIRTIO_H
#define FTVM_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/vm_internal.h"

#define VIRTIO_F_VERSION_1 32
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

#define VIRTQ_MAX_SIZE 256
#define VIRTQ_MAX_SEGS 64
#define VIRTIO_MAX_QUEUES 2

/* One virtqueue's transport-visible state: plain data, saved as is. */
struct virtq {
	uint16_t num;
	uint16_t ready;
	uint16_t last_avail;	/* next avail ring slot the device will read */
	uint16_t used_idx;	/* next used ring slot the device will write */
	uint64_t desc, avail, used;
};

/* A descriptor chain popped from a queue, mapped to host memory. */
struct vq_chain {
	uint16_t head;
	unsigned n;
	struct iovec iov[VIRTQ_MAX_SEGS];
	uint64_t gpa[VIRTQ_MAX_SEGS];
	bool writable[VIRTQ_MAX_SEGS];
};

struct virtio_mmio;

struct virtio_dev_ops {
	const char *name;
	uint32_t device_id;
	uint64_t features;
	unsigned nr_queues;
	void (*config_read)(struct virtio_mmio *t, uint64_t off, void *data, unsigned size);
	/* Called with dev_lock held, from the vCPU that wrote QueueNotify. */
	void (*notify)(struct virtio_mmio *t, unsigned queue);
	void (*reset)(struct virtio_mmio *t);
	void (*destroy)(struct virtio_mmio *t);
};

/* Transport registers: plain data, saved through a vmstate table. */
struct virtio_mmio_regs {
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint64_t driver_features;
	uint32_t queue_sel;
	uint32_t status;
	uint32_t interrupt_status;
	uint32_t config_generation;
	struct virtq vq[VIRTIO_MAX_QUEUES];
};

struct virtio_mmio {
	struct vm *vm;
	const struct virtio_dev_ops *ops;
	uint64_t base;
	unsigned slot;
	struct virtio_mmio_regs r;
	void *priv;		/* the device model */
};

int virtio_mmio__create(struct vm *vm, unsigned slot, const struct virtio_dev_ops *ops,
			void *priv, struct virtio_mmio **out);
void virtio_mmio__destroy(struct virtio_mmio *t);
/* Marks the device broken (NEEDS_RESET) after a malformed request: the
 * guest's driver is at fault; the VMM reports and goes on. */
void virtio_mmio__set_needs_reset(struct virtio_mmio *t, const char *why);
int virtio_mmio__save(struct virtio_mmio *t, struct sbuf *out);
int virtio_mmio__load(struct virtio_mmio *t, const void *data, size_t len, bool check_only,
		      char *err);

/* Split-ring helpers. 1 = a chain was popped, 0 = queue empty, <0 malformed. */
int virtq__pop(struct virtio_mmio *t, struct virtq *q, struct vq_chain *c);
/* Number of available chains not yet popped (0 on a broken ring). */
unsigned virtq__pending(struct virtio_mmio *t, struct virtq *q);
void virtq__push(struct virtio_mmio *t, struct virtq *q, uint16_t head, uint32_t len);
/* Copies data into the chain's device-writable segments from byte `skip` on;
 * returns bytes copied; marks them dirty. */
size_t vq_chain__write(struct virtio_mmio *t, struct vq_chain *c, size_t skip,
		       const void *data, size_t len);
/* Copies from the chain's device-readable segments. */
size_t vq_chain__read(const struct vq_chain *c, size_t skip, void *data, size_t len);

/* Devices. */
int virtio_blk__create(struct vm *vm, unsigned slot, struct disk *disk,
		       struct virtio_mmio **out, char *err);
int virtio_net__create(struct vm *vm, unsigned slot, struct net *net, const uint8_t mac[6],
		       struct virtio_mmio **out, char *err);
bool virtio_net__rx_has_buffers(struct virtio_mmio *t);
int virtio_net__rx_fd(struct virtio_mmio *t);
/* Moves waiting frames into the RX queue; returns frames delivered. dev_lock held. */
int virtio_net__rx_pump(struct virtio_mmio *t);

#endif
