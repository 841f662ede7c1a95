/*
 * net.c - virtio-net (device id 1): one RX and one TX queue over a struct
 * net backend. TX is handled synchronously in the notifying vCPU (frames
 * go to net->ops->tx, where the event tap hooks in); RX is filled by the
 * VM's I/O thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/virtio/virtio.h"

#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1

#define NET_HDR_LEN 12		/* struct virtio_net_hdr_v1 */
#define NET_MAX_FRAME 65536
#define RXQ 0
#define TXQ 1

struct virtio_net {
	struct net *net;
	uint8_t mac[6];
	uint8_t frame[NET_MAX_FRAME];
	uint64_t rx_dropped, tx_dropped;
};

static void net__tx(struct virtio_mmio *t)
{
	struct virtio_net *vn = t->priv;
	struct virtq *q = &t->r.vq[TXQ];
	struct vq_chain c;

	while (virtq__pop(t, q, &c) == 1) {
		struct iovec iov[VIRTQ_MAX_SEGS];
		int n = 0;
		size_t skip = NET_HDR_LEN, total = 0;
		for (unsigned i = 0; i < c.n; i++) {
			if (c.writable[i])
				continue;
			size_t seg = c.iov[i].iov_len;
			if (skip >= seg) {
				skip -= seg;
				continue;
			}
			iov[n++] = (struct iovec){ (uint8_t *)c.iov[i].iov_base + skip, seg - skip };
			total += seg - skip;
			skip = 0;
		}
		if (total >= 14 && total <= NET_MAX_FRAME) {
			if (vn->net->ops->tx(vn->net->be, iov, n) < 0)
				vn->tx_dropped++;
		} else {
			vn->tx_dropped++;
		}
		virtq__push(t, q, c.head, 0);
	}
}

static void net__notify(struct virtio_mmio *t, unsigned queue)
{
	if (queue == TXQ)
		net__tx(t);
	else
		io_thread__kick(t->vm);	/* new RX buffers: resume polling the tap */
}

bool virtio_net__rx_has_buffers(struct virtio_mmio *t)
{
	struct virtq *q = &t->r.vq[RXQ];
	if (!(t->r.status & VIRTIO_STATUS_DRIVER_OK) || (t->r.status & VIRTIO_STATUS_NEEDS_RESET))
		return false;
	return virtq__pending(t, q) > 0;
}

int virtio_net__rx_fd(struct virtio_mmio *t)
{
	struct virtio_net *vn = t->priv;
	return vn->net->ops->rx_fd(vn->net->be);
}

int virtio_net__rx_pump(struct virtio_mmio *t)
{
	struct virtio_net *vn = t->priv;
	struct virtq *q = &t->r.vq[RXQ];
	int delivered = 0;

	while (virtio_net__rx_has_buffers(t)) {
		ssize_t len = vn->net->ops->rx(vn->net->be, vn->frame, sizeof(vn->frame));
		if (len < 0)
			break;
		struct vq_chain c;
		if (virtq__pop(t, q, &c) != 1)
			break;
		uint8_t hdr[NET_HDR_LEN] = { 0 };
		hdr[10] = 1;	/* num_buffers */
		size_t room = 0;
		for (unsigned i = 0; i < c.n; i++)
			if (c.writable[i])
				room += c.iov[i].iov_len;
		if (room < NET_HDR_LEN + (size_t)len) {
			vn->rx_dropped++;	/* buffer too small: drop, give it back empty */
			virtq__push(t, q, c.head, 0);
			continue;
		}
		vq_chain__write(t, &c, 0, hdr, sizeof(hdr));
		vq_chain__write(t, &c, NET_HDR_LEN, vn->frame, (size_t)len);
		virtq__push(t, q, c.head, NET_HDR_LEN + (uint32_t)len);
		delivered++;
	}
	return delivered;
}

static void net__config_read(struct virtio_mmio *t, uint64_t off, void *data, unsigned size)
{
	struct virtio_net *vn = t->priv;
	uint8_t cfg[8];
	uint16_t status = VIRTIO_NET_S_LINK_UP;

	memcpy(cfg, vn->mac, 6);
	memcpy(cfg + 6, &status, 2);
	if (off < sizeof(cfg) && size <= sizeof(cfg) - off)
		memcpy(data, cfg + off, size);
}

static void net__destroy(struct virtio_mmio *t)
{
	free(t->priv);
}

static const struct virtio_dev_ops virtio_net_ops = {
	.name = "virtio-net",
	.device_id = 1,
	.features = (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS),
	.nr_queues = 2,
	.config_read = net__config_read,
	.notify = net__notify,
	.destroy = net__destroy,
};

int virtio_net__create(struct vm *vm, unsigned slot, struct net *net, const uint8_t mac[6],
		       struct virtio_mmio **out, char *err)
{
	struct virtio_net *vn = calloc(1, sizeof(*vn));
	int ret;

	if (!vn)
		return -ENOMEM;
	vn->net = net;
	memcpy(vn->mac, mac, 6);
	ret = virtio_mmio__create(vm, slot, &virtio_net_ops, vn, out);
	if (ret) {
		free(vn);
		snprintf(err, VMM_ERR_LEN, "virtio-net: %s", strerror(-ret));
	}
	return ret;
}
