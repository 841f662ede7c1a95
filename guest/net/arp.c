/* ARP for IPv4 over Ethernet: answer who-has for our address, announce. */
#include "net/net.h"

#include "lib/string.h"
#include "lib/x86.h"

#define ARP_LEN     28
#define ARP_REQUEST 1
#define ARP_REPLY   2

static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

/* Builds an ARP packet in the TX frame and sends it. */
static int arp_send(const uint8_t eth_dst[6], uint16_t op, const uint8_t tha[6],
		    uint32_t tpa)
{
	uint8_t *a = net_tx_frame() + ETH_HLEN;

	put_be16(a + 0, 1);             /* Ethernet */
	put_be16(a + 2, ETH_TYPE_IPV4);
	a[4] = 6;
	a[5] = 4;
	put_be16(a + 6, op);
	memcpy(a + 8, netif.mac, 6);
	put_be32(a + 14, netif.ip);
	memcpy(a + 18, tha, 6);
	put_be32(a + 24, tpa);
	return eth_send(eth_dst, ETH_TYPE_ARP, ARP_LEN);
}

void arp_input(const uint8_t *p, size_t len)
{
	if (len < ARP_LEN || get_be16(p) != 1 || get_be16(p + 2) != ETH_TYPE_IPV4 ||
	    p[4] != 6 || p[5] != 4) {
		netif.rx_dropped++;
		return;
	}
	if (get_be16(p + 6) != ARP_REQUEST || !netif.ip || get_be32(p + 24) != netif.ip)
		return;
	uint8_t sha[6];
	memcpy(sha, p + 8, 6);
	arp_send(sha, ARP_REPLY, sha, get_be32(p + 14));
}

int arp_announce(void)
{
	static const uint8_t zero[6];

	if (!netif.ip)
		return 0;
	/* Gratuitous ARP: a request for our own address. */
	return arp_send(bcast, ARP_REQUEST, zero, netif.ip);
}
