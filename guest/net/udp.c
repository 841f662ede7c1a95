/* UDP: checksums verified when present and always computed on send. */
#include "net/net.h"

#include "lib/errno.h"
#include "lib/string.h"
#include "lib/x86.h"

#define MAX_BINDINGS 4

static struct {
	uint16_t port;
	udp_handler_fn fn;
} bindings[MAX_BINDINGS];

/* Sum of the pseudo-header (RFC 768). */
static uint32_t pseudo_sum(uint32_t src, uint32_t dst, size_t udp_len)
{
	uint8_t ph[12];

	put_be32(ph, src);
	put_be32(ph + 4, dst);
	ph[8] = 0;
	ph[9] = IP_PROTO_UDP;
	put_be16(ph + 10, (uint16_t)udp_len);
	return inet_csum_add(ph, sizeof(ph), 0);
}

int udp_bind(uint16_t port, udp_handler_fn fn)
{
	for (int i = 0; i < MAX_BINDINGS; i++) {
		if (!bindings[i].fn || bindings[i].port == port) {
			bindings[i].port = port;
			bindings[i].fn = fn;
			return 0;
		}
	}
	return -ENOSPC;
}

void udp_input(const uint8_t *src_mac, uint32_t src_ip, uint32_t dst_ip,
	       const uint8_t *p, size_t len)
{
	if (len < UDP_HLEN) {
		netif.rx_dropped++;
		return;
	}
	size_t ulen = get_be16(p + 4);
	if (ulen < UDP_HLEN || ulen > len) {
		netif.rx_dropped++;
		return;
	}
	if (get_be16(p + 6) != 0 &&
	    inet_csum(p, ulen, pseudo_sum(src_ip, dst_ip, ulen)) != 0) {
		netif.rx_dropped++;
		return;
	}
	uint16_t dport = get_be16(p + 2);
	for (int i = 0; i < MAX_BINDINGS; i++) {
		if (bindings[i].fn && bindings[i].port == dport) {
			struct udp_peer from;
			memcpy(from.mac, src_mac, 6);
			from.ip = src_ip;
			from.port = get_be16(p);
			from.local_port = dport;
			bindings[i].fn(&from, p + UDP_HLEN, ulen - UDP_HLEN);
			return;
		}
	}
	netif.rx_dropped++; /* no ICMP port-unreachable: not needed */
}

int udp_reply(const struct udp_peer *to, const void *data, size_t len)
{
	if (len > UDP_MAX_PAYLOAD)
		return -EINVAL;
	uint8_t *u = net_tx_frame() + ETH_HLEN + IP_HLEN;
	size_t ulen = UDP_HLEN + len;

	put_be16(u, to->local_port);
	put_be16(u + 2, to->port);
	put_be16(u + 4, (uint16_t)ulen);
	put_be16(u + 6, 0);
	memmove(u + UDP_HLEN, data, len);
	uint16_t c = inet_csum(u, ulen, pseudo_sum(netif.ip, to->ip, ulen));
	put_be16(u + 6, c ? c : 0xffff); /* 0 would mean "no checksum" */
	return ipv4_send(to->mac, to->ip, IP_PROTO_UDP, ulen);
}
