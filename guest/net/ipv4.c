/* IPv4: header checks and checksums, no fragments, no options on send. */
#include "net/net.h"

#include "lib/string.h"
#include "lib/x86.h"

#define IP_FLAG_MF   0x2000
#define IP_FLAG_DF   0x4000
#define IP_FRAG_MASK 0x1fff
#define IP_TTL       64

static uint16_t ip_id;

/* One's-complement sum of big-endian 16-bit words, not folded. */
uint32_t inet_csum_add(const void *data, size_t len, uint32_t sum)
{
	const uint8_t *p = data;
	uint64_t s = sum;

	for (; len >= 2; p += 2, len -= 2)
		s += (uint32_t)((p[0] << 8) | p[1]);
	if (len)
		s += (uint32_t)(p[0] << 8);
	while (s >> 32)
		s = (s & 0xffffffff) + (s >> 32);
	return (uint32_t)s;
}

/* The Internet checksum (RFC 1071) of data, starting from a partial sum. */
uint16_t inet_csum(const void *data, size_t len, uint32_t sum)
{
	uint32_t s = inet_csum_add(data, len, sum);

	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

void ipv4_input(const uint8_t *src_mac, const uint8_t *p, size_t len)
{
	if (len < IP_HLEN || (p[0] >> 4) != 4) {
		netif.rx_dropped++;
		return;
	}
	size_t hl = (size_t)(p[0] & 0xf) * 4;
	size_t total = get_be16(p + 2);
	/* total < len is Ethernet padding, trimmed here. */
	if (hl < IP_HLEN || total < hl || total > len || inet_csum(p, hl, 0) != 0) {
		netif.rx_dropped++;
		return;
	}
	uint16_t frag = get_be16(p + 6);
	if ((frag & IP_FLAG_MF) || (frag & IP_FRAG_MASK)) {
		netif.rx_dropped++; /* no reassembly */
		return;
	}
	uint32_t src = get_be32(p + 12), dst = get_be32(p + 16);
	if (!netif.ip || dst != netif.ip) {
		netif.rx_dropped++;
		return;
	}
	switch (p[9]) {
	case IP_PROTO_ICMP:
		icmp_input(src_mac, src, p + hl, total - hl);
		break;
	case IP_PROTO_UDP:
		udp_input(src_mac, src, dst, p + hl, total - hl);
		break;
	default:
		netif.rx_dropped++;
		break;
	}
}

int ipv4_send(const uint8_t dst_mac[6], uint32_t dst_ip, uint8_t proto,
	      size_t payload_len)
{
	uint8_t *h = net_tx_frame() + ETH_HLEN;

	h[0] = 0x45; /* version 4, 5 words */
	h[1] = 0;
	put_be16(h + 2, (uint16_t)(IP_HLEN + payload_len));
	put_be16(h + 4, ip_id++);
	put_be16(h + 6, IP_FLAG_DF);
	h[8] = IP_TTL;
	h[9] = proto;
	put_be16(h + 10, 0);
	put_be32(h + 12, netif.ip);
	put_be32(h + 16, dst_ip);
	put_be16(h + 10, inet_csum(h, IP_HLEN, 0));
	return eth_send(dst_mac, ETH_TYPE_IPV4, IP_HLEN + payload_len);
}
