/*
 * net.h over lwIP: the interface's bring-up, the poll (frames in, timers),
 * UDP services, and the hooks lwIP's port asks for (lwip/arch/cc.h:
 * diagnostics, assertions, random numbers; sys_now).
 */
#include "net/net.h"

#include <stdarg.h>
#include <stdbool.h>

#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/sys.h"
#include "lib/time.h"
#include "lib/x86.h"
#include "lwip/etharp.h"
#include "lwip/init.h"
#include "lwip/ip4_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/timeouts.h"
#include "lwip/udp.h"
#include "netif/ethernet.h"

#define MAX_BINDINGS 4

static struct netif nif;
static struct {
	struct udp_pcb *pcb;
	udp_handler_fn fn;
} bindings[MAX_BINDINGS];

/* ---- lwIP's port -------------------------------------------------------- */

u32_t sys_now(void)
{
	return (u32_t)(guest_ns() / 1000000u);
}

void ftvm_lwip_diag(const char *fmt, ...)
{
	va_list ap;
	printf("ftvm-guest: lwip: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}

void ftvm_lwip_assert(const char *msg, const char *file, int line)
{
	guest_fatal("lwip: assertion \"%s\" failed at %s:%d", msg, file, line);
}

/* xorshift64*, seeded from the TSC at first use: TCP's initial sequence
 * numbers and ephemeral ports. The state is guest RAM like the rest: a
 * failed-over guest goes on with the sequence it had. */
uint32_t ftvm_lwip_rand(void)
{
	static uint64_t s;
	if (!s)
		s = rdtsc() | 1;
	s ^= s >> 12;
	s ^= s << 25;
	s ^= s >> 27;
	return (uint32_t)((s * 0x2545f4914f6cdd1dull) >> 32);
}

/* ---- the interface --------------------------------------------------------- */

void net_init(uint32_t ip, int prefix, uint32_t gw)
{
	ip4_addr_t a, m, g;
	uint32_t mask = prefix ? 0xffffffffu << (32 - prefix) : 0;

	lwip_init();
	ip4_addr_set_u32(&a, lwip_htonl(ip));
	ip4_addr_set_u32(&m, lwip_htonl(mask));
	ip4_addr_set_u32(&g, lwip_htonl(gw));
	if (!netif_add(&nif, &a, &m, &g, NULL, netif_virtio_init, ethernet_input))
		guest_fatal("lwip: netif_add failed");
	netif_set_default(&nif);
	netif_set_up(&nif);
	netif_set_link_up(&nif);	/* announces the address (gratuitous ARP) */
}

int net_poll(int budget)
{
	int n = netif_virtio_poll(&nif, budget);
	sys_check_timeouts();
	return n;
}

const struct net_counters *net_counters(void)
{
	return &net_stats;
}

/* ---- UDP ------------------------------------------------------------------- */

static void on_udp(void *arg, struct udp_pcb *pcb, struct pbuf *p, const ip_addr_t *addr, u16_t port)
{
	udp_handler_fn fn = (udp_handler_fn)arg;
	uint8_t data[UDP_MAX_PAYLOAD];
	struct udp_peer from = { .ip = lwip_ntohl(ip4_addr_get_u32(addr)), .port = port,
				 .local_port = pcb->local_port };
	u16_t len = pbuf_copy_partial(p, data, sizeof(data), 0);
	/* A datagram longer than one frame's payload is not a request. */
	bool whole = p->tot_len <= sizeof(data);
	pbuf_free(p);
	if (whole)
		fn(&from, data, len);
	else
		net_stats.rx_dropped++;
}

int net_udp_bind(uint16_t port, udp_handler_fn fn)
{
	for (int i = 0; i < MAX_BINDINGS; i++) {
		if (bindings[i].pcb)
			continue;
		struct udp_pcb *pcb = udp_new();
		if (!pcb)
			return -ENOMEM;
		if (udp_bind(pcb, IP4_ADDR_ANY, port) != ERR_OK) {
			udp_remove(pcb);
			return -EBUSY;
		}
		udp_recv(pcb, on_udp, (void *)fn);
		bindings[i].pcb = pcb;
		bindings[i].fn = fn;
		return 0;
	}
	return -ENOSPC;
}

int net_udp_reply(const struct udp_peer *to, const void *data, size_t len)
{
	if (len > UDP_MAX_PAYLOAD)
		return -EINVAL;
	for (int i = 0; i < MAX_BINDINGS; i++) {
		if (!bindings[i].pcb || bindings[i].pcb->local_port != to->local_port)
			continue;
		struct pbuf *p = pbuf_alloc(PBUF_TRANSPORT, (u16_t)len, PBUF_RAM);
		if (!p)
			return -ENOMEM;
		pbuf_take(p, data, (u16_t)len);
		ip_addr_t dst;
		ip_addr_set_ip4_u32(&dst, lwip_htonl(to->ip));
		err_t e = udp_sendto(bindings[i].pcb, p, &dst, to->port);
		pbuf_free(p);
		return e == ERR_OK ? 0 : -EIO;
	}
	return -ENOENT;
}
