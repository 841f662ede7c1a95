/*
 * The guest's network: lwIP (NO_SYS, raw API; guest/net/lwip/lwipopts.h)
 * on one interface over the virtio-net driver (net/netif_virtio.c), polled
 * from the workload's loop. This header is what the workloads use: the
 * interface's address, the poll, and UDP services (the kv protocol); TCP
 * services use lwIP's raw API (lwip/tcp.h) directly.
 */
#ifndef FTVM_GUEST_NET_H
#define FTVM_GUEST_NET_H

#include <stddef.h>
#include <stdint.h>

/* Largest UDP payload in one unfragmented frame. */
#define UDP_MAX_PAYLOAD (1514 - 14 - 20 - 8)

/* A datagram's sender, to answer it. */
struct udp_peer {
	uint32_t ip;		/* host byte order */
	uint16_t port;
	uint16_t local_port;
};

typedef void (*udp_handler_fn)(const struct udp_peer *from, const uint8_t *data, size_t len);

/* lwIP up on the virtio-net device (vnet_init first) with this address;
 * announces it (gratuitous ARP). */
void net_init(uint32_t ip, int prefix, uint32_t gw);
/* Hands up to `budget` received frames to lwIP and runs its timers;
 * returns how many frames. */
int net_poll(int budget);

/* UDP: one handler per local port (a few ports at most). 0 or -errno. */
int net_udp_bind(uint16_t port, udp_handler_fn fn);
int net_udp_reply(const struct udp_peer *to, const void *data, size_t len);

/* Counters for STAT and debugging. */
struct net_counters {
	uint64_t rx_frames, rx_dropped, tx_frames, tx_errors;
};
const struct net_counters *net_counters(void);

/* netif_virtio.c: lwIP's netif on the virtio-net driver. */
struct netif;
int8_t netif_virtio_init(struct netif *nif);	/* netif_add's init function */
int netif_virtio_poll(struct netif *nif, int budget);
extern struct net_counters net_stats;

#endif
