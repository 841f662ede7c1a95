/*
 * A minimal IPv4 stack for one interface: Ethernet, ARP (answers and one
 * gratuitous announcement), IPv4 without fragments, ICMP echo, UDP.
 * Replies go straight back to the requester's MAC/IP/port, so there is no
 * ARP cache and no routing.
 */
#ifndef FTVM_GUEST_NET_H
#define FTVM_GUEST_NET_H

#include <stddef.h>
#include <stdint.h>

#define ETH_HLEN       14
#define ETH_TYPE_IPV4  0x0800
#define ETH_TYPE_ARP   0x0806
#define IP_HLEN        20
#define IP_PROTO_ICMP  1
#define IP_PROTO_UDP   17
#define UDP_HLEN       8
/* Largest UDP payload in one unfragmented frame. */
#define UDP_MAX_PAYLOAD (1514 - ETH_HLEN - IP_HLEN - UDP_HLEN)

struct netif {
	uint8_t mac[6];
	uint32_t ip;     /* host byte order */
	int prefix;
	uint32_t gw;     /* 0 if none (unused: we only ever reply) */
	/* counters, for debugging */
	uint64_t rx_frames, rx_dropped, tx_frames, tx_errors;
};

extern struct netif netif;

struct udp_peer {
	uint8_t mac[6];
	uint32_t ip;
	uint16_t port;
	uint16_t local_port;
};

typedef void (*udp_handler_fn)(const struct udp_peer *from, const uint8_t *data,
			       size_t len);

/* Takes the MAC from the virtio-net driver; sends a gratuitous ARP. */
void net_init(uint32_t ip, int prefix, uint32_t gw);
/* Processes up to `budget` received frames; returns how many. */
int net_poll(int budget);

/* UDP: one handler per local port (a few ports at most). 0 or -ENOSPC. */
int udp_bind(uint16_t port, udp_handler_fn fn);
int udp_reply(const struct udp_peer *to, const void *data, size_t len);

/* --- internal, between the layers --- */

/* The one TX frame buffer (single-threaded stack). */
uint8_t *net_tx_frame(void);
uint16_t inet_csum(const void *p, size_t len, uint32_t sum);
uint32_t inet_csum_add(const void *p, size_t len, uint32_t sum);

void eth_input(const uint8_t *frame, size_t len);
/* Fills the Ethernet header of net_tx_frame() and sends it. */
int eth_send(const uint8_t dst[6], uint16_t type, size_t payload_len);

void arp_input(const uint8_t *p, size_t len);
int arp_announce(void);

void ipv4_input(const uint8_t *src_mac, const uint8_t *p, size_t len);
/* Payload is already at net_tx_frame() + ETH_HLEN + IP_HLEN. */
int ipv4_send(const uint8_t dst_mac[6], uint32_t dst_ip, uint8_t proto,
	      size_t payload_len);

void icmp_input(const uint8_t *src_mac, uint32_t src_ip, const uint8_t *p,
		size_t len);
void udp_input(const uint8_t *src_mac, uint32_t src_ip, uint32_t dst_ip,
	       const uint8_t *p, size_t len);

#endif
