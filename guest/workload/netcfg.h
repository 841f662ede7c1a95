/* ip= port= gw= words shared by the workloads that serve UDP. */
#ifndef FTVM_GUEST_NETCFG_H
#define FTVM_GUEST_NETCFG_H

#include <stdbool.h>
#include <stdint.h>

#define DEFAULT_PORT 7777

struct netcfg {
	bool enabled;  /* ip= given */
	uint32_t ip;
	int prefix;
	uint32_t gw;
	uint16_t port;
	char ip_str[16];
};

/* Reads ip=A.B.C.D[/N] (default /24) port= gw=; exits the VM with a clear
 * error on a bad value, or when ip= is missing and `required`. */
void netcfg_parse(struct netcfg *c, bool required, const char *workload);
/* Brings up virtio-net and the stack, binds the service port (the VM
 * exits with an error if that is impossible). */
struct svc_ops;
void netcfg_start(const struct netcfg *c, const struct svc_ops *ops,
		  const char *workload);
/* How long to idle when there is nothing to do. Short enough that a
 * missed wake-up only costs a little latency. */
#define NET_IDLE_US 10000

#endif
