/*
 * eventtap.c - holds guest output until the checkpoint covering it is
 * acknowledged (see eventtap.h for the contract).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eventtap/eventtap.h"

#define ET_LAT_RING 4096

struct et_item {
	struct et_item *next;
	uint8_t kind;
	uint64_t seq;		/* issue order, from 1 */
	uint64_t epoch;
	uint64_t offset;
	uint32_t len;
	uint64_t t_held;
	uint8_t data[];
};

struct eventtap {
	struct disk *inner_disk;
	struct net *inner_net;
	struct disk disk;	/* what the VM sees */
	struct net net;

	/* lock protects everything below. */
	pthread_mutex_t lock;
	/* Set by eventtap__set_trigger (the primary's thread, at its start and
	 * end); read under lock by whoever holds an output (vCPU threads). */
	et_trigger_fn trigger;
	void *trigger_opaque;
	bool holding;
	int failed;		/* a release failed (-errno): nothing is ever released again */
	uint64_t epoch;		/* tag of new output */
	struct et_item *head, *tail;
	uint64_t seq;		/* of the last item held */
	/*
	 * eventtap__release_async: the items from head up to seq queued_seq
	 * are issued (writes written) and wait for the flusher, which flushes,
	 * then takes them off and sends their frames. Until then they are
	 * still held: in every serialized list, in the stats, in the read
	 * overlay. The flusher thread is started by the first async release;
	 * fl_cond wakes it (fl_stop: exit), fl_done wakes whoever waits for
	 * the queue to drain.
	 */
	uint64_t queued_seq;
	pthread_t flusher;
	bool flusher_started, fl_stop;
	pthread_cond_t fl_cond, fl_done;
	uint64_t held_items, held_bytes, held_frames, held_writes;
	uint64_t released_items, released_bytes;
	uint64_t lat[ET_LAT_RING];
	uint64_t lat_n;
	/* disk write tracking for initial sync */
	uint64_t *dirty_blocks;
	uint64_t nr_blocks;
	uint32_t block_size;
};

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static size_t iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static void iov_gather(const struct iovec *iov, int n, uint8_t *dst)
{
	for (int i = 0; i < n; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

/* Copies src into the iov at byte position `at`. */
static void iov_scatter_at(const struct iovec *iov, int n, size_t at, const uint8_t *src, size_t len)
{
	for (int i = 0; i < n && len; i++) {
		size_t seg = iov[i].iov_len;
		if (at >= seg) {
			at -= seg;
			continue;
		}
		size_t take = seg - at < len ? seg - at : len;
		memcpy((uint8_t *)iov[i].iov_base + at, src, take);
		src += take;
		len -= take;
		at = 0;
	}
}

/* Appends an output to the held list, tagged with the current epoch. */
static int et__hold(struct eventtap *et, uint8_t kind, uint64_t offset, const struct iovec *iov,
		    int iovcnt)
{
	size_t len = iov ? iov_total(iov, iovcnt) : 0;
	struct et_item *it = malloc(sizeof(*it) + len);

	if (!it)
		return -ENOMEM;
	it->next = NULL;
	it->kind = kind;
	it->offset = offset;
	it->len = (uint32_t)len;
	it->t_held = now_ns();
	if (len)
		iov_gather(iov, iovcnt, it->data);
	it->epoch = et->epoch;
	it->seq = ++et->seq;
	if (et->tail)
		et->tail->next = it;
	else
		et->head = it;
	et->tail = it;
	et->held_items++;
	et->held_bytes += len;
	et->held_frames += kind == ET_NET_FRAME;
	et->held_writes += kind == ET_DISK_WRITE;
	return 0;
}

/* The trigger to call for an output just held, taken under et->lock (the
 * primary sets and clears it from its own thread); called after the lock
 * is dropped. */
struct et_fire {
	et_trigger_fn fn;
	void *opaque;
	uint64_t held_bytes;
	bool observable;
};

static struct et_fire et__fire_locked(const struct eventtap *et, bool observable)
{
	return (struct et_fire){ et->trigger, et->trigger_opaque, et->held_bytes, observable };
}

static void et__fire(struct et_fire f)
{
	if (f.fn)
		f.fn(f.opaque, f.held_bytes, f.observable);
}

static void et__mark_blocks(struct eventtap *et, uint64_t off, size_t len)
{
	if (!et->dirty_blocks || !len)
		return;
	uint64_t first = off / et->block_size, last = (off + len - 1) / et->block_size;
	for (uint64_t b = first; b <= last && b < et->nr_blocks; b++)
		et->dirty_blocks[b / 64] |= 1ull << (b % 64);
}

/* ---- the wrapped disk ---------------------------------------------------- */

static int etd__read(void *be, uint64_t off, const struct iovec *iov, int iovcnt)
{
	struct eventtap *et = be;
	size_t len = iov_total(iov, iovcnt);

	/* Under the lock, so a release cannot slip between the backend read
	 * and the overlay (it removes an item only after writing it). */
	pthread_mutex_lock(&et->lock);
	int ret = et->inner_disk->ops->read(et->inner_disk->be, off, iov, iovcnt);
	for (struct et_item *it = et->head; !ret && it; it = it->next) {
		if (it->kind != ET_DISK_WRITE)
			continue;
		uint64_t a = it->offset > off ? it->offset : off;
		uint64_t b = it->offset + it->len < off + len ? it->offset + it->len : off + len;
		if (a < b)
			iov_scatter_at(iov, iovcnt, a - off, it->data + (a - it->offset), b - a);
	}
	pthread_mutex_unlock(&et->lock);
	return ret;
}

static int etd__write(void *be, uint64_t off, const struct iovec *iov, int iovcnt)
{
	struct eventtap *et = be;
	int ret;

	pthread_mutex_lock(&et->lock);
	et__mark_blocks(et, off, iov_total(iov, iovcnt));
	if (!et->holding) {
		ret = et->inner_disk->ops->write(et->inner_disk->be, off, iov, iovcnt);
		pthread_mutex_unlock(&et->lock);
		return ret;
	}
	/* Space first: a full disk fails this write now, as it would
	 * unprotected, not at release after the guest was told "done". */
	if (et->inner_disk->ops->reserve)
		ret = et->inner_disk->ops->reserve(et->inner_disk->be, off, iov_total(iov, iovcnt));
	else
		ret = 0;
	if (!ret)
		ret = et__hold(et, ET_DISK_WRITE, off, iov, iovcnt);
	struct et_fire f = et__fire_locked(et, false);
	pthread_mutex_unlock(&et->lock);
	if (!ret)
		et__fire(f);
	return ret;
}

static int etd__flush(void *be)
{
	struct eventtap *et = be;
	int ret;

	pthread_mutex_lock(&et->lock);
	if (!et->holding) {
		pthread_mutex_unlock(&et->lock);
		return et->inner_disk->ops->flush(et->inner_disk->be);
	}
	ret = et__hold(et, ET_DISK_FLUSH, 0, NULL, 0);
	struct et_fire f = et__fire_locked(et, false);
	pthread_mutex_unlock(&et->lock);
	if (!ret)
		et__fire(f);
	return ret;
}

static const struct disk_ops et_disk_ops = {
	.read = etd__read,
	.write = etd__write,
	.flush = etd__flush,
};

/* ---- the wrapped net ----------------------------------------------------- */

static int etn__tx(void *be, const struct iovec *iov, int iovcnt)
{
	struct eventtap *et = be;
	int ret;

	pthread_mutex_lock(&et->lock);
	if (!et->holding) {
		pthread_mutex_unlock(&et->lock);
		return et->inner_net->ops->tx(et->inner_net->be, iov, iovcnt);
	}
	ret = et__hold(et, ET_NET_FRAME, 0, iov, iovcnt);
	struct et_fire f = et__fire_locked(et, true);
	pthread_mutex_unlock(&et->lock);
	if (!ret)
		et__fire(f);
	return ret;
}

static ssize_t etn__rx(void *be, void *buf, size_t len)
{
	struct eventtap *et = be;	/* input needs no synchronisation */
	return et->inner_net->ops->rx(et->inner_net->be, buf, len);
}

static int etn__rx_fd(void *be)
{
	struct eventtap *et = be;
	return et->inner_net->ops->rx_fd(et->inner_net->be);
}

static const struct net_ops et_net_ops = {
	.tx = etn__tx,
	.rx = etn__rx,
	.rx_fd = etn__rx_fd,
};

/* ---- lifecycle ------------------------------------------------------------- */

int eventtap__create(struct disk *disk, struct net *net, struct eventtap **out)
{
	struct eventtap *et = calloc(1, sizeof(*et));
	if (!et)
		return -ENOMEM;
	pthread_mutex_init(&et->lock, NULL);
	pthread_cond_init(&et->fl_cond, NULL);
	pthread_cond_init(&et->fl_done, NULL);
	et->inner_disk = disk;
	et->inner_net = net;
	et->epoch = 1;
	if (disk) {
		et->disk = *disk;
		et->disk.ops = &et_disk_ops;
		et->disk.be = et;
	}
	if (net) {
		et->net.ops = &et_net_ops;
		et->net.be = et;
	}
	*out = et;
	return 0;
}

static void et__free_list(struct et_item *it)
{
	while (it) {
		struct et_item *n = it->next;
		free(it);
		it = n;
	}
}

void eventtap__destroy(struct eventtap *et)
{
	if (!et)
		return;
	if (et->flusher_started) {
		pthread_mutex_lock(&et->lock);
		et->fl_stop = true;
		pthread_cond_broadcast(&et->fl_cond);
		pthread_mutex_unlock(&et->lock);
		pthread_join(et->flusher, NULL);
	}
	pthread_cond_destroy(&et->fl_cond);
	pthread_cond_destroy(&et->fl_done);
	et__free_list(et->head);
	free(et->dirty_blocks);
	pthread_mutex_destroy(&et->lock);
	free(et);
}

struct disk *eventtap__disk(struct eventtap *et) { return et->inner_disk ? &et->disk : NULL; }
struct net *eventtap__net(struct eventtap *et) { return et->inner_net ? &et->net : NULL; }

void eventtap__set_trigger(struct eventtap *et, et_trigger_fn fn, void *opaque)
{
	pthread_mutex_lock(&et->lock);
	et->trigger = fn;
	et->trigger_opaque = opaque;
	pthread_mutex_unlock(&et->lock);
}

void eventtap__set_holding(struct eventtap *et, bool on, uint64_t epoch)
{
	pthread_mutex_lock(&et->lock);
	et->holding = on;
	if (on)
		et->epoch = epoch;
	pthread_mutex_unlock(&et->lock);
}

bool eventtap__holding(struct eventtap *et)
{
	pthread_mutex_lock(&et->lock);
	bool h = et->holding;
	pthread_mutex_unlock(&et->lock);
	return h;
}

int eventtap__track_disk(struct eventtap *et, bool on, uint32_t block_size)
{
	pthread_mutex_lock(&et->lock);
	free(et->dirty_blocks);
	et->dirty_blocks = NULL;
	if (on && et->inner_disk && block_size) {
		et->block_size = block_size;
		et->nr_blocks = (et->inner_disk->size + block_size - 1) / block_size;
		et->dirty_blocks = calloc((et->nr_blocks + 63) / 64, 8);
	}
	int ret = (on && !et->dirty_blocks) ? -ENOMEM : 0;
	pthread_mutex_unlock(&et->lock);
	return ret;
}

int eventtap__collect_disk_dirty(struct eventtap *et, uint64_t *bitmap)
{
	pthread_mutex_lock(&et->lock);
	if (!et->dirty_blocks) {
		pthread_mutex_unlock(&et->lock);
		return -EINVAL;
	}
	for (uint64_t w = 0; w < (et->nr_blocks + 63) / 64; w++) {
		bitmap[w] |= et->dirty_blocks[w];
		et->dirty_blocks[w] = 0;
	}
	pthread_mutex_unlock(&et->lock);
	return 0;
}

uint64_t eventtap__seal(struct eventtap *et)
{
	pthread_mutex_lock(&et->lock);
	uint64_t e = et->epoch++;
	pthread_mutex_unlock(&et->lock);
	return e;
}

int eventtap__serialize(struct eventtap *et, struct sbuf *out, uint32_t *count)
{
	uint32_t n = 0;
	size_t at = out->len;
	int ret = sbuf__append_u32(out, 0);

	pthread_mutex_lock(&et->lock);
	for (struct et_item *it = et->head; !ret && it; it = it->next, n++) {
		ret = sbuf__append_u8(out, it->kind);
		if (!ret) ret = sbuf__append_u64(out, it->epoch);
		if (!ret) ret = sbuf__append_u64(out, it->offset);
		if (!ret) ret = sbuf__append_u32(out, it->len);
		if (!ret && it->len) ret = sbuf__append(out, it->data, it->len);
	}
	pthread_mutex_unlock(&et->lock);
	if (!ret) {
		memcpy(out->data + at, &n, 4);
		if (count)
			*count = n;
	}
	return ret;
}

/* Takes the head item off the list (lock held), counting it released. */
static struct et_item *et__pop(struct eventtap *et, uint64_t t)
{
	struct et_item *it = et->head;
	et->head = it->next;
	if (!et->head)
		et->tail = NULL;
	it->next = NULL;
	et->held_items--;
	et->held_bytes -= it->len;
	et->held_frames -= it->kind == ET_NET_FRAME;
	et->held_writes -= it->kind == ET_DISK_WRITE;
	et->released_items++;
	et->released_bytes += it->len;
	et->lat[et->lat_n++ % ET_LAT_RING] = t - it->t_held;
	return it;
}

/* Puts items taken off the list back in front, in their order (lock
 * held): they are older than anything still on it. */
static void et__unpop(struct eventtap *et, struct et_item *items)
{
	struct et_item *last = NULL;
	for (struct et_item *it = items; it; last = it, it = it->next) {
		et->held_items++;
		et->held_bytes += it->len;
		et->held_frames += it->kind == ET_NET_FRAME;
		et->held_writes += it->kind == ET_DISK_WRITE;
		et->released_items--;
		et->released_bytes -= it->len;
	}
	if (!last)
		return;
	last->next = et->head;
	if (!et->head)
		et->tail = last;
	et->head = items;
}

/*
 * Releases in issue order. Disk writes go to the backend under the lock
 * (fast: page cache) and leave the list only once written, so a reader
 * never misses them; the flush and the frames follow outside the lock.
 * Frames go out only after the flush: a reply that says "written" never
 * overtakes the write it reports.
 *
 * A write or flush that fails stops everything: the failed write and
 * what follows stay held, everything this release took off goes back
 * (writes already done too: after a failed flush nobody knows whether they
 * are durable, and whoever takes the guest over re-issues them), and the
 * event tap is failed for good (holding, releasing nothing). The guest was told
 * its write was done; the only outputs that may still leave are those of
 * a checkpoint another host can complete (the caller hands over or stops
 * the VM). A frame is never sent after a write it may depend on failed.
 */
/* Sends the frames among items (taken off the list) and drops them from
 * it; what is left is the disk's. */
static struct et_item *et__send_frames(struct eventtap *et, struct et_item *items)
{
	struct et_item *keep = NULL, **kt = &keep;
	for (struct et_item *it = items; it;) {
		struct et_item *n = it->next;
		if (it->kind == ET_NET_FRAME) {
			struct iovec v = { it->data, it->len };
			et->inner_net->ops->tx(et->inner_net->be, &v, 1);	/* lost: like a lost packet */
			free(it);
		} else {
			*kt = it;
			kt = &it->next;
		}
		it = n;
	}
	*kt = NULL;
	return keep;
}

/* Waits (lock held) until the flusher has nothing queued, or failed. */
static void et__drain_locked(struct eventtap *et)
{
	while (!et->failed && et->head && et->head->seq <= et->queued_seq)
		pthread_cond_wait(&et->fl_done, &et->lock);
}

static int et__release_upto(struct eventtap *et, uint64_t epoch, bool all, bool frames_first)
{
	struct et_item *taken = NULL, **ttail = &taken;	/* in issue order */
	bool need_flush = false;
	int ret = 0;

	pthread_mutex_lock(&et->lock);
	/* What an async release queued goes first, in order. */
	et__drain_locked(et);
	uint64_t t = now_ns();
	if (et->failed) {
		ret = et->failed;
		pthread_mutex_unlock(&et->lock);
		return ret;
	}
	/*
	 * Releasing everything ends holding. The lock stays held until the
	 * last held output is out, so output issued meanwhile (which passes
	 * straight through now) cannot overtake it: a later write to the
	 * same block must land after the earlier one.
	 */
	if (all)
		et->holding = false;
	while (et->head && (all || et->head->epoch <= epoch)) {
		struct et_item *it = et->head;
		if (it->kind == ET_DISK_WRITE) {
			struct iovec v = { it->data, it->len };
			ret = et->inner_disk->ops->write(et->inner_disk->be, it->offset, &v, 1);
			if (ret)
				break;
			need_flush = true;
		} else if (it->kind == ET_DISK_FLUSH) {
			need_flush = true;
		}
		it = et__pop(et, t);
		*ttail = it;
		ttail = &it->next;
	}
	bool locked = true;
	if (!ret && !all) {
		pthread_mutex_unlock(&et->lock);
		locked = false;
	}
	/* Every write of the batch is issued: with the secondary's copy
	 * durable, the frames need not wait for this disk's flush. */
	if (!ret && frames_first)
		taken = et__send_frames(et, taken);
	if (!ret && need_flush && et->inner_disk)
		ret = et->inner_disk->ops->flush(et->inner_disk->be);
	if (ret) {
		if (!locked)
			pthread_mutex_lock(&et->lock);
		et->failed = ret;
		et->holding = true;
		et__unpop(et, taken);
		pthread_mutex_unlock(&et->lock);
		return ret;
	}
	taken = et__send_frames(et, taken);
	for (struct et_item *it = taken; it;) {
		struct et_item *n = it->next;
		free(it);
		it = n;
	}
	if (all)
		pthread_mutex_unlock(&et->lock);
	return 0;
}

/*
 * The flusher: takes what is queued, flushes the disk outside the lock,
 * then takes those items off and sends their frames, in order. A failed
 * flush fails the event tap as a synchronous release does: the items stay
 * held, nothing more leaves, and the trigger is called so that the
 * primary's thread finds out at once (its next release returns the error).
 */
static void *et__flusher(void *arg)
{
	struct eventtap *et = arg;

	pthread_mutex_lock(&et->lock);
	for (;;) {
		while (!et->fl_stop && (et->failed || !et->head || et->head->seq > et->queued_seq))
			pthread_cond_wait(&et->fl_cond, &et->lock);
		if (et->fl_stop)
			break;
		uint64_t upto = et->queued_seq;
		bool need_flush = false;
		for (struct et_item *it = et->head; it && it->seq <= upto; it = it->next)
			need_flush |= it->kind != ET_NET_FRAME;
		pthread_mutex_unlock(&et->lock);
		int ret = need_flush ? et->inner_disk->ops->flush(et->inner_disk->be) : 0;
		pthread_mutex_lock(&et->lock);
		if (ret) {
			et->failed = ret;
			et->holding = true;
			pthread_cond_broadcast(&et->fl_done);
			struct et_fire f = et__fire_locked(et, true);
			pthread_mutex_unlock(&et->lock);
			et__fire(f);
			pthread_mutex_lock(&et->lock);
			continue;
		}
		struct et_item *taken = NULL, **ttail = &taken;
		uint64_t t = now_ns();
		while (et->head && et->head->seq <= upto) {
			struct et_item *it = et__pop(et, t);
			*ttail = it;
			ttail = &it->next;
		}
		/* Frames out under the lock: a later synchronous release (it
		 * waits for fl_done) must not overtake them. */
		et__free_list(et__send_frames(et, taken));
		pthread_cond_broadcast(&et->fl_done);
	}
	pthread_mutex_unlock(&et->lock);
	return NULL;
}

int eventtap__release_async(struct eventtap *et, uint64_t epoch)
{
	int ret = 0;
	uint64_t t = now_ns();

	pthread_mutex_lock(&et->lock);
	if (et->failed) {
		ret = et->failed;
		pthread_mutex_unlock(&et->lock);
		return ret;
	}
	/* Frames at the front with nothing queued before them need no
	 * flush: out at once, from this thread. */
	struct et_item *now = NULL, **ntail = &now;
	while (et->head && et->head->seq > et->queued_seq && et->head->epoch <= epoch &&
	       et->head->kind == ET_NET_FRAME) {
		struct et_item *it = et__pop(et, t);
		*ntail = it;
		ntail = &it->next;
	}
	et__free_list(et__send_frames(et, now));
	/* The rest: writes issued here, in order; the flush and what follows
	 * it go to the flusher. */
	struct et_item *it = et->head;
	while (it && it->seq <= et->queued_seq)
		it = it->next;
	uint64_t queued = et->queued_seq;
	for (; it && it->epoch <= epoch; it = it->next) {
		if (it->kind == ET_DISK_WRITE) {
			struct iovec v = { it->data, it->len };
			ret = et->inner_disk->ops->write(et->inner_disk->be, it->offset, &v, 1);
			if (ret)
				break;
		}
		queued = it->seq;
	}
	if (ret) {
		/* Nothing more leaves; what was queued stays held too. */
		et->failed = ret;
		et->holding = true;
		pthread_cond_broadcast(&et->fl_done);
		pthread_mutex_unlock(&et->lock);
		return ret;
	}
	if (queued != et->queued_seq && !et->flusher_started) {
		int e = pthread_create(&et->flusher, NULL, et__flusher, et);
		if (e) {
			/* No thread: release synchronously instead. */
			pthread_mutex_unlock(&et->lock);
			return et__release_upto(et, epoch, false, false);
		}
		et->flusher_started = true;
	}
	if (queued != et->queued_seq) {
		et->queued_seq = queued;
		pthread_cond_signal(&et->fl_cond);
	}
	pthread_mutex_unlock(&et->lock);
	return 0;
}

int eventtap__drain(struct eventtap *et)
{
	pthread_mutex_lock(&et->lock);
	et__drain_locked(et);
	int f = et->failed;
	pthread_mutex_unlock(&et->lock);
	return f;
}

int eventtap__failed(struct eventtap *et)
{
	pthread_mutex_lock(&et->lock);
	int f = et->failed;
	pthread_mutex_unlock(&et->lock);
	return f;
}

int eventtap__release(struct eventtap *et, uint64_t epoch)
{
	return et__release_upto(et, epoch, false, false);
}

int eventtap__release_flush_last(struct eventtap *et, uint64_t epoch)
{
	return et__release_upto(et, epoch, false, true);
}

int eventtap__release_all(struct eventtap *et)
{
	return et__release_upto(et, 0, true, false);
}

int eventtap__send_frame(struct eventtap *et, const void *frame, size_t len)
{
	struct iovec v = { (void *)(uintptr_t)frame, len };
	if (!et->inner_net)
		return -ENODEV;
	return et->inner_net->ops->tx(et->inner_net->be, &v, 1);
}

/* ---- serialized lists on the secondary ---------------------------------------- */

struct et_view {
	uint8_t kind;
	uint64_t epoch, offset;
	uint32_t len;
	const uint8_t *data;
};

/* Walks a serialized list; fn may be NULL (check only). */
static int et_list__walk(const void *blob, size_t len, uint64_t max_epoch, uint64_t disk_size,
			 int (*fn)(void *ctx, const struct et_view *v), void *ctx,
			 char *err, size_t errlen)
{
	struct sreader r;
	uint32_t n;

	sreader__init(&r, blob, len);
	if (sreader__u32(&r, &n)) {
		snprintf(err, errlen, "output list: truncated count");
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct et_view v;
		const void *p;
		if (sreader__u8(&r, &v.kind) || sreader__u64(&r, &v.epoch) ||
		    sreader__u64(&r, &v.offset) || sreader__u32(&r, &v.len) ||
		    sreader__view(&r, &p, v.len)) {
			snprintf(err, errlen, "output list: item %u of %u is truncated", i, n);
			return -EBADMSG;
		}
		v.data = p;
		if (v.kind < ET_NET_FRAME || v.kind > ET_DISK_FLUSH || v.epoch > max_epoch ||
		    (v.kind == ET_DISK_WRITE && (v.offset > disk_size || v.len > disk_size - v.offset)) ||
		    (v.kind == ET_NET_FRAME && (v.len < 14 || v.len > 65536))) {
			snprintf(err, errlen, "output list: item %u is invalid (kind %u, epoch %llu)", i,
				 v.kind, (unsigned long long)v.epoch);
			return -EBADMSG;
		}
		if (fn) {
			int ret = fn(ctx, &v);
			if (ret)
				return ret;
		}
	}
	if (sreader__remaining(&r)) {
		snprintf(err, errlen, "output list: %zu trailing bytes", sreader__remaining(&r));
		return -EBADMSG;
	}
	return 0;
}

int et_list__check(const void *blob, size_t len, uint64_t max_epoch, uint64_t disk_size,
		   char *err, size_t errlen)
{
	return et_list__walk(blob, len, max_epoch, disk_size, NULL, NULL, err, errlen);
}

struct reserve_ctx {
	struct disk *d;
	uint64_t min_epoch;
	int err;
	uint64_t offset;
};

static int reserve_item(void *p, const struct et_view *v)
{
	struct reserve_ctx *c = p;
	if (v->kind != ET_DISK_WRITE || v->epoch < c->min_epoch)
		return 0;
	int r = c->d->ops->reserve(c->d->be, v->offset, v->len);
	if (r) {
		c->err = r;
		c->offset = v->offset;
	}
	return r;
}

int et_list__reserve_disk(struct eventtap *et, const void *blob, size_t len, uint64_t min_epoch,
			  char *err, size_t errlen)
{
	struct disk *d = et->inner_disk;
	struct reserve_ctx c = { .d = d, .min_epoch = min_epoch };
	if (!d || !d->ops->reserve)
		return 0;
	int ret = et_list__walk(blob, len, UINT64_MAX, d->size, reserve_item, &c, err, errlen);
	if (c.err)
		snprintf(err, errlen, "reserving disk space at byte %llu: %s",
			 (unsigned long long)c.offset, strerror(-c.err));
	return ret;
}

struct apply_ctx {
	struct eventtap *et;
	uint64_t min_epoch;
	bool with_disk, with_net;
	uint32_t frames, writes;
	bool wrote;
	int err;
};

static int apply_item(void *p, const struct et_view *v)
{
	struct apply_ctx *c = p;
	struct eventtap *et = c->et;

	if (v->epoch < c->min_epoch)
		return 0;
	if (v->kind == ET_DISK_WRITE && c->with_disk && et->inner_disk) {
		struct iovec io = { (void *)(uintptr_t)v->data, v->len };
		int r = et->inner_disk->ops->write(et->inner_disk->be, v->offset, &io, 1);
		if (r) {
			c->err = r;
			return r;	/* nothing after a failed write */
		}
		c->writes++;
		c->wrote = true;
	} else if (v->kind == ET_DISK_FLUSH && c->with_disk) {
		c->wrote = true;
	} else if (v->kind == ET_NET_FRAME && c->with_net && et->inner_net) {
		struct iovec io = { (void *)(uintptr_t)v->data, v->len };
		et->inner_net->ops->tx(et->inner_net->be, &io, 1);
		c->frames++;
	}
	return 0;
}

int et_list__apply_disk(struct eventtap *et, const void *blob, size_t len, uint64_t min_epoch)
{
	struct apply_ctx c = { .et = et, .min_epoch = min_epoch, .with_disk = true };
	char err[128];
	uint64_t size = et->inner_disk ? et->inner_disk->size : 0;
	int ret = et_list__walk(blob, len, UINT64_MAX, size, apply_item, &c, err, sizeof(err));
	if (!ret && c.wrote && et->inner_disk)
		ret = et->inner_disk->ops->flush(et->inner_disk->be);
	return ret;
}

int et_list__reissue(struct eventtap *et, const void *blob, size_t len, bool with_disk,
		     uint32_t *frames, uint32_t *writes)
{
	struct apply_ctx c = { .et = et, .with_disk = with_disk };
	char err[128];
	uint64_t size = et->inner_disk ? et->inner_disk->size : 0;
	/* Disk first (and flushed), then frames: as at release. A write or
	 * flush that failed sends no frame (it may report that write). */
	int ret = et_list__walk(blob, len, UINT64_MAX, size, apply_item, &c, err, sizeof(err));
	if (!ret)
		ret = c.err;
	if (!ret && c.wrote && et->inner_disk)
		ret = et->inner_disk->ops->flush(et->inner_disk->be);
	c.with_disk = false;
	c.with_net = true;
	if (!ret)
		ret = et_list__walk(blob, len, UINT64_MAX, size, apply_item, &c, err, sizeof(err));
	if (frames)
		*frames = c.frames;
	if (writes)
		*writes = c.writes;
	return ret;
}

/* ---- stats and policy ---------------------------------------------------------- */

void eventtap__stats(struct eventtap *et, struct et_stats *s)
{
	pthread_mutex_lock(&et->lock);
	*s = (struct et_stats){
		.held_items = et->held_items, .held_bytes = et->held_bytes,
		.held_frames = et->held_frames, .held_writes = et->held_writes,
		.released_items = et->released_items, .released_bytes = et->released_bytes,
		.oldest_held_ns = et->head ? now_ns() - et->head->t_held : 0,
	};
	pthread_mutex_unlock(&et->lock);
}

size_t eventtap__latencies(struct eventtap *et, uint64_t *out, size_t max)
{
	pthread_mutex_lock(&et->lock);
	size_t have = et->lat_n < ET_LAT_RING ? et->lat_n : ET_LAT_RING;
	size_t n = have < max ? have : max;
	for (size_t i = 0; i < n; i++)
		out[i] = et->lat[(et->lat_n - n + i) % ET_LAT_RING];
	pthread_mutex_unlock(&et->lock);
	return n;
}

static int parse_u32(const char *s, size_t n, uint32_t *out)
{
	uint64_t v = 0;
	if (!n || n > 9)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = (uint32_t)v;
	return 0;
}

int et_policy__parse(const char *s, struct et_policy_cfg *out, char *err, size_t errlen)
{
	struct et_policy_cfg p = { .epoch_ms = 20, .window_us = 500, .max_ms = 100 };
	const char *c1 = strchr(s, ':');
	size_t nl = c1 ? (size_t)(c1 - s) : strlen(s);

	if (nl == 5 && !strncmp(s, "event", 5) && !c1) {
		p.policy = ET_POLICY_EVENT;
	} else if (nl == 5 && !strncmp(s, "epoch", 5)) {
		p.policy = ET_POLICY_EPOCH;
		if (c1 && (parse_u32(c1 + 1, strlen(c1 + 1), &p.epoch_ms) || !p.epoch_ms ||
			   p.epoch_ms > 60000))
			goto bad;
	} else if (nl == 6 && !strncmp(s, "hybrid", 6)) {
		p.policy = ET_POLICY_HYBRID;
		if (c1) {
			const char *c2 = strchr(c1 + 1, ':');
			size_t wl = c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1);
			if (parse_u32(c1 + 1, wl, &p.window_us) || p.window_us > 1000000)
				goto bad;
			if (c2 && (parse_u32(c2 + 1, strlen(c2 + 1), &p.max_ms) || !p.max_ms ||
				   p.max_ms > 60000))
				goto bad;
		}
	} else {
		goto bad;
	}
	*out = p;
	return 0;
bad:
	snprintf(err, errlen,
		 "policy '%s': expected event, epoch[:MS] (1-60000) or "
		 "hybrid[:WINDOW_US[:MAX_MS]]", s);
	return -EINVAL;
}

void et_policy__format(const struct et_policy_cfg *p, char *buf, size_t len)
{
	switch (p->policy) {
	case ET_POLICY_EVENT: snprintf(buf, len, "event"); break;
	case ET_POLICY_EPOCH: snprintf(buf, len, "epoch:%u", p->epoch_ms); break;
	case ET_POLICY_HYBRID: snprintf(buf, len, "hybrid:%u:%u", p->window_us, p->max_ms); break;
	}
}
