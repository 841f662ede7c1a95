/*
 * eventtap.h - the event tap: sits between the virtio device models and
 * their host backends (struct disk_ops, struct net_ops) and enforces the
 * output-commit rule.
 *
 * While holding (protection on), every outgoing virtio-net frame and every
 * virtio-blk write/flush is kept here (a write's space is reserved first,
 * disk_ops.reserve, so a full disk fails it at once, as unprotected), tagged with the epoch it belongs
 * to, and only performed when the secondary has acknowledged a checkpoint
 * of that epoch or later (eventtap__release). Reads see held writes (an
 * overlay), so the guest observes its own writes at once. When not holding,
 * output passes straight through.
 *
 * Epochs: outputs issued after checkpoint E-1 was captured and up to the
 * capture of checkpoint E carry tag E. eventtap__seal(), called while the
 * VM is paused for the capture of E, closes epoch E.
 *
 * Thread safety: all calls may come from any thread; an internal mutex
 * protects the held list. The trigger callback is called without that
 * mutex, from the vCPU thread that issued the output (or from the
 * flusher thread, when an asynchronous release's flush failed).
 */
#ifndef FTVM_EVENTTAP_H
#define FTVM_EVENTTAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/vmm.h"

enum et_policy {
	ET_POLICY_EVENT,	/* Kemari: each held output triggers a checkpoint */
	ET_POLICY_EPOCH,	/* Remus: a checkpoint every epoch_ms */
	ET_POLICY_HYBRID,	/* outputs within window_us coalesce; max_ms floor */
};

struct et_policy_cfg {
	enum et_policy policy;
	uint32_t epoch_ms;	/* epoch: interval */
	uint32_t window_us;	/* hybrid: coalescing window after the first output */
	uint32_t max_ms;	/* hybrid: checkpoint at least this often */
};

/* "event" | "epoch[:MS]" | "hybrid[:WINDOW_US[:MAX_MS]]"; defaults: 20 ms, 500 us, 100 ms. */
int et_policy__parse(const char *s, struct et_policy_cfg *out, char *err, size_t errlen);
void et_policy__format(const struct et_policy_cfg *p, char *buf, size_t len);

enum et_item_kind { ET_NET_FRAME = 1, ET_DISK_WRITE = 2, ET_DISK_FLUSH = 3 };

struct eventtap;

/* Called when an output is held, with the bytes now held and whether the
 * outside can observe this output once released: a frame can, a disk
 * write or flush cannot (nobody reads the disk but the guest, and at
 * failover the secondary re-issues what a committed checkpoint holds).
 * The ft primary decides what to do: an observable output makes a
 * checkpoint due (event) or opens the coalescing window (hybrid); held
 * bytes past its bound force one whatever the output. */
typedef void (*et_trigger_fn)(void *opaque, uint64_t held_bytes, bool observable);

/* disk and net may be NULL; the wrappers then are NULL too. */
int eventtap__create(struct disk *disk, struct net *net, struct eventtap **out);
void eventtap__destroy(struct eventtap *et);
/* The wrapped backends to give the VM (vm_config.disk / .net). */
struct disk *eventtap__disk(struct eventtap *et);
struct net *eventtap__net(struct eventtap *et);

void eventtap__set_trigger(struct eventtap *et, et_trigger_fn fn, void *opaque);
/* Start holding with the given current epoch; or stop (held output stays until released). */
void eventtap__set_holding(struct eventtap *et, bool on, uint64_t epoch);
bool eventtap__holding(struct eventtap *et);

/*
 * Block-granular tracking of disk writes (for the initial sync of a
 * replicated disk): every write marks its blocks; collect ORs them into
 * bitmap (one bit per block of block_size bytes) and clears.
 */
int eventtap__track_disk(struct eventtap *et, bool on, uint32_t block_size);
int eventtap__collect_disk_dirty(struct eventtap *et, uint64_t *bitmap);

/* Closes the current epoch and returns it; later output gets the next. */
uint64_t eventtap__seal(struct eventtap *et);
/*
 * Appends every unreleased item (all epochs, in issue order) to out:
 *   u32 count, then per item: u8 kind, u64 epoch, u64 offset, u32 len, data[len]
 */
int eventtap__serialize(struct eventtap *et, struct sbuf *out, uint32_t *count);
/*
 * Performs every held output tagged <= epoch: disk writes, one flush,
 * frames. A write or flush that fails releases nothing more, ever: the
 * failed write, the frames of the batch and everything after stay held
 * and the event tap is failed (eventtap__failed); later calls return
 * that error. The caller must not let the guest's output out another way:
 * it hands the guest to a secondary or stops it.
 */
int eventtap__release(struct eventtap *et, uint64_t epoch);
/*
 * The same, but the frames leave once every write is issued, before the
 * flush: for a primary whose secondary wrote and flushed the same writes
 * to its own disk before it acknowledged (replicated storage), so a reply
 * that says "written" is true of a disk already. A flush that fails then
 * fails the event tap as above and keeps the writes held (the frames are
 * out): the caller hands the guest to the secondary, whose disk has them.
 */
int eventtap__release_flush_last(struct eventtap *et, uint64_t epoch);
/*
 * The same as eventtap__release, but the flush and what follows it are
 * left to the event tap's flusher thread: this call issues the writes
 * (and sends at once the frames that have no write or flush before them),
 * and returns; the flusher flushes, then sends the frames, in order.
 * Until then those items are still held: every eventtap__serialize
 * carries them, so a checkpoint captured meanwhile still holds writes
 * this disk may not have made durable. A failed flush fails the event tap
 * as above (the items stay held) and calls the trigger, observable, so
 * the caller's next release returns the error. The synchronous releases
 * first wait for what was queued.
 */
int eventtap__release_async(struct eventtap *et, uint64_t epoch);
/* Waits until nothing queued by eventtap__release_async is left; returns
 * eventtap__failed. */
int eventtap__drain(struct eventtap *et);
/* Stops holding and performs every held output, atomically with respect
 * to new output (protection ended: secondary lost or cancelled). Fails
 * as eventtap__release does (holding again). */
int eventtap__release_all(struct eventtap *et);
/* The error a release failed with (-errno), 0 if none did. */
int eventtap__failed(struct eventtap *et);

/*
 * On a secondary: a serialized list from a checkpoint. check verifies it
 * (items within max_epoch, writes within disk_size); reserve allocates
 * the space of its writes with epoch >= min_epoch (so apply cannot meet a
 * full disk); apply performs those writes (and a flush), stopping at the
 * first that fails; reissue performs all of it (disk items only if
 * with_disk), disk first: no frame is sent after a write or flush failed.
 */
int et_list__check(const void *blob, size_t len, uint64_t max_epoch, uint64_t disk_size,
		   char *err, size_t errlen);
int et_list__reserve_disk(struct eventtap *et, const void *blob, size_t len, uint64_t min_epoch,
			  char *err, size_t errlen);
int et_list__apply_disk(struct eventtap *et, const void *blob, size_t len, uint64_t min_epoch);
int et_list__reissue(struct eventtap *et, const void *blob, size_t len, bool with_disk,
		     uint32_t *frames, uint32_t *writes);
/* Sends one raw frame through the net backend, bypassing holding (announcements). */
int eventtap__send_frame(struct eventtap *et, const void *frame, size_t len);

struct et_stats {
	uint64_t held_items, held_bytes;	/* now */
	uint64_t held_frames, held_writes;
	uint64_t released_items, released_bytes; /* since creation */
	uint64_t oldest_held_ns;		/* age of the oldest held item, 0 if none */
};
void eventtap__stats(struct eventtap *et, struct et_stats *s);
/* Copies up to max recent hold-to-release latencies (ns), newest last. */
size_t eventtap__latencies(struct eventtap *et, uint64_t *out, size_t max);

#endif
