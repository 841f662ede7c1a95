/* The kv workload's RESP service on TCP (resp_server.c). */
#ifndef FTVM_GUEST_RESP_SERVER_H
#define FTVM_GUEST_RESP_SERVER_H

#include <stdint.h>

#include "workload/resp_proto.h"

#define RESP_DEFAULT_PORT 6379
#define RESP_MAX_CONNS 72	/* lwipopts.h: MEMP_NUM_TCP_PCB 80 */

/* Listens on port; commands are served from within net_poll(). 0 or -errno. */
int resp_server_start(uint16_t port, const struct resp_store *st);

#endif
