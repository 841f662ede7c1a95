/*
 * lwIP's network interface on the guest's polled virtio-net driver: frames
 * the driver received go to lwIP's Ethernet input as pbufs; what lwIP sends
 * (one contiguous pbuf: LWIP_NETIF_TX_SINGLE_PBUF) is copied into a TX
 * buffer of the driver.
 */
#include "net/net.h"

#include <stdbool.h>

#include "lib/errno.h"
#include "lib/string.h"
#include "lwip/etharp.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "netif/ethernet.h"
#include "virtio/net.h"

struct net_counters net_stats;
static struct netif *rx_nif;

static err_t link_output(struct netif *nif, struct pbuf *p)
{
	(void)nif;
	uint8_t frame[NET_MTU_FRAME];
	if (p->tot_len > sizeof(frame)) {
		net_stats.tx_errors++;
		return ERR_BUF;
	}
	pbuf_copy_partial(p, frame, p->tot_len, 0);
	int r = vnet_send(frame, p->tot_len);
	if (r) {
		/* A full TX queue: TCP retransmits; a UDP answer is lost as
		 * on a real NIC, and the client asks again. */
		net_stats.tx_errors++;
		return r == -EAGAIN ? ERR_WOULDBLOCK : ERR_IF;
	}
	net_stats.tx_frames++;
	return ERR_OK;
}

int8_t netif_virtio_init(struct netif *nif)
{
	nif->name[0] = 'v';
	nif->name[1] = 'n';
	nif->output = etharp_output;
	nif->linkoutput = link_output;
	nif->mtu = 1500;
	nif->hwaddr_len = ETH_HWADDR_LEN;
	memcpy(nif->hwaddr, vnet_mac(), ETH_HWADDR_LEN);
	nif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
	return ERR_OK;
}

/*
 * What lwIP is not handed: frames for another host's MAC (a bridge floods
 * them; lwIP has no MAC filter and would answer them), and ARP frames too
 * short for an ARP packet (lwIP 2.1.3's etharp_input reads the 28-byte
 * header without a length check: it would answer from stale pool bytes).
 */
static bool for_us(const uint8_t *frame, size_t len)
{
	if (len < 14)
		return false;
	bool group = frame[0] & 1;	/* broadcast or multicast */
	if (!group && memcmp(frame, vnet_mac(), 6))
		return false;
	if (frame[12] == 0x08 && frame[13] == 0x06 && len < 14 + 28)
		return false;
	return true;
}

static void rx_frame(const uint8_t *frame, size_t len)
{
	net_stats.rx_frames++;
	if (!for_us(frame, len)) {
		net_stats.rx_dropped++;
		return;
	}
	struct pbuf *p = len <= 0xffff ? pbuf_alloc(PBUF_RAW, (u16_t)len, PBUF_POOL) : NULL;
	if (!p) {
		net_stats.rx_dropped++;	/* no buffer: as a NIC out of descriptors */
		return;
	}
	pbuf_take(p, frame, (u16_t)len);
	if (rx_nif->input(p, rx_nif) != ERR_OK) {
		pbuf_free(p);
		net_stats.rx_dropped++;
	}
}

int netif_virtio_poll(struct netif *nif, int budget)
{
	rx_nif = nif;
	return vnet_poll(rx_frame, budget);
}
