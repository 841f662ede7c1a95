/* ICMP: echo replies only (so `ping` works against the guest). */
#include "net/net.h"

#include "lib/string.h"
#include "lib/x86.h"

#define ICMP_ECHO_REPLY   0
#define ICMP_ECHO_REQUEST 8
#define ICMP_HLEN         8

void icmp_input(const uint8_t *src_mac, uint32_t src_ip, const uint8_t *p,
		size_t len)
{
	if (len < ICMP_HLEN || inet_csum(p, len, 0) != 0) {
		netif.rx_dropped++;
		return;
	}
	if (p[0] != ICMP_ECHO_REQUEST || p[1] != 0)
		return;
	if (len > 1514 - ETH_HLEN - IP_HLEN)
		return;
	uint8_t mac[6];
	memcpy(mac, src_mac, 6); /* src_mac points into the RX buffer */
	uint8_t *r = net_tx_frame() + ETH_HLEN + IP_HLEN;
	memcpy(r, p, len); /* same id, sequence and data */
	r[0] = ICMP_ECHO_REPLY;
	put_be16(r + 2, 0);
	put_be16(r + 2, inet_csum(r, len, 0));
	ipv4_send(mac, src_ip, IP_PROTO_ICMP, len);
}
