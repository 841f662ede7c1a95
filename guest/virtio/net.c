/*
 * virtio-net, polled. Every RX descriptor owns one fixed buffer (12-byte
 * virtio_net_hdr_v1 + a full frame) and is given back as soon as its frame
 * is handled, so the RX ring stays full. TX descriptors also own fixed
 * buffers: a frame is copied in (1.5 KB, cheap next to a VM exit) and the
 * descriptor is reclaimed from the used ring later.
 *
 * No offloads, no mergeable buffers: with VERSION_1 the header is 12 bytes
 * and (zero on TX) carries nothing we need.
 */
#include "virtio/net.h"

#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "virtio/virtio_mmio.h"

#define VIRTIO_NET_F_MAC    (1ull << 5)
#define VIRTIO_NET_F_STATUS (1ull << 16)

#define CFG_MAC      0
#define CFG_STATUS   6
#define NET_S_LINK_UP 1

#define HDR_LEN   12
#define BUF_LEN   1536 /* >= HDR_LEN + NET_MTU_FRAME, keeps buffers aligned */
#define RX_SIZE   256
#define TX_SIZE   64
#define TX_WAIT_US 1000000

#define Q_RX 0
#define Q_TX 1

static struct virtio_dev dev;
static struct virtq rxq, txq;
static struct virtq_mem rx_mem, tx_mem;
static uint8_t rx_buf[RX_SIZE][BUF_LEN] __attribute__((aligned(64)));
static uint8_t tx_buf[TX_SIZE][BUF_LEN] __attribute__((aligned(64)));
static uint16_t tx_free[TX_SIZE]; /* stack of free TX descriptor ids */
static int tx_nfree;
static uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xf7, 0x00, 0x01 };
static int have_dev;

int vnet_init(void)
{
	if (virtio_probe(VIRTIO_ID_NET, &dev, 1) < 1)
		return -ENODEV;
	int r = virtio_begin_init(&dev, VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC |
					      VIRTIO_NET_F_STATUS);
	if (r)
		return r;
	r = virtio_queue_init(&dev, &rxq, Q_RX, &rx_mem, RX_SIZE);
	if (!r)
		r = virtio_queue_init(&dev, &txq, Q_TX, &tx_mem, TX_SIZE);
	if (r) {
		virtio_fail(&dev);
		return r;
	}
	if (dev.features & VIRTIO_NET_F_MAC) {
		for (int i = 0; i < 6; i++)
			mac[i] = virtio_cfg_read8(&dev, CFG_MAC + (uint32_t)i);
	}

	/* RX: every descriptor gets its buffer and goes in the avail ring. */
	for (uint16_t i = 0; i < rxq.size; i++) {
		struct virtq_desc *d = &rx_mem.desc[i];
		d->addr = (uintptr_t)rx_buf[i];
		d->len = BUF_LEN;
		d->flags = VIRTQ_DESC_F_WRITE;
		d->next = 0;
		virtq_push(&rxq, i);
	}
	/* TX: descriptors are linked to their buffers once, filled per send. */
	tx_nfree = 0;
	for (uint16_t i = 0; i < txq.size; i++) {
		struct virtq_desc *d = &tx_mem.desc[i];
		d->addr = (uintptr_t)tx_buf[i];
		d->flags = 0;
		d->next = 0;
		tx_free[tx_nfree++] = i;
	}
	virtio_driver_ok(&dev);
	/* Buffers may only be offered once the device is live. */
	virtq_kick(&rxq);
	have_dev = 1;
	printf("ftvm-guest: net slot %d mac %02x:%02x:%02x:%02x:%02x:%02x%s\n", dev.slot,
	       mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
	       (dev.features & VIRTIO_NET_F_MAC) ? "" : " (default)");
	return 0;
}

int vnet_slot(void)
{
	return have_dev ? dev.slot : -1;
}

const uint8_t *vnet_mac(void)
{
	return mac;
}

int vnet_link_up(void)
{
	if (!(dev.features & VIRTIO_NET_F_STATUS))
		return 1;
	return virtio_cfg_read8(&dev, CFG_STATUS) & NET_S_LINK_UP;
}

static void tx_reclaim(void)
{
	uint16_t id;
	uint32_t len;

	while (virtq_pop_used(&txq, &id, &len)) {
		if (id < txq.size && tx_nfree < TX_SIZE)
			tx_free[tx_nfree++] = id;
	}
}

int vnet_send(const void *frame, size_t len)
{
	if (!have_dev)
		return -ENODEV;
	if (len > NET_MTU_FRAME)
		return -EINVAL;
	tx_reclaim();
	if (tx_nfree == 0) {
		/* All in flight (QEMU sends asynchronously): wait for one. */
		uint16_t id;
		uint32_t ulen;
		if (virtq_wait_used(&txq, &id, &ulen, TX_WAIT_US))
			return -EAGAIN;
		tx_free[tx_nfree++] = id;
	}
	uint16_t id = tx_free[--tx_nfree];
	uint8_t *b = tx_buf[id];
	memset(b, 0, HDR_LEN);
	memcpy(b + HDR_LEN, frame, len);
	tx_mem.desc[id].len = (uint32_t)(HDR_LEN + len);
	virtq_push(&txq, id);
	virtq_kick(&txq);
	return 0;
}

int vnet_poll(vnet_rx_fn fn, int budget)
{
	uint16_t id;
	uint32_t len;
	int n = 0;

	if (!have_dev)
		return 0;
	while (n < budget && virtq_pop_used(&rxq, &id, &len)) {
		n++;
		if (id >= rxq.size)
			continue; /* a broken device; nothing sane to give back */
		if (len > HDR_LEN && len <= BUF_LEN)
			fn(rx_buf[id] + HDR_LEN, len - HDR_LEN);
		virtq_push(&rxq, id);
	}
	/* One doorbell for the whole batch of returned buffers. */
	if (n)
		virtq_kick(&rxq);
	return n;
}
