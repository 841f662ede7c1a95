/* Ethernet framing, the shared TX buffer and the poll loop. */
#include "net/net.h"

#include "lib/printf.h"
#include "lib/string.h"
#include "lib/x86.h"
#include "virtio/net.h"

struct netif netif;

static uint8_t txframe[NET_MTU_FRAME] __attribute__((aligned(16)));
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

uint8_t *net_tx_frame(void)
{
	return txframe;
}

void net_init(uint32_t ip, int prefix, uint32_t gw)
{
	memcpy(netif.mac, vnet_mac(), 6);
	netif.ip = ip;
	netif.prefix = prefix;
	netif.gw = gw;
	/* Let switches and neighbours learn where we are (and, after a
	 * failover, that we moved). */
	arp_announce();
}

void eth_input(const uint8_t *f, size_t len)
{
	netif.rx_frames++;
	if (len < ETH_HLEN ||
	    (memcmp(f, netif.mac, 6) != 0 && memcmp(f, bcast, 6) != 0)) {
		netif.rx_dropped++;
		return;
	}
	switch (get_be16(f + 12)) {
	case ETH_TYPE_ARP:
		arp_input(f + ETH_HLEN, len - ETH_HLEN);
		break;
	case ETH_TYPE_IPV4:
		ipv4_input(f + 6, f + ETH_HLEN, len - ETH_HLEN);
		break;
	default:
		netif.rx_dropped++;
		break;
	}
}

int eth_send(const uint8_t dst[6], uint16_t type, size_t payload_len)
{
	size_t len = ETH_HLEN + payload_len;

	memcpy(txframe, dst, 6);
	memcpy(txframe + 6, netif.mac, 6);
	put_be16(txframe + 12, type);
	/* Pad to the Ethernet minimum (60 bytes without FCS) like a NIC would;
	 * some bridges drop runts. */
	if (len < 60) {
		memset(txframe + len, 0, 60 - len);
		len = 60;
	}
	int r = vnet_send(txframe, len);
	if (r)
		netif.tx_errors++;
	else
		netif.tx_frames++;
	return r;
}

int net_poll(int budget)
{
	return vnet_poll(eth_input, budget);
}
