/* The kv workload's RESP service on TCP (resp_server.c). */
#ifndef FTVM_GUEST_RESP_SERVER_H
#define FTVM_GUEST_RESP_SERVER_H

#include <stdint.h>

#include "workload/resp_proto.h"

#define RESP_DEFAULT_PORT 6379
#define RESP_MAX_CONNS 72	/* lwipopts.h: MEMP_NUM_TCP_PCB 80 */

struct resp_server_stats {
	uint64_t accepted, refused, resets, commands, open;
	uint64_t refused_bytes;	/* offered while the input buffer was full (taken later) */
};

/* Listens on port; commands are served from within net_poll(). 0 or -errno. */
int resp_server_start(uint16_t port, const struct resp_store *st);
const struct resp_server_stats *resp_server_stats(void);
/* Resets every connection (a workload that stops serving). */
void resp_server_abort_all(void);

#endif
