/*
 * guest_kvstore_shim.h - the guest's virtio-blk API (guest/virtio/blk.h:
 * blk_capacity, blk_read, blk_write, blk_flush) over an in-memory disk, for
 * test_guest_kvstore, with the faults a real disk has:
 *
 *   SHIM_WRITE_FAIL  the write fails, nothing of it is written;
 *   SHIM_WRITE_TORN  the write fails after only its first `land` sectors
 *                    were written (a torn request);
 *   SHIM_FLUSH_FAIL  the flush fails (what was written stays written);
 *   SHIM_READ_FAIL   the read fails;
 *   SHIM_CRASH       the machine stops at this request: a write lands its
 *                    first `land` sectors, and this request and every one
 *                    after it fail and change nothing until shim_boot();
 *   SHIM_CRASH_TAIL  the same, but only the last `land` sectors of the
 *                    write reach the disk (a cache that wrote them first).
 *
 * Writes go straight to the disk, and a failed flush loses nothing, unless
 * the disk has a volatile cache (shim_volatile_cache): then a crash also
 * loses each sector written since the last flush that succeeded, or not,
 * at random (so a request in flight may come back as any subset of it).
 * Faults come from a script (shim_script: the nth request from now) or at
 * random (shim_random). Requests out of range are answered -EINVAL as the
 * real driver does, and counted (bad_requests): the code under test must
 * never issue one.
 */
#ifndef FTVM_TESTS_GUEST_KVSTORE_SHIM_H
#define FTVM_TESTS_GUEST_KVSTORE_SHIM_H

#include <stdint.h>

enum shim_fault {
	SHIM_NONE,
	SHIM_WRITE_FAIL,
	SHIM_WRITE_TORN,
	SHIM_FLUSH_FAIL,
	SHIM_READ_FAIL,
	SHIM_CRASH,
	SHIM_CRASH_TAIL,
};

enum shim_req { SHIM_REQ_READ, SHIM_REQ_WRITE, SHIM_REQ_FLUSH };

/* A new disk of this many sectors, all zero; powered on, no faults. */
void shim_disk_new(uint64_t sectors);
/* The disk's bytes (sectors * 512), to inspect or to lay out by hand. */
uint8_t *shim_disk_bytes(void);

/* Writes are durable only once a flush succeeded (off: at once). */
void shim_volatile_cache(int on);

/* Power on again after a crash (or just a reboot): the disk as it is, the
 * script and the random faults gone, the request numbers from 1 again. */
void shim_boot(void);
int shim_crashed(void);
/* The power goes now: every sector of the cache not yet flushed is lost
 * (with the cache on; a crash loses each with even odds). */
void shim_power_cut(void);

/* The nth request from now (1 = the next) of kind req does f; a write that
 * is torn or crashes lands `land` sectors of it (at most all of them;
 * SHIM_LAND_RANDOM: from none to all, at random). Requests of other kinds
 * do not count. Up to 16 pending. */
#define SHIM_LAND_RANDOM UINT32_MAX
void shim_script(enum shim_req req, unsigned nth, enum shim_fault f, uint32_t land);

/* Random faults, per 1000 requests of their kind; a torn write lands a
 * random number of its sectors from 0 to all. crash_at: the request number
 * since boot (counting reads, writes and flushes) at which the machine
 * crashes, 0 for none; the crashing write lands a random prefix. */
struct shim_rates {
	unsigned write_fail, write_torn, flush_fail, read_fail;
	uint64_t crash_at;
};
void shim_random(const struct shim_rates *r, uint64_t seed);

/* What happened since shim_disk_new(), and the last writes. */
struct shim_write {
	uint64_t sector;
	uint32_t n, landed;
	int rc;
};
struct shim_stats {
	uint64_t requests, reads, writes, flushes; /* since boot */
	uint64_t landed_sectors;	/* written to the disk, ever */
	uint64_t faults;		/* injected, ever */
	uint64_t bad_requests;		/* out of range or size, ever */
	uint64_t lost_sectors;		/* written, lost from the cache at a crash, ever */
	/* The writes since boot, the last SHIM_WRITE_LOG of them. */
#define SHIM_WRITE_LOG 16
	struct shim_write wlog[SHIM_WRITE_LOG];
};
const struct shim_stats *shim_stats(void);
/* The i-th last write (0 = the last), or NULL. */
const struct shim_write *shim_last_write(unsigned i);
/* What the faults of the last requests were, as text (for a failure's
 * report): the injected faults since the last call, then cleared. */
const char *shim_fault_note(void);

#endif
