/*
 * lwIP's configuration for the guest (lwIP 2.1.3 from Debian's source
 * package, scripts/fetch_lwip.sh): NO_SYS with the raw API, polled from
 * the workload's main loop (net_poll), one interface over virtio-net,
 * IPv4 with ARP, ICMP echo, UDP (the kv protocol, port 7777) and TCP (the
 * RESP service) for at least 64 connections.
 *
 * Everything lwIP keeps lives in guest RAM: a checkpoint carries the TCP
 * connections' state with the rest of the guest, which is what lets an
 * open connection go on after a failover.
 */
#ifndef FTVM_GUEST_LWIPOPTS_H
#define FTVM_GUEST_LWIPOPTS_H

#define NO_SYS                      1
#define LWIP_SOCKET                 0
#define LWIP_NETCONN                0
#define SYS_LIGHTWEIGHT_PROT        0	/* one thread: the workload's loop */
#define LWIP_TIMERS                 1	/* sys_check_timeouts() from net_poll */

#define LWIP_IPV4                   1
#define LWIP_IPV6                   0
#define LWIP_ARP                    1
#define LWIP_ETHERNET               1
#define LWIP_ICMP                   1
#define LWIP_UDP                    1
#define LWIP_TCP                    1
#define LWIP_RAW                    0
#define LWIP_DHCP                   0
#define LWIP_AUTOIP                 0
#define LWIP_IGMP                   0
#define LWIP_DNS                    0
#define IP_FORWARD                  0
#define IP_REASSEMBLY               0	/* the kv protocol never fragments */
#define IP_FRAG                     0
#define LWIP_NETIF_TX_SINGLE_PBUF   1	/* one contiguous frame to the driver */
#define ETHARP_SUPPORT_STATIC_ENTRIES 0
#define ARP_QUEUEING                1	/* a reply waits for the peer's ARP answer */
#define ARP_TABLE_SIZE              64

/* Memory: lwIP's own heap and pools, in the guest's .bss. */
#define MEM_ALIGNMENT               8
#define MEM_SIZE                    (2 * 1024 * 1024)
#define MEMP_NUM_PBUF               256
#define MEMP_NUM_UDP_PCB            4
#define MEMP_NUM_TCP_PCB            80	/* 64 clients and some in TIME_WAIT */
#define MEMP_NUM_TCP_PCB_LISTEN     4
#define MEMP_NUM_TCP_SEG            1024
#define MEMP_NUM_ARP_QUEUE          64
#define PBUF_POOL_SIZE              512
#define PBUF_POOL_BUFSIZE           1536

/* TCP: full-size segments, windows of 16 of them. */
#define TCP_MSS                     1460
#define TCP_WND                     (16 * TCP_MSS)
#define TCP_SND_BUF                 (16 * TCP_MSS)
#define TCP_SND_QUEUELEN            (4 * TCP_SND_BUF / TCP_MSS)
#define TCP_QUEUE_OOSEQ             1
#define LWIP_TCP_KEEPALIVE          1
#define LWIP_CALLBACK_API           1

/* The ISN and ports from the guest's own generator (lwip/arch/cc.h). */
#define LWIP_RAND()                 ftvm_lwip_rand()

#define LWIP_STATS                  0
#define LWIP_STATS_DISPLAY          0
#define LWIP_DEBUG                  0
#define LWIP_PROVIDE_ERRNO          0
#define LWIP_NETIF_LINK_CALLBACK    0
#define LWIP_NETIF_STATUS_CALLBACK  0
#define LWIP_HAVE_LOOPIF            0
#define LWIP_NETIF_LOOPBACK         0
#define LWIP_SINGLE_NETIF           1

#endif
