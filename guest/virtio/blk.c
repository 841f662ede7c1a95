/*
 * virtio-blk. Requests are synchronous: a three-descriptor chain (header,
 * data, status), one QueueNotify, then we poll the used ring. ftvm
 * completes the request before the notify exit returns; QEMU completes it
 * asynchronously, hence the poll with a timeout.
 */
#include "virtio/blk.h"

#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "virtio/virtio_mmio.h"

#define VIRTIO_BLK_F_SEG_MAX  (1ull << 2)
#define VIRTIO_BLK_F_BLK_SIZE (1ull << 6)
#define VIRTIO_BLK_F_FLUSH    (1ull << 9)

#define T_IN     0
#define T_OUT    1
#define T_FLUSH  4
#define T_GET_ID 8

#define S_OK     0

#define CFG_CAPACITY 0

/* A device that takes longer than this for one request is broken. */
#define REQ_TIMEOUT_US 30000000

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

static struct virtio_dev dev;
static struct virtq vq;
static struct virtq_mem vq_mem;
static struct blk_req_hdr hdr;
static volatile uint8_t status;
static uint64_t capacity;
static int have_dev;

int blk_init(void)
{
	if (virtio_probe(VIRTIO_ID_BLOCK, &dev, 1) < 1)
		return -ENODEV;
	int r = virtio_begin_init(&dev, VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH |
					      VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_SEG_MAX);
	if (r)
		return r;
	/* Only 3 descriptors are ever used; a small ring keeps it cheap. */
	r = virtio_queue_init(&dev, &vq, 0, &vq_mem, 16);
	if (r) {
		virtio_fail(&dev);
		return r;
	}
	if (vq.size < 4) {
		virtio_fail(&dev);
		return -ENODEV;
	}
	capacity = virtio_cfg_read64(&dev, CFG_CAPACITY);
	/* The chain never changes shape: link it once. */
	struct virtq_desc *d = vq_mem.desc;
	d[0].addr = (uintptr_t)&hdr;
	d[0].len = sizeof(hdr);
	d[0].flags = VIRTQ_DESC_F_NEXT;
	d[0].next = 1;
	d[2].addr = (uintptr_t)&status;
	d[2].len = 1;
	d[2].flags = VIRTQ_DESC_F_WRITE;
	virtio_driver_ok(&dev);
	have_dev = 1;
	/* Short: on PVM hosts each console byte costs a ~70 us exit. */
	printf("ftvm-guest: blk slot %d sectors %llu%s\n", dev.slot,
	       (unsigned long long)capacity,
	       (dev.features & VIRTIO_BLK_F_FLUSH) ? " flush" : "");
	return 0;
}

int blk_slot(void)
{
	return have_dev ? dev.slot : -1;
}

uint64_t blk_capacity(void)
{
	return capacity;
}

/* One request: data may be NULL (flush). */
static int blk_do(uint32_t type, uint64_t sector, void *data, uint32_t len, int dev_writes)
{
	struct virtq_desc *d = vq_mem.desc;
	uint16_t id;
	uint32_t used_len;

	if (!have_dev)
		return -ENODEV;
	hdr.type = type;
	hdr.reserved = 0;
	hdr.sector = sector;
	status = 0xff;
	if (data && len) {
		d[0].next = 1;
		d[1].addr = (uintptr_t)data;
		d[1].len = len;
		d[1].flags = VIRTQ_DESC_F_NEXT | (dev_writes ? VIRTQ_DESC_F_WRITE : 0);
		d[1].next = 2;
	} else {
		d[0].next = 2;
	}
	virtq_push(&vq, 0);
	virtq_kick(&vq);
	int r = virtq_wait_used(&vq, &id, &used_len, REQ_TIMEOUT_US);
	if (r) {
		printf("ftvm-guest: virtio-blk: request type %u sector %llu timed out\n",
		       type, (unsigned long long)sector);
		/* The descriptors are still the device's: never reuse them. */
		have_dev = 0;
		return r;
	}
	return status == S_OK ? 0 : -EIO;
}

static int check_range(uint64_t sector, uint32_t n)
{
	if (n == 0 || n > BLK_MAX_SECTORS || sector >= capacity || n > capacity - sector)
		return -EINVAL;
	return 0;
}

int blk_read(uint64_t sector, void *buf, uint32_t nsectors)
{
	int r = check_range(sector, nsectors);

	return r ? r : blk_do(T_IN, sector, buf, nsectors * BLK_SECTOR, 1);
}

int blk_write(uint64_t sector, const void *buf, uint32_t nsectors)
{
	int r = check_range(sector, nsectors);

	/* The device only reads buf; the cast is for the shared helper. */
	return r ? r : blk_do(T_OUT, sector, (void *)(uintptr_t)buf, nsectors * BLK_SECTOR, 0);
}

int blk_flush(void)
{
	if (!(dev.features & VIRTIO_BLK_F_FLUSH))
		return have_dev ? 0 : -ENODEV;
	return blk_do(T_FLUSH, 0, NULL, 0, 0);
}

int blk_get_id(char buf[21])
{
	static char id[20];

	memset(id, 0, sizeof(id));
	int r = blk_do(T_GET_ID, 0, id, sizeof(id), 1);
	if (r == 0) {
		memcpy(buf, id, sizeof(id));
		buf[20] = '\0';
	}
	return r;
}
