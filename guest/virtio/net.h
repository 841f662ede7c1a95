/* Polled virtio-net driver: one RX and one TX queue. */
#ifndef FTVM_GUEST_VNET_H
#define FTVM_GUEST_VNET_H

#include <stddef.h>
#include <stdint.h>

#define NET_MTU_FRAME 1514 /* largest Ethernet frame without FCS */

/* Finds the first virtio-net device, fills its RX queue. 0 or -ENODEV.. */
int vnet_init(void);
int vnet_slot(void);
/* The MAC from the device config (or a fixed locally administered one if
 * the device has no VIRTIO_NET_F_MAC). */
const uint8_t *vnet_mac(void);
/* Link state from the config (1 when the device has no STATUS feature). */
int vnet_link_up(void);

/* Sends one frame (copied; len <= NET_MTU_FRAME). 0, -EINVAL, -EAGAIN. */
int vnet_send(const void *frame, size_t len);

typedef void (*vnet_rx_fn)(const uint8_t *frame, size_t len);
/* Hands up to `budget` received frames to fn, gives their buffers back to
 * the device. Returns how many frames it handled. */
int vnet_poll(vnet_rx_fn fn, int budget);

#endif
