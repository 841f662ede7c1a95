#include "workload/netcfg.h"

#include "lib/cmdline.h"
#include "lib/printf.h"
#include "lib/sys.h"
#include "net/net.h"
#include "virtio/net.h"
#include "workload/service.h"

void netcfg_parse(struct netcfg *c, bool required, const char *wl)
{
	const char *ip = cmdline_get("ip");
	const char *port = cmdline_get("port");
	const char *gw = cmdline_get("gw");
	uint64_t v = DEFAULT_PORT;

	c->enabled = ip != NULL;
	c->gw = 0;
	if (!ip) {
		if (required)
			guest_fatal("workload=%s needs ip=A.B.C.D/N", wl);
		if (port || gw)
			guest_fatal("workload=%s: port=/gw= need ip=", wl);
		return;
	}
	if (parse_ipv4_cidr(ip, &c->ip, &c->prefix) || c->ip == 0)
		guest_fatal("workload=%s: bad ip='%s' (want A.B.C.D/N)", wl, ip);
	if (port && (parse_u64(port, &v) || v == 0 || v > 65535))
		guest_fatal("workload=%s: bad port='%s' (1..65535)", wl, port);
	c->port = (uint16_t)v;
	if (gw && parse_ipv4(gw, &c->gw))
		guest_fatal("workload=%s: bad gw='%s' (want A.B.C.D)", wl, gw);
	format_ipv4(c->ip_str, c->ip);
}

void netcfg_start(const struct netcfg *c, const struct svc_ops *ops, const char *wl)
{
	int r = vnet_init();
	if (r)
		guest_fatal("workload=%s: no usable virtio-net device (%d)", wl, r);
	net_init(c->ip, c->prefix, c->gw);
	if (svc_start(c->port, ops))
		guest_fatal("workload=%s: cannot bind UDP port %u", wl, c->port);
}
