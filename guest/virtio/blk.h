/* Polled virtio-blk driver (one device, one request in flight). */
#ifndef FTVM_GUEST_BLK_H
#define FTVM_GUEST_BLK_H

#include <stddef.h>
#include <stdint.h>

#define BLK_SECTOR 512u
/* Largest single request: callers split bigger transfers. */
#define BLK_MAX_SECTORS 128u /* 64 KiB */

/* Finds and initialises the first virtio-blk device. 0 or -ENODEV/-EIO. */
int blk_init(void);
/* Slot of the device we use, -1 if none. */
int blk_slot(void);
uint64_t blk_capacity(void); /* in 512-byte sectors */

/* 0, -EINVAL (range/size), -EIO (device said so), -ETIMEDOUT. buf is
 * guest-physical == virtual, any alignment. */
int blk_read(uint64_t sector, void *buf, uint32_t nsectors);
int blk_write(uint64_t sector, const void *buf, uint32_t nsectors);
/* Durable after this returns 0 (a no-op when the device has no volatile
 * cache, i.e. did not offer VIRTIO_BLK_F_FLUSH). */
int blk_flush(void);
/* The device's id string (up to 20 bytes, NUL-terminated in buf[21]). */
int blk_get_id(char buf[21]);

#endif
