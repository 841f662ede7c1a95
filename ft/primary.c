/*
 * primary.c - the protecting side: connect, HELLO, initial sync, then one
 * checkpoint transaction after another until the secondary is lost or
 * protection is cancelled.
 *
 *   checkpoint E:  pause ─ collect dirty pages, copy them out, vCPU +
 *                  device state, seal epoch E of the event tap ─ resume
 *                  BEGIN(E) · PAGES(E)… · STATE(E) · OUTPUTS(E) · COMMIT(E)
 *                  wait ACK(E) ─ release the outputs tagged <= E
 *
 * The guest runs while the capture travels; output it issues meanwhile is
 * tagged E+1 and waits for the next checkpoint.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "ft/ft_internal.h"

struct capture {
	/* Pages taken (vm__nr_pages bits). Between checkpoints it is all
	 * zeros, except after the sync: the last round's pages, for the
	 * first checkpoint. */
	uint64_t *bitmap;
	struct vm_page_list list;	/* the pages captured, in list.pages */
	uint8_t *data;		/* their contents, copied while paused */
	size_t nr, cap;		/* nr == list.nr; cap: pages data holds */
	struct sbuf state, outputs, wire;
	uint64_t *disk_bitmap;	/* replicated sync: dirty 64 KiB blocks */
	struct ft_page_cache cache;	/* pages as the secondary holds them (this run's) */
	struct sbuf deltas;		/* a PAGES message's CRCs and deltas */
	struct iovec *iov;		/* a PAGES message: head, deltas, whole pages */
	size_t iov_cap;
	struct copier *copier;		/* a second thread for big captures (NULL: not yet) */
	unsigned debug_every;		/* FTVM_DEBUG_PAUSE=N: every Nth pause, in steps (0: off) */
};

/*
 * A large capture's copy, in two threads: the 2nd part of the pages goes
 * to this thread while the role thread copies the first and saves the
 * vCPU and device state (ioctls that mostly wait), so the pause of a
 * checkpoint of ~1,000 pages is about half its copy. All fields under
 * lock; the job's memory is the capture's, which the role thread does not
 * touch until the job is done.
 */
struct copier {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vm *vm;
	const uint64_t *pages;
	uint8_t *dst;
	size_t n;
	bool busy;	/* a job is set (W: role thread) or running; cleared when done (W: copier) */
	bool stop;	/* W: role thread */
};

/* Below this many pages one thread copies: waking a second costs more. */
#define FT_COPY_SPLIT_PAGES 128

static void copy_pages(struct vm *vm, const uint64_t *pages, uint8_t *dst, size_t n)
{
	for (size_t i = 0; i < n; i++)
		memcpy(dst + i * FT_PAGE, vm__guest_ptr(vm, vm__page_gpa(vm, pages[i]), FT_PAGE), FT_PAGE);
}

static void *copier__main(void *arg)
{
	struct copier *cp = arg;
	pthread_setname_np(pthread_self(), "ft-copy");
	pthread_mutex_lock(&cp->lock);
	for (;;) {
		while (!cp->busy && !cp->stop)
			pthread_cond_wait(&cp->cond, &cp->lock);
		if (cp->stop)
			break;
		struct vm *vm = cp->vm;
		const uint64_t *pages = cp->pages;
		uint8_t *dst = cp->dst;
		size_t n = cp->n;
		pthread_mutex_unlock(&cp->lock);
		copy_pages(vm, pages, dst, n);
		pthread_mutex_lock(&cp->lock);
		cp->busy = false;
		pthread_cond_broadcast(&cp->cond);
	}
	pthread_mutex_unlock(&cp->lock);
	return NULL;
}

/* The copier, started on first use; NULL if it cannot be (one thread copies). */
static struct copier *copier__get(struct capture *c)
{
	if (c->copier)
		return c->copier;
	struct copier *cp = calloc(1, sizeof(*cp));
	if (!cp)
		return NULL;
	pthread_mutex_init(&cp->lock, NULL);
	pthread_cond_init(&cp->cond, NULL);
	if (pthread_create(&cp->thread, NULL, copier__main, cp)) {
		pthread_mutex_destroy(&cp->lock);
		pthread_cond_destroy(&cp->cond);
		free(cp);
		return NULL;
	}
	return c->copier = cp;
}

static void copier__start(struct copier *cp, struct vm *vm, const uint64_t *pages, uint8_t *dst, size_t n)
{
	pthread_mutex_lock(&cp->lock);
	cp->vm = vm;
	cp->pages = pages;
	cp->dst = dst;
	cp->n = n;
	cp->busy = true;
	pthread_cond_broadcast(&cp->cond);
	pthread_mutex_unlock(&cp->lock);
}

static void copier__wait(struct copier *cp)
{
	pthread_mutex_lock(&cp->lock);
	while (cp->busy)
		pthread_cond_wait(&cp->cond, &cp->lock);
	pthread_mutex_unlock(&cp->lock);
}

static void copier__free(struct copier *cp)
{
	if (!cp)
		return;
	pthread_mutex_lock(&cp->lock);
	cp->stop = true;
	pthread_cond_broadcast(&cp->cond);
	pthread_mutex_unlock(&cp->lock);
	pthread_join(cp->thread, NULL);
	pthread_mutex_destroy(&cp->lock);
	pthread_cond_destroy(&cp->cond);
	free(cp);
}

static void capture__free(struct capture *c)
{
	free(c->bitmap);
	free(c->list.pages);
	free(c->data);
	free(c->disk_bitmap);
	sbuf__free(&c->state);
	sbuf__free(&c->outputs);
	sbuf__free(&c->wire);
	ft_page_cache__free(&c->cache);
	sbuf__free(&c->deltas);
	free(c->iov);
	copier__free(c->copier);
	c->copier = NULL;
}

static int capture__reserve(struct capture *c, size_t n)
{
	if (n <= c->cap)
		return 0;
	uint8_t *d = realloc(c->data, n * FT_PAGE);
	if (!d)
		return -ENOMEM;
	c->data = d;
	c->cap = n;
	return 0;
}

/* Dies like a killed process would, at a chosen point (tests). */
static void maybe_die(struct ft *ft, enum ft_inject at)
{
	if (ft->inject == at) {
		fprintf(stderr, "ftvm: ft: injected death (%d) at epoch %llu\n", (int)at,
			(unsigned long long)ft->pri.epoch);
		/* What was sent is on its way, as a killed process's socket
		 * data is: a batch the fault came in the middle of leaves
		 * first (else "after BEGIN" would be "before BEGIN"). */
		xport__batch_end(ft->x);
		raise(SIGKILL);
	}
}

/* Protection is to end: migrate_cancel, or the thread is being stopped. */
static bool stopping(struct ft *ft)
{
	return atomic_load(&ft->stop) || atomic_load(&ft->pri.cancel_req);
}

static int send_buf(struct ft *ft, uint16_t type, uint32_t flags, uint64_t epoch, const void *p,
		    size_t len)
{
	int ret = xport__send_buf(ft->x, type, flags, epoch, p, len);
	if (ret)
		ft__error(ft, "sending %s to %s: %s", ft_msg_names[type], ft->peer, strerror(-ret));
	return ret;
}

/*
 * Receives the next message that is not a heartbeat (the link thread
 * sends ours). A silent peer is lost after the heartbeat timeout.
 */
static int recv_msg(struct ft *ft, struct xport_msg *m, int timeout_ms)
{
	char err[256];
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : ft__now_ns() + (uint64_t)timeout_ms * 1000000u;

	for (;;) {
		int ret = xport__recv(ft->x, m, (int)ft__hb_ms(ft), err, sizeof(err));
		if (ret == 0 && m->type == FT_MSG_HEARTBEAT)
			continue;
		if (ret == 0 && m->type == FT_MSG_ERROR) {
			ft__error(ft, "secondary %s refused: %.*s", ft->peer, (int)m->payload.len,
				  (const char *)m->payload.data);
			return -EPROTO;
		}
		if (ret == 0)
			return 0;
		if (ret != -ETIMEDOUT) {
			ft__error(ft, "link to secondary %s: %s", ft->peer,
				  ret == -EPIPE ? "closed by the peer" : err);
			return ret;
		}
		if (stopping(ft))
			return -ECANCELED;
		if (ft_link__peer_silent(ft, err, sizeof(err))) {
			ft__error(ft, "%s", err);
			return -ETIMEDOUT;
		}
		if (ft__now_ns() >= deadline)
			return -ETIMEDOUT;
	}
}

/*
 * Sends pages: u32 count, u64 index[count], then the data (LZ4-coded if
 * on). copy: the pages' contents, contiguous (a checkpoint's capture); NULL
 * reads them from guest memory (the initial sync, while the guest runs).
 */
static int send_pages(struct ft *ft, uint16_t type, uint64_t epoch, const uint64_t *idx,
		      const uint8_t *copy, size_t n, struct sbuf *wire)
{
	struct vm *vm = ft->cfg.vm;
	bool lz4 = ft->cfg.compress;
	struct iovec *iov = NULL;
	int niov = 0, ret;

	sbuf__reset(wire);
	uint32_t count = (uint32_t)n;
	ret = sbuf__append(wire, &count, 4);
	if (!ret)
		ret = sbuf__append(wire, idx, n * 8);
	if (ret)
		return ret;
	size_t head = wire->len;
	if (lz4 && copy) {
		ret = page_codec__encode(copy, n * FT_PAGE, wire);
	} else if (lz4) {
		for (size_t i = 0; i < n && !ret; i++)
			ret = page_codec__encode(vm__guest_ptr(vm, vm__page_gpa(vm, idx[i]), FT_PAGE),
						 FT_PAGE, wire);
	} else if (!copy) {
		/*
		 * Raw pages of a running guest (the sync): copied once, so that
		 * what is checksummed is what is sent. Gathered straight from
		 * guest memory, a page the guest writes between the checksum and
		 * the send would arrive with a checksum that no longer matches
		 * (and the secondary rightly refuses the stream).
		 */
		for (size_t i = 0; i < n && !ret; i++)
			ret = sbuf__append(wire, vm__guest_ptr(vm, vm__page_gpa(vm, idx[i]), FT_PAGE), FT_PAGE);
	} else {
		/* Raw, from the capture (which no one writes): gathered. */
		iov = malloc(2 * sizeof(*iov));
		if (!iov)
			return -ENOMEM;
		iov[niov++] = (struct iovec){ wire->data, wire->len };
		iov[niov++] = (struct iovec){ (void *)(uintptr_t)copy, n * FT_PAGE };
	}
	if (ret) {
		free(iov);
		return ret;
	}
	pthread_mutex_lock(&ft->lock);
	ft->pri.bytes_raw += n * FT_PAGE;
	ft->pri.bytes_wire += lz4 ? wire->len - head : n * FT_PAGE;
	if (type == FT_MSG_PAGES)
		ft->pri.pages_sent.whole += n;	/* no copies kept: every page whole */
	pthread_mutex_unlock(&ft->lock);
	if (lz4 || !copy)
		return send_buf(ft, type, lz4 ? FT_FLAG_LZ4 : 0, epoch, wire->data, wire->len);
	ret = xport__send(ft->x, type, 0, epoch, iov, niov);
	if (ret)
		ft__error(ft, "sending %s to %s: %s", ft_msg_names[type], ft->peer, strerror(-ret));
	free(iov);
	return ret;
}

/*
 * A checkpoint's pages, delta-coded (FT_FLAG_DELTA; the layout is in
 * page_cache.c): the index and codes in c->wire, the CRCs and deltas in
 * c->deltas, then the whole pages straight from the capture, or LZ4-coded
 * into c->wire's tail when compress is on.
 */
static int send_delta_pages(struct ft *ft, uint64_t epoch, const uint64_t *idx, const uint8_t *copy, size_t n,
			    struct capture *c)
{
	struct sbuf *w = &c->wire;
	struct ft_page_counts cnt = { 0, 0, 0 };
	bool lz4 = ft->cfg.compress;
	uint32_t count = (uint32_t)n;
	size_t whole = 0;
	int ret;

	sbuf__reset(w);
	sbuf__reset(&c->deltas);
	ret = sbuf__append(w, &count, 4);
	if (!ret)
		ret = sbuf__append(w, idx, n * 8);
	if (!ret)
		ret = sbuf__reserve(w, n * 2);
	if (!ret && c->iov_cap < n + 3) {
		struct iovec *v = realloc(c->iov, (n + 3) * sizeof(*v));
		if (v) {
			c->iov = v;
			c->iov_cap = n + 3;
		} else {
			ret = -ENOMEM;
		}
	}
	if (ret)
		return ret;
	size_t codes = w->len;
	w->len += n * 2;
	int niov = 2;	/* [0] index and codes, [1] deltas; whole pages from [2] */
	for (size_t i = 0; i < n && !ret; i++) {
		uint16_t code;
		const uint8_t *page = copy + i * FT_PAGE;
		ret = ft_page_cache__encode(&c->cache, idx[i], page, &c->deltas, &code, &cnt);
		w->data[codes + 2 * i] = (uint8_t)code;
		w->data[codes + 2 * i + 1] = (uint8_t)(code >> 8);
		if (ret || code != FT_PAGE_WHOLE)
			continue;
		whole++;
		if (lz4)
			continue;
		struct iovec *last = &c->iov[niov - 1];
		if (niov > 2 && (const uint8_t *)last->iov_base + last->iov_len == page)
			last->iov_len += FT_PAGE;	/* the capture's next page */
		else
			c->iov[niov++] = (struct iovec){ (void *)(uintptr_t)page, FT_PAGE };
	}
	size_t head = w->len;
	for (size_t i = 0; lz4 && i < n && !ret; i++) {
		uint16_t code = (uint16_t)(w->data[codes + 2 * i] | w->data[codes + 2 * i + 1] << 8);
		if (code == FT_PAGE_WHOLE)
			ret = page_codec__encode(copy + i * FT_PAGE, FT_PAGE, w);
	}
	if (ret)
		return ret;
	c->iov[0] = (struct iovec){ w->data, codes + n * 2 };
	c->iov[1] = (struct iovec){ c->deltas.data, c->deltas.len };
	if (lz4)
		c->iov[niov++] = (struct iovec){ w->data + head, w->len - head };
	size_t sent = c->deltas.len + (lz4 ? w->len - head : whole * FT_PAGE);
	pthread_mutex_lock(&ft->lock);
	ft->pri.bytes_raw += n * FT_PAGE;
	ft->pri.bytes_wire += sent;
	ft->pri.pages_sent.delta += cnt.delta;
	ft->pri.pages_sent.whole += cnt.whole;
	ft->pri.pages_sent.zero += cnt.zero;
	pthread_mutex_unlock(&ft->lock);
	ret = xport__send(ft->x, FT_MSG_PAGES, FT_FLAG_DELTA | (lz4 ? FT_FLAG_LZ4 : 0), epoch, c->iov, niov);
	if (ret)
		ft__error(ft, "sending PAGES to %s: %s", ft->peer, strerror(-ret));
	return ret;
}

/* The sync's figures, read by `info migrate` under the lock. */
static void sync_count(struct ft *ft, uint64_t *counter, uint64_t n)
{
	pthread_mutex_lock(&ft->lock);
	*counter += n;
	pthread_mutex_unlock(&ft->lock);
}

/* The sync's progress: bytes looked at (sent, or read and found zero). */
static void sync_progress(struct ft *ft, uint64_t done_bytes)
{
	pthread_mutex_lock(&ft->lock);
	ft->pri.sync_done_bytes += done_bytes;
	if (ft->pri.sync_done_bytes > ft->pri.sync_total_bytes)
		ft->pri.sync_total_bytes = ft->pri.sync_done_bytes;
	/* 100 only once protected: the first checkpoint is the last step. */
	ft->pri.sync_percent = (unsigned)(99 * ft->pri.sync_done_bytes / (ft->pri.sync_total_bytes | 1));
	pthread_mutex_unlock(&ft->lock);
}

/*
 * Sends the pages set in bitmap straight from guest memory (initial
 * sync); skip_zero leaves out pages that read as zeros (the secondary's
 * RAM starts zeroed).
 */
static int sync_pages(struct ft *ft, const uint64_t *bitmap, bool skip_zero, struct capture *c,
		      uint64_t *sent)
{
	struct vm *vm = ft->cfg.vm;
	uint64_t nr = vm__nr_pages(vm), total = 0, looked = 0;
	uint64_t batch[FT_PAGES_PER_MSG];
	size_t n = 0;
	int ret = 0;

	/* The guest and the device threads write these pages meanwhile: by
	 * design (a page written after it was read is dirty, and sent again). */
	vm__racy_reads_begin();
	for (uint64_t w = 0; w < (nr + 63) / 64 && !ret; w++) {
		uint64_t bits = bitmap ? bitmap[w] : ~0ull;
		while (bits && !ret) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			if (p >= nr)
				break;
			looked++;
			if (skip_zero && vm__page_is_zero(vm, p))
				continue;
			batch[n++] = p;
			if (n == FT_PAGES_PER_MSG) {
				ret = send_pages(ft, FT_MSG_SYNC_RAM, 0, batch, NULL, n, &c->wire);
				total += n;
				n = 0;
				sync_progress(ft, looked * FT_PAGE);
				looked = 0;
				if (stopping(ft))
					ret = -ECANCELED;
			}
		}
	}
	if (!ret && n) {
		ret = send_pages(ft, FT_MSG_SYNC_RAM, 0, batch, NULL, n, &c->wire);
		total += n;
	}
	vm__racy_reads_end();
	sync_progress(ft, looked * FT_PAGE);
	*sent = total;
	return ret;
}

/* Reads 64 KiB block b and sends it, unless it is all zeros and skip_zero. */
static int sync_disk_block(struct ft *ft, uint64_t b, uint8_t *buf, bool skip_zero, uint64_t *sent)
{
	struct disk *d = ft->cfg.disk;
	uint64_t off = b * FT_DISK_BLOCK;
	size_t len = d->size - off < FT_DISK_BLOCK ? (size_t)(d->size - off) : FT_DISK_BLOCK;
	struct iovec v = { buf + 8, len };
	int ret = d->ops->read(d->be, off, &v, 1);
	if (ret)
		return ret;
	sync_progress(ft, len);
	if (skip_zero) {
		bool zero = true;
		for (size_t i = 0; i < len && zero; i++)
			zero = buf[8 + i] == 0;
		if (zero)
			return 0;
	}
	memcpy(buf, &off, 8);
	ret = send_buf(ft, FT_MSG_SYNC_DISK, 0, 0, buf, 8 + len);
	(*sent)++;
	if (!ret && stopping(ft))
		ret = -ECANCELED;
	return ret;
}

/*
 * Sends the 64 KiB disk blocks set in bitmap; with no bitmap, every block
 * of the image's data extents (holes are never read: SEEK_DATA) that is
 * not all zeros (the secondary starts from a zeroed image).
 */
static int sync_disk_blocks(struct ft *ft, const uint64_t *bitmap, uint64_t *sent)
{
	struct disk *d = ft->cfg.disk;
	uint64_t nr = (d->size + FT_DISK_BLOCK - 1) / FT_DISK_BLOCK;
	uint8_t *buf = malloc(8 + FT_DISK_BLOCK);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	*sent = 0;
	if (bitmap) {
		for (uint64_t b = 0; b < nr && !ret; b++)
			if (bitmap[b / 64] & (1ull << (b % 64)))
				ret = sync_disk_block(ft, b, buf, false, sent);
		free(buf);
		return ret;
	}
	for (uint64_t b = 0; b < nr && !ret;) {
		uint64_t start = b * FT_DISK_BLOCK, end = d->size;
		if (d->ops->seek_data) {
			ret = d->ops->seek_data(d->be, start, &start, &end);
			if (ret == -ENXIO) {
				ret = 0;
				break;	/* holes to the end */
			}
			if (ret)
				break;
		}
		uint64_t last = end > d->size ? nr : (end + FT_DISK_BLOCK - 1) / FT_DISK_BLOCK;
		for (b = start / FT_DISK_BLOCK; b < last && !ret; b++)
			ret = sync_disk_block(ft, b, buf, true, sent);
	}
	free(buf);
	return ret;
}

/* Bytes of the image's data extents (what the first disk pass reads). */
static uint64_t disk_data_bytes(struct disk *d)
{
	uint64_t off = 0, total = 0, start, end;
	if (!d->ops->seek_data)
		return d->size;
	while (off < d->size && d->ops->seek_data(d->be, off, &start, &end) == 0) {
		if (end > d->size)
			end = d->size;
		if (end <= start)
			break;
		total += end - start;
		off = end;
	}
	return total;
}

/* Appends the pages set in bitmap to list (the sync's last round). */
static int list_bitmap(const uint64_t *bitmap, uint64_t nr, struct vm_page_list *list)
{
	for (uint64_t w = 0; w < (nr + 63) / 64; w++) {
		for (uint64_t bits = bitmap[w]; bits; bits &= bits - 1) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
			if (p < nr && vm_page_list__add(list, p))
				return -ENOMEM;
		}
	}
	return 0;
}

/*
 * One checkpoint. The pause covers only the capture: dirty bitmap, page
 * copies, state, sealing the event tap's epoch.
 */
/* A checkpoint captured and sent, its ACK to come: what finishing it needs
 * (the capture's buffers may hold the next one by then). */
struct ckpt_sent {
	uint64_t epoch, t0, t1, t_sent, trig_ns;
	uint64_t t_stopped;	/* the guest stopped (vm__paused_since_ns), t0 if unknown */
	size_t pages, bytes;
	bool first;
};

/* Captures checkpoint pri.epoch + 1 and sends it, up to its COMMIT. */
static int checkpoint_send(struct ft *ft, struct capture *c, bool first, struct ckpt_sent *sent)
{
	struct vm *vm = ft->cfg.vm;
	struct eventtap *et = ft->cfg.et;
	uint64_t nr = vm__nr_pages(vm);
	char err[VMM_ERR_LEN] = "";
	uint64_t disk_blocks = 0;
	int ret;

	uint64_t epoch = ft->pri.epoch + 1;
	uint64_t t0 = ft__now_ns();
	/* Guest memory holds still once the vCPUs have stopped: collecting
	 * and copying overlap their saving their own state. */
	ret = vm__pause_stopped(vm);
	if (ret < 0)
		return ret;
	bool first_level = ret == 1;	/* no `stop`, savevm... held the guest already */
	ret = 0;
	uint64_t tp = ft__now_ns();
	/* The first checkpoint also takes the pages the last sync round left
	 * in c->bitmap; later ones start from an empty one, and their cost
	 * follows the dirty pages (vm__dirty_log_collect_list). */
	c->list.nr = 0;
	if (first)
		ret = list_bitmap(c->bitmap, nr, &c->list);
	/*
	 * Device emulation outside the vCPUs (virtio-net RX in the I/O thread)
	 * stops too, from the dirty-log collection through the device state:
	 * a frame delivered in between would be in the device state (its
	 * buffer consumed) but not in the pages, and a failover to this
	 * checkpoint would hand the guest a used-ring entry that is not there,
	 * i.e. the stale contents of an old buffer: an old request replayed.
	 */
	vm__devices_lock(vm);
	if (!ret)
		ret = vm__dirty_log_collect_list(vm, c->bitmap, &c->list);
	c->nr = c->list.nr;
	if (!ret)
		ret = capture__reserve(c, c->nr ? c->nr : 1);
	/* A big capture: the second half of the pages in the copier, while
	 * this thread copies the first and saves the state. */
	struct copier *cp = !ret && c->nr >= FT_COPY_SPLIT_PAGES ? copier__get(c) : NULL;
	size_t here = cp ? c->nr / 2 : c->nr;
	if (cp)
		copier__start(cp, vm, c->list.pages + here, c->data + here * FT_PAGE, c->nr - here);
	if (!ret)
		copy_pages(vm, c->list.pages, c->data, here);
	/* Back to an empty set, page by page. */
	for (size_t i = 0; i < c->list.nr; i++)
		c->bitmap[c->list.pages[i] / 64] = 0;
	sbuf__reset(&c->state);
	sbuf__reset(&c->outputs);
	uint64_t tc = ft__now_ns();
	vm__pause_wait_parked(vm);
	if (!ret)
		ret = vm__save_state_locked(vm, &c->state, err);
	if (cp)
		copier__wait(cp);
	vm__devices_unlock(vm);
	uint64_t ts = ft__now_ns();
	if (!ret && first && c->disk_bitmap) {
		ret = eventtap__collect_disk_dirty(et, c->disk_bitmap);
		eventtap__track_disk(et, false, 0);
	}
	if (!ret) {
		if (first) {
			eventtap__set_holding(et, true, epoch + 1);
		} else {
			uint64_t sealed = eventtap__seal(et);
			if (sealed != epoch)
				fprintf(stderr, "ftvm: ft: event tap epoch %llu, checkpoint %llu\n",
					(unsigned long long)sealed, (unsigned long long)epoch);
		}
		uint32_t n_out = 0;
		ret = eventtap__serialize(et, &c->outputs, &n_out);
	}
	pthread_mutex_lock(&ft->lock);
	uint64_t trig_ns = ft->pri.first_trigger_ns;
	ft->pri.trigger = false;
	ft->pri.first_trigger_ns = 0;
	bool took_prepause = ft->pri.prepaused;	/* this checkpoint's own pause holds the guest */
	if (took_prepause)
		first_level = ft->pri.prepause_first;
	ft->pri.prepaused = false;
	if (ft->pri.held_full)
		ft->pri.forced_checkpoints++;
	ft->pri.held_full = false;
	vm__dirty_log_set_hot(vm, ft->pri.hot_pages);	/* from the next collection */
	pthread_mutex_unlock(&ft->lock);
	/* Replicated sync: the blocks written since the last round, read
	 * while the guest cannot write, so they match this checkpoint. */
	if (!ret && first && c->disk_bitmap)
		ret = sync_disk_blocks(ft, c->disk_bitmap, &disk_blocks);
	if (ft->inject == FT_INJECT_SLOW_CAPTURE) {
		/* A capture as slow as a big guest's (or a slow disk read of
		 * the sync's last blocks): nothing of the role thread's goes out. */
		ft->inject = FT_INJECT_NONE;
		fprintf(stderr, "ftvm: ft: injected a slow capture of checkpoint %llu\n",
			(unsigned long long)epoch);
		struct timespec slow = { 0, 3 * (long)ft__hb_timeout_ms(ft) * 1000000l };
		slow.tv_sec = slow.tv_nsec / 1000000000l;
		slow.tv_nsec %= 1000000000l;
		nanosleep(&slow, NULL);
	}
	uint64_t tr = ft__now_ns();
	/* The guest's pause began when it stopped running, not when this
	 * thread asked: the trigger's own pause began at the vCPU's exit. */
	uint64_t stopped = first_level ? vm__paused_since_ns(vm) : 0;
	if (took_prepause)
		vm__resume_internal(vm);
	vm__resume_internal(vm);
	uint64_t t1 = ft__now_ns();
	if (c->debug_every && epoch % c->debug_every == 0)
		fprintf(stderr, "pause %llu: stop %llu collect+copy %llu state %llu tail %llu resume %llu us%s; "
			"the guest stopped %lld us after the pause began\n",
			(unsigned long long)c->nr, (unsigned long long)(tp - t0) / 1000,
			(unsigned long long)(tc - tp) / 1000, (unsigned long long)(ts - tc) / 1000,
			(unsigned long long)(tr - ts) / 1000, (unsigned long long)(t1 - tr) / 1000,
			took_prepause ? " (the trigger's own pause)" : "",
			stopped ? ((long long)stopped - (long long)t0) / 1000 : 0ll);
	if (ret) {
		if (err[0])
			ft__error(ft, "capture of checkpoint %llu failed: %s", (unsigned long long)epoch, err);
		return ret;
	}
	/* The primary thread writes epoch (and reads it unlocked); the
	 * monitor reads it under the lock. */
	pthread_mutex_lock(&ft->lock);
	ft->pri.epoch = epoch;
	pthread_mutex_unlock(&ft->lock);

	/* Ship it. A small checkpoint goes as one batch (on TLS: one run of
	 * records, decrypted by the secondary in a read or two). */
	struct ft_commit cm = { .capture_ns = t0 };
	uint64_t t_sent = 0;
	bool batch = c->nr <= FT_BATCH_PAGES && c->outputs.len <= FT_BATCH_BYTES && ft->inject == FT_INJECT_NONE;
	if (batch)
		xport__batch_begin(ft->x);
	ret = send_buf(ft, FT_MSG_BEGIN, 0, epoch, &cm.capture_ns, 8);
	maybe_die(ft, FT_INJECT_DIE_AFTER_BEGIN);
	/* A test asking to die "in the middle of the pages" gets two PAGES
	 * messages and dies between them. */
	size_t per = FT_PAGES_PER_MSG;
	if (ft->inject == FT_INJECT_DIE_MID_PAGES && c->nr > 1)
		per = (c->nr + 1) / 2;
	for (size_t off = 0; !ret && off < c->nr; off += per) {
		size_t n = c->nr - off < per ? c->nr - off : per;
		if (ft->inject == FT_INJECT_CORRUPT_PAGES || ft->inject == FT_INJECT_TRUNCATE_PAGES) {
			bool corrupt = ft->inject == FT_INJECT_CORRUPT_PAGES;
			fprintf(stderr, "ftvm: ft: injected %s PAGES of checkpoint %llu\n",
				corrupt ? "corruption of" : "truncation of", (unsigned long long)epoch);
			xport__inject_fault(ft->x, corrupt ? XPORT_FAULT_CORRUPT_NEXT : XPORT_FAULT_TRUNCATE_NEXT);
			ft->inject = FT_INJECT_NONE;
		}
		if (c->cache.slots)
			ret = send_delta_pages(ft, epoch, c->list.pages + off, c->data + off * FT_PAGE, n, c);
		else
			ret = send_pages(ft, FT_MSG_PAGES, epoch, c->list.pages + off, c->data + off * FT_PAGE,
					 n, &c->wire);
		cm.page_msgs++;
		if (off == 0)
			maybe_die(ft, FT_INJECT_DIE_MID_PAGES);
		if (!ret && off == 0 && ft->inject == FT_INJECT_REPEAT_PAGE) {
			/* A lying primary: the first page again, in a second message. */
			fprintf(stderr, "ftvm: ft: injected a repeated page in checkpoint %llu\n",
				(unsigned long long)epoch);
			ft->inject = FT_INJECT_NONE;
			ret = send_pages(ft, FT_MSG_PAGES, epoch, c->list.pages, c->data, 1, &c->wire);
			cm.page_msgs++;
			cm.pages++;
		}
	}
	if (!c->nr)
		maybe_die(ft, FT_INJECT_DIE_MID_PAGES);
	cm.pages = (uint32_t)c->nr;
	if (!ret)
		ret = send_buf(ft, FT_MSG_STATE, 0, epoch, c->state.data, c->state.len);
	/* The held-output list, in pieces the secondary accepts; it joins
	 * them and COMMIT says how many there were. */
	pthread_mutex_lock(&ft->lock);
	size_t chunk = ft->pri.outputs_chunk;
	pthread_mutex_unlock(&ft->lock);
	for (size_t off = 0; !ret && (off < c->outputs.len || !cm.outputs); off += chunk) {
		size_t n = c->outputs.len - off < chunk ? c->outputs.len - off : chunk;
		bool more = off + n < c->outputs.len;
		ret = send_buf(ft, FT_MSG_OUTPUTS, more ? FT_FLAG_MORE : 0, epoch, c->outputs.data + off, n);
		cm.outputs++;
	}
	maybe_die(ft, FT_INJECT_DIE_BEFORE_COMMIT);
	if (!ret) {
		/* From here on the secondary may hold a checkpoint, whatever
		 * becomes of its ACK. */
		pthread_mutex_lock(&ft->lock);
		ft->pri.commit_sent = true;
		pthread_mutex_unlock(&ft->lock);
		ret = send_buf(ft, FT_MSG_COMMIT, 0, epoch, &cm, sizeof(cm));
		if (batch) {
			int b = xport__batch_end(ft->x);
			ret = ret ? ret : b;
			batch = false;
		}
		t_sent = ft__now_ns();
		if (!ret)
			ft_audit(ft, "commit-sent", epoch, "pages=%u output_bytes=%zu", cm.pages,
				 c->outputs.len);
	}
	if (batch)
		xport__batch_end(ft->x);	/* a send failed before COMMIT: the link is gone */
	maybe_die(ft, FT_INJECT_DIE_AFTER_COMMIT);
	if (!ret && ft->inject == FT_INJECT_CUT_AFTER_COMMIT) {
		fprintf(stderr, "ftvm: ft: injected link cut after COMMIT %llu\n",
			(unsigned long long)epoch);
		ft->inject = FT_INJECT_NONE;
		xport__shutdown(ft->x);
	}
	if (ret)
		return ret;
	*sent = (struct ckpt_sent){
		.epoch = epoch, .t0 = t0, .t1 = t1, .t_stopped = stopped && stopped <= t1 ? stopped : t0, .t_sent = t_sent, .trig_ns = trig_ns, .pages = c->nr,
		.bytes = c->nr * FT_PAGE + c->state.len + c->outputs.len, .first = first,
	};
	return 0;
}

/*
 * Takes checkpoint s's ACK (ack: already read, or NULL to wait for it),
 * releases its output if release, and keeps its figures.
 */
static int checkpoint_finish(struct ft *ft, const struct ckpt_sent *s, struct xport_msg *ack, bool release)
{
	struct eventtap *et = ft->cfg.et;
	uint64_t epoch = s->epoch, t0 = s->t0, t1 = s->t1, t_sent = s->t_sent, trig_ns = s->trig_ns;
	struct xport_msg own, *mp = ack ? ack : &own;
	int ret = 0;

	if (!ack) {
		xport_msg__init(&own);
		ret = recv_msg(ft, &own, -1);
	}
	struct xport_msg m = *mp;
	if (!ret && (m.type != FT_MSG_ACK || m.epoch != epoch)) {
		ft__error(ft, "expected ACK of checkpoint %llu, got %s %llu", (unsigned long long)epoch,
			  m.type < FT_MSG_MAX && ft_msg_names[m.type] ? ft_msg_names[m.type] : "?",
			  (unsigned long long)m.epoch);
		ret = -EPROTO;
	}
	struct ft_ack_times peer = { 0, 0 };
	bool have_peer = !ret && m.payload.len == sizeof(peer);
	if (have_peer)
		memcpy(&peer, m.payload.data, sizeof(peer));
	if (!ack)
		xport_msg__free(&own);
	if (ret)
		return ret;
	uint64_t t2 = ft__now_ns();
	ft_audit(ft, "ack", epoch, NULL);
	if (release) {
		/* Replicated: the secondary's disk holds this checkpoint's writes,
		 * flushed, before it acknowledged; this disk's flush no longer
		 * stands between a reply and its client (docs/ft.md). */
		bool replicated = ft->cfg.disk && ft->cfg.drive_mode == VM_DRIVE_REPLICATED;
		/* Shared, async-release due (the next checkpoint already due)
		 * or always: this disk's flush does not hold the next capture
		 * back: the event tap's flusher does it, and the items stay
		 * held, so the next checkpoint carries them until they are
		 * durable. Off by default: on this project's 2-CPU hosts the
		 * extra thread costs more than the overlap gains (docs/benchmarks.md). */
		pthread_mutex_lock(&ft->lock);
		int mode = atomic_load(&ft->pri.async_release);
		bool async = !replicated && (mode == FT_ASYNC_ALWAYS ||
					     (mode == FT_ASYNC_DUE && (ft->pri.trigger || ft->pri.held_full)));
		ft->pri.async_releases += async;
		pthread_mutex_unlock(&ft->lock);
		if (replicated)
			ret = eventtap__release_flush_last(et, epoch);
		else if (async)
			ret = eventtap__release_async(et, epoch);
		else
			ret = eventtap__release(et, epoch);
		if (ret)
			ft__error(ft, "releasing the output of checkpoint %llu: a disk write or flush "
				  "failed: %s", (unsigned long long)epoch, strerror(-ret));
		ft_audit(ft, ret ? "release-failed" : "released", epoch, ret ? "%s" : NULL,
			 strerror(-ret));
	}

	uint64_t t3 = ft__now_ns();
	pthread_mutex_lock(&ft->lock);
	ft->pri.acked_epoch = epoch;
	ft->acked_capture_ns = t0;
	ft->epochs++;
	if (!s->first) {
		if (trig_ns && trig_ns <= t0)
			ft_samples__add(&ft->pri.wake_us, (t0 - trig_ns) / 1000);
		ft_samples__add(&ft->pri.send_us, (t_sent - t1) / 1000);
		ft_samples__add(&ft->pri.ack_us, (t2 - t_sent) / 1000);
		if (have_peer) {
			ft_samples__add(&ft->pri.peer_receive_us, peer.receive_us);
			ft_samples__add(&ft->pri.peer_commit_us, peer.commit_us);
		}
		ft_samples__add(&ft->pri.release_us, (t3 - t2) / 1000);
	}
	ft_samples__add(&ft->pri.pause_us, (t1 - s->t_stopped) / 1000);
	ft_samples__add(&ft->ckpt_pages, s->pages);
	ft_samples__add(&ft->pri.ckpt_bytes, s->bytes);
	ft_samples__add(&ft->pri.ckpt_ship_us, (t2 - t1) / 1000);
	pthread_mutex_unlock(&ft->lock);
	return ret;
}

/* One checkpoint, start to end. */
static int checkpoint(struct ft *ft, struct capture *c, bool first, bool release)
{
	struct ckpt_sent s;
	int ret = checkpoint_send(ft, c, first, &s);
	return ret ? ret : checkpoint_finish(ft, &s, NULL, release);
}

/* How long to wait before the next checkpoint is due (ns; INT64_MAX: not
 * before a trigger), by policy. hybrid's window is microseconds: it must
 * not be rounded up to a poll's millisecond. */
static int64_t next_due_ns(struct ft *ft, uint64_t last_ckpt_ns)
{
	const struct et_policy_cfg *p = &ft->cfg.policy;
	uint64_t now = ft__now_ns();
	int64_t due;

	pthread_mutex_lock(&ft->lock);
	bool trig = ft->pri.trigger, full = ft->pri.held_full, paused = ft->pri.prepaused;
	uint64_t first = ft->pri.first_trigger_ns;
	pthread_mutex_unlock(&ft->lock);

	/* A guest the trigger paused waits for nothing else (even if the
	 * policy changed since). */
	if (atomic_load(&ft->pri.handover_req) || full || paused)
		return 0;
	switch (p->policy) {
	case ET_POLICY_EVENT:
		return trig ? 0 : INT64_MAX;
	case ET_POLICY_EPOCH:
		due = (int64_t)(last_ckpt_ns + (uint64_t)p->epoch_ms * 1000000u) - (int64_t)now;
		break;
	case ET_POLICY_HYBRID:
	default: {
		uint64_t at = last_ckpt_ns + (uint64_t)p->max_ms * 1000000u;
		if (trig && first + (uint64_t)p->window_us * 1000u < at)
			at = first + (uint64_t)p->window_us * 1000u;
		due = (int64_t)at - (int64_t)now;
	}
	}
	return due <= 0 ? 0 : due;
}

/* Sleeps until a trigger (wake_fd), the link has bytes, or due_ns (at
 * most a heartbeat). 1: the link is readable, 0: not, -errno. */
static int poll_wake_or_link(struct ft *ft, int wake_fd, int64_t due_ns)
{
	int64_t hb = (int64_t)ft__hb_ms(ft) * 1000000;
	int64_t wait = due_ns < hb ? due_ns : hb;
	struct timespec ts = { (time_t)(wait / 1000000000), (long)(wait % 1000000000) };
	struct pollfd pfd[2] = {
		{ .fd = wake_fd, .events = POLLIN },
		{ .fd = xport__poll_fd(ft->x), .events = POLLIN },
	};
	if (ppoll(pfd, 2, &ts, NULL) < 0 && errno != EINTR)
		return -errno;
	if (pfd[0].revents & POLLIN) {
		uint64_t v;
		(void)!read(wake_fd, &v, sizeof(v));
	}
	return pfd[1].revents != 0;
}

/* Waits for a checkpoint to be due, answering the link meanwhile. */
static int wait_for_trigger(struct ft *ft, int wake_fd, uint64_t last_ckpt_ns)
{
	char err[256];
	struct xport_msg m;

	xport_msg__init(&m);
	for (;;) {
		if (stopping(ft)) {
			xport_msg__free(&m);
			return -ECANCELED;
		}
		int64_t due = next_due_ns(ft, last_ckpt_ns);
		if (due == 0) {
			xport_msg__free(&m);
			return 0;
		}
		int link = poll_wake_or_link(ft, wake_fd, due);
		if (link < 0) {
			xport_msg__free(&m);
			return link;
		}
		if (link) {
			int ret;
			while ((ret = xport__recv(ft->x, &m, 0, err, sizeof(err))) == 0) {
				if (m.type == FT_MSG_HEARTBEAT)
					continue;
				if (m.type == FT_MSG_ERROR)
					ft__error(ft, "secondary %s: %.*s", ft->peer, (int)m.payload.len,
						  (const char *)m.payload.data);
				else
					ft__error(ft, "unexpected %s from the secondary",
						  m.type < FT_MSG_MAX && ft_msg_names[m.type]
							  ? ft_msg_names[m.type] : "message");
				xport_msg__free(&m);
				return -EPROTO;
			}
			if (ret != -ETIMEDOUT) {
				ft__error(ft, "link to secondary %s: %s", ft->peer,
					  ret == -EPIPE ? "closed by the peer" : err);
				xport_msg__free(&m);
				return ret;
			}
		}
		if (ft_link__peer_silent(ft, err, sizeof(err))) {
			ft__error(ft, "%s", err);
			xport_msg__free(&m);
			return -ETIMEDOUT;
		}
	}
}

/*
 * Pipelining: with a checkpoint in flight, waits for its ACK or for the
 * next checkpoint to come due, whichever is first. 1: the ACK (in ack, to
 * free), 0: the next is due (capture it while s travels), -errno.
 */
static int wait_ack_or_due(struct ft *ft, int wake_fd, uint64_t last_ckpt_ns, struct xport_msg *ack)
{
	char err[256];

	for (;;) {
		if (stopping(ft))
			return -ECANCELED;
		int ret;
		while ((ret = xport__recv(ft->x, ack, 0, err, sizeof(err))) == 0) {
			if (ack->type == FT_MSG_HEARTBEAT)
				continue;
			return 1;	/* checkpoint_finish checks it is s's ACK */
		}
		if (ret != -ETIMEDOUT) {
			ft__error(ft, "link to secondary %s: %s", ft->peer, ret == -EPIPE ? "closed by the peer" : err);
			return ret;
		}
		int64_t due = next_due_ns(ft, last_ckpt_ns);
		if (due == 0)
			return 0;
		if (ft_link__peer_silent(ft, err, sizeof(err))) {
			ft__error(ft, "%s", err);
			return -ETIMEDOUT;
		}
		ret = poll_wake_or_link(ft, wake_fd, due);
		if (ret < 0)
			return ret;
	}
}

/* The guest stops for good here: its output can never be released. */
static void stop_for_good(struct ft *ft, const char *why)
{
	ft_audit(ft, "stopped", ft->pri.epoch, "%s", why);
	vm__pause(ft->cfg.vm);
	ft__error(ft, "%s", why);
	ft__set_state(ft, FT_STOPPED);
	fprintf(stderr, "ftvm: ft: %s\n", why);
}

static void last_error(struct ft *ft, char *buf, size_t len)
{
	pthread_mutex_lock(&ft->lock);
	snprintf(buf, len, "%s", ft->last_error);
	pthread_mutex_unlock(&ft->lock);
}

/*
 * Proactive failover (a machine check on this host, or this host's disk
 * failing under held output): stop the guest, take a last checkpoint, and
 * tell the secondary to take over from it. Nothing runs here afterwards,
 * so nothing can be lost or contradicted.
 *
 * Once HANDOVER is on its way the secondary may take over whether or not
 * its HANDOVER_OK arrives: from then on this guest never runs again, or
 * two would answer. Before that (the last checkpoint failed) a requested
 * handover resumes the guest (must_stop false) and the secondary is
 * treated as lost.
 */
static int handover(struct ft *ft, struct capture *c, bool must_stop)
{
	struct xport_msg m;
	uint64_t t0 = ft__now_ns();
	char cause[256], why[256] = "", msg[600];
	bool sent = false;
	int ret;

	last_error(ft, cause, sizeof(cause));
	ret = vm__pause(ft->cfg.vm);
	/* Nothing of this host's may leave after the secondary takes over:
	 * what the flusher still holds goes first (or stays held, if its
	 * flush failed; the checkpoint below carries it either way). */
	(void)eventtap__drain(ft->cfg.et);
	if (!ret)
		ret = checkpoint(ft, c, false, false);
	/* The point of no return: from handing-over the guest never runs
	 * here again (the table has no way back). */
	if (!ret)
		ret = ft__move(ft, FT_PROTECTED, FT_HANDING_OVER);
	if (!ret) {
		sent = true;
		ret = send_buf(ft, FT_MSG_HANDOVER, 0, ft->pri.epoch, NULL, 0);
		ft_audit(ft, "handover-sent", ft->pri.epoch, NULL);
	}
	xport_msg__init(&m);
	if (!ret)
		ret = recv_msg(ft, &m, 2000);
	if (!ret && (m.type != FT_MSG_HANDOVER_OK || m.epoch != ft->pri.epoch)) {
		ft__error(ft, "secondary did not accept the handover");
		ret = -EPROTO;
	}
	xport_msg__free(&m);
	if (ret)
		last_error(ft, why, sizeof(why));
	if (ret && sent) {
		snprintf(msg, sizeof(msg), "handover to %s not confirmed (%s); the secondary may be "
			 "running the guest, so it stays stopped here", ft->peer, why);
		stop_for_good(ft, msg);
	} else if (ret && must_stop) {
		snprintf(msg, sizeof(msg), "%s; no secondary took the guest over (%s): it stays "
			 "stopped", cause, why);
		stop_for_good(ft, msg);
	}
	pthread_mutex_lock(&ft->lock);
	ft->pri.handover_us = (ft__now_ns() - t0) / 1000;
	ft->pri.handover_result = ret;
	ft->pri.handover_done = true;
	atomic_store(&ft->pri.handover_req, false);
	pthread_cond_broadcast(&ft->cond);
	pthread_mutex_unlock(&ft->lock);
	if (ret) {
		if (!sent && !must_stop)
			vm__resume(ft->cfg.vm);	/* nothing sent: keep serving */
		return ret;
	}
	ft_audit(ft, "handed-over", ft->pri.epoch, "peer=%s", ft->peer);
	fprintf(stderr, "ftvm: ft: handed over to %s at checkpoint %llu in %llu us\n", ft->peer,
		(unsigned long long)ft->pri.epoch, (unsigned long long)ft->pri.handover_us);
	return 0;
}

static int hello(struct ft *ft, struct capture *c)
{
	struct ft_hello h;
	struct xport_msg m;
	int ret;

	ft_hello__describe(ft, &h);
	if (ft->inject == FT_INJECT_HELLO_VERSION) {
		h.ft_version = FT_PROTO_VERSION + 1;
		ft->inject = FT_INJECT_NONE;
	}
	sbuf__reset(&c->wire);
	ret = ft_hello__encode(&h, &c->wire);
	if (!ret)
		ret = send_buf(ft, FT_MSG_HELLO, 0, 0, c->wire.data, c->wire.len);
	if (ret)
		return ret;
	xport_msg__init(&m);
	ret = recv_msg(ft, &m, 10000);
	if (!ret && m.type != FT_MSG_HELLO_OK) {
		ft__error(ft, "secondary answered HELLO with %s",
			  m.type < FT_MSG_MAX && ft_msg_names[m.type] ? ft_msg_names[m.type] : "?");
		ret = -EPROTO;
	}
	xport_msg__free(&m);
	return ret;
}

/*
 * The throttle for the next round: enough, at the guest's rate in the last
 * round, for it to dirty half of what a round sends (the dirty count is
 * capped by the guest's working set, so this may be too little: it grows by
 * at least 10 points a round, from 20 %, up to 99 %).
 */
static unsigned next_throttle(unsigned throttle, uint64_t dirty, uint64_t sent)
{
	double run = (100.0 - throttle) * (double)sent / (2.0 * (double)dirty);
	unsigned want = run >= 100.0 ? 0 : (unsigned)(100.0 - run);
	unsigned least = throttle ? throttle + 10 : 20;
	if (want < least)
		want = least;
	return want > 99 ? 99 : want;
}

/* Initial sync: disk (replicated), then RAM pre-copy rounds. */
static int initial_sync(struct ft *ft, struct capture *c)
{
	struct vm *vm = ft->cfg.vm;
	struct eventtap *et = ft->cfg.et;
	uint64_t words = (vm__nr_pages(vm) + 63) / 64, sent = 0;
	uint64_t t0 = ft__now_ns();
	bool replicated = ft->cfg.disk && ft->cfg.drive_mode == VM_DRIVE_REPLICATED;
	int ret;

	/* What there is to look at: the image's data extents, and the RAM
	 * the host has backed (the rest reads as zeros and is never read). */
	uint64_t disk_bytes = replicated ? disk_data_bytes(ft->cfg.disk) : 0;
	int64_t populated = vm__populated_pages(vm, c->bitmap);
	if (populated < 0) {
		/* No page map: look at every page. */
		memset(c->bitmap, 0xff, words * 8);
		populated = (int64_t)vm__nr_pages(vm);
	}
	pthread_mutex_lock(&ft->lock);
	ft->pri.sync_start_ns = t0;
	ft->pri.sync_done_bytes = 0;
	ft->pri.sync_total_bytes = disk_bytes + (uint64_t)populated * FT_PAGE;
	ft->pri.sync_ram_unread = vm__nr_pages(vm) - (uint64_t)populated;
	ft->pri.sync_disk_unread = replicated ? ft->cfg.disk->size - disk_bytes : 0;
	pthread_mutex_unlock(&ft->lock);

	if (replicated) {
		uint64_t nb = (ft->cfg.disk->size + FT_DISK_BLOCK - 1) / FT_DISK_BLOCK;
		c->disk_bitmap = calloc((nb + 63) / 64, 8);
		if (!c->disk_bitmap)
			return -ENOMEM;
		ret = eventtap__track_disk(et, true, FT_DISK_BLOCK);
		if (!ret)
			ret = sync_disk_blocks(ft, NULL, &sent);
		sync_count(ft, &ft->pri.sync_disk_blocks, sent);
		for (int round = 0; !ret && round < 5; round++) {
			memset(c->disk_bitmap, 0, (nb + 63) / 64 * 8);
			eventtap__collect_disk_dirty(et, c->disk_bitmap);
			ret = sync_disk_blocks(ft, c->disk_bitmap, &sent);
			sync_count(ft, &ft->pri.sync_disk_blocks, sent);
			if (sent < 16)
				break;
		}
		if (ret)
			return ret;
		memset(c->disk_bitmap, 0, (nb + 63) / 64 * 8);
	}

	/* Dirty logging first, then the page map: a page the guest writes
	 * after it was looked at (or first touches after the map was read)
	 * is in the next round. */
	ret = vm__dirty_log_enable(vm, true);
	if (!ret)
		ret = vm__dirty_log_collect(vm, c->bitmap);	/* start a round */
	if (!ret) {
		memset(c->bitmap, 0, words * 8);
		if (vm__populated_pages(vm, c->bitmap) < 0)
			memset(c->bitmap, 0xff, words * 8);
		ret = sync_pages(ft, c->bitmap, true, c, &sent);
	}
	sync_count(ft, &ft->pri.sync_ram_pages, sent);
	/*
	 * Pre-copy rounds: each sends what the guest dirtied during the last.
	 * Done when a round leaves few enough pages for one pause. A guest
	 * that dirties more than half of what a round sends, two rounds in a
	 * row, is throttled (vm__set_throttle, next_throttle) until the
	 * rounds shrink. After the last round the
	 * throttle is lifted; the first checkpoint takes what is left, however
	 * much that is: the rounds are bounded, and so is the final one.
	 */
	unsigned throttle = 0, high = 0;
	for (unsigned round = 1; !ret && round <= FT_SYNC_MAX_ROUNDS; round++) {
		memset(c->bitmap, 0, words * 8);
		ret = vm__dirty_log_collect(vm, c->bitmap);
		uint64_t dirty = 0;
		for (uint64_t w = 0; w < words; w++)
			dirty += (uint64_t)__builtin_popcountll(c->bitmap[w]);
		if (ret || dirty < FT_SYNC_FINAL_PAGES)
			break;	/* small enough for one pause */
		high = dirty * 2 > sent ? high + 1 : 0;
		if (high >= 2 && throttle < 99) {
			throttle = next_throttle(throttle, dirty, sent);
			fprintf(stderr, "ftvm: ft: sync round %u: the guest dirtied %llu pages while %llu "
				"were sent: throttling its vCPUs to %u %%\n", round, (unsigned long long)dirty,
				(unsigned long long)sent, throttle);
			ret = vm__set_throttle(vm, throttle);
			if (ret)
				break;
		}
		pthread_mutex_lock(&ft->lock);
		ft->pri.sync_total_bytes += dirty * FT_PAGE;
		ft->pri.sync_throttle = throttle;
		pthread_mutex_unlock(&ft->lock);
		ret = sync_pages(ft, c->bitmap, false, c, &sent);
		sync_count(ft, &ft->pri.sync_ram_pages, sent);
		pthread_mutex_lock(&ft->lock);
		ft->pri.sync_rounds = round;
		pthread_mutex_unlock(&ft->lock);
	}
	if (throttle)
		vm__set_throttle(vm, 0);
	/* The pages found dirty in the last round stay in c->bitmap: they go
	 * with checkpoint 1. */
	if (!ret)
		ret = checkpoint(ft, c, true, true);
	pthread_mutex_lock(&ft->lock);
	ft->pri.sync_ms = (ft__now_ns() - t0) / 1000000;
	ft->pri.sync_done_bytes = ft->pri.sync_total_bytes;
	pthread_mutex_unlock(&ft->lock);
	return ret;
}

/*
 * Only output the outside can observe makes a checkpoint due: a held disk
 * write or flush waits for the next checkpoint, which a frame (the answer
 * the write was for) or a policy's timer brings, and is released with it.
 * A PUT so costs one checkpoint, not one for its write and another for its
 * OK. Nothing gets less safe: a held write is released only after the
 * checkpoint that covers it is acknowledged, as before, and a failover
 * before that resumes the guest from a state that never made the write.
 */
static void on_output_held(void *opaque, uint64_t held_bytes, bool observable)
{
	struct ft *ft = opaque;
	bool wake = false;

	/* Held output is bounded whatever the policy: past the bound the
	 * next checkpoint is due now (its OUTPUTS are split if need be). */
	pthread_mutex_lock(&ft->lock);
	bool full = held_bytes >= ft->pri.held_bound && !ft->pri.held_full;
	if (full)
		ft->pri.held_full = true;
	if (observable && !ft->pri.trigger) {
		ft->pri.trigger = true;
		ft->pri.first_trigger_ns = ft__now_ns();
		wake = true;
		/* Under the lock, so the role thread sees prepaused only with
		 * the pause taken (it drops a pause it finds). */
		int pr = ft->cfg.policy.policy == ET_POLICY_EVENT && ft->pri.prepause_ok &&
			 !ft->pri.prepaused ? vm__pause_request(ft->cfg.vm) : -1;
		if (pr >= 0) {
			ft->pri.prepaused = true;
			ft->pri.prepause_first = pr == 1;
		}
	}
	int fd = ft->cfg.policy.policy == ET_POLICY_EPOCH && !full ? -1 : ft->wake_fd;
	wake |= full;
	pthread_mutex_unlock(&ft->lock);
	if (wake && fd >= 0) {
		uint64_t one = 1;
		(void)!write(fd, &one, sizeof(one));
	}
}

/* The trigger may pause the guest itself only while the role thread waits
 * for it: during a checkpoint's send, ACK and release the guest runs on,
 * and what it outputs meanwhile goes with the next checkpoint. */
static void prepause_allow(struct ft *ft, bool ok)
{
	pthread_mutex_lock(&ft->lock);
	ft->pri.prepause_ok = ok;
	pthread_mutex_unlock(&ft->lock);
}

/* Leaving the loop: releases a pause the trigger took that no checkpoint
 * took over. */
static void prepause_drop(struct ft *ft)
{
	pthread_mutex_lock(&ft->lock);
	bool drop = ft->pri.prepaused;
	ft->pri.prepause_ok = false;
	ft->pri.prepaused = false;
	pthread_mutex_unlock(&ft->lock);
	if (drop)
		vm__resume_internal(ft->cfg.vm);
}

/* Sleeps up to ms; true if protection was stopped meanwhile. */
static bool sleep_unless_stopped(struct ft *ft, int ms)
{
	uint64_t end = ft__now_ns() + (uint64_t)ms * 1000000u, now;
	while (!atomic_load(&ft->stop) && (now = ft__now_ns()) < end) {
		struct pollfd p = { .fd = ft->wake_fd, .events = POLLIN };
		uint64_t v;
		if (poll(&p, 1, (int)((end - now) / 1000000u) + 1) > 0)
			(void)!read(ft->wake_fd, &v, sizeof(v));
	}
	return atomic_load(&ft->stop);
}

/*
 * migrate_cancel: tell the secondary to drop its checkpoint, and hear it
 * confirm, before anything held is released. True only with its CANCEL_OK
 * (heartbeats and a late ACK may come first); an unconfirmed CANCEL leaves
 * a secondary that may still hold a checkpoint.
 */
static bool cancel_peer(struct ft *ft, char *why, size_t len)
{
	struct xport_msg m;
	char err[256];
	uint64_t deadline = ft__now_ns() + (uint64_t)ft__hb_timeout_ms(ft) * 1000000u;
	bool ok = false;

	if (xport__send_buf(ft->x, FT_MSG_CANCEL, 0, ft->pri.epoch, NULL, 0)) {
		snprintf(why, len, "%s", atomic_load(&ft->pri.cancel_cut) ?
			 "the link was shut down: the secondary read nothing" : "sending CANCEL failed");
		return false;
	}
	xport_msg__init(&m);
	for (;;) {
		int ret = xport__recv(ft->x, &m, 50, err, sizeof(err));
		if (ret == 0 && m.type == FT_MSG_CANCEL_OK) {
			ok = true;
			break;
		}
		if (ret == 0 && (m.type == FT_MSG_HEARTBEAT || m.type == FT_MSG_ACK))
			continue;
		if (ret == 0) {
			snprintf(why, len, "the secondary answered CANCEL with %s",
				 m.type < FT_MSG_MAX && ft_msg_names[m.type] ? ft_msg_names[m.type] : "?");
			break;
		}
		if (ret != -ETIMEDOUT) {
			snprintf(why, len, "%s", err);
			break;
		}
		if (ft__now_ns() >= deadline || atomic_load(&ft->stop)) {
			snprintf(why, len, "no CANCEL_OK within %u ms", ft__hb_timeout_ms(ft));
			break;
		}
	}
	xport_msg__free(&m);
	return ok;
}

/*
 * The secondary is lost after it committed checkpoint acked_epoch: hold
 * every output (held and new) until the event hook says the cluster can
 * no longer promote it, retrying every second; or until migrate_cancel
 * (the operator decides) or the VMM ends.
 */
static void revoke_peer(struct ft *ft)
{
	char cause[256], why[256];
	uint64_t t0 = ft__now_ns();

	pthread_mutex_lock(&ft->lock);
	snprintf(cause, sizeof(cause), "%s", ft->last_error);
	pthread_mutex_unlock(&ft->lock);
	ft__set_state(ft, FT_REVOKING);
	ft_audit(ft, "revoking", ft->pri.epoch, "acked=%llu cause=%s", (unsigned long long)ft->pri.acked_epoch,
		 cause);
	fprintf(stderr, "ftvm: ft: secondary %s lost at checkpoint %llu (%s); output held until "
		"the event hook has revoked it\n", ft->peer, (unsigned long long)ft->pri.acked_epoch, cause);
	for (unsigned attempt = 1;; attempt++) {
		if (vm__quit_requested(ft->cfg.vm)) {
			fprintf(stderr, "ftvm: ft: revocation of %s abandoned: the VMM is ending\n", ft->peer);
			return;
		}
		int r = ft_hook__run(ft, "peer-lost", cause, why, sizeof(why));
		if (r == -ESTALE) {
			/* The cluster let the lost secondary take over (its node
			 * saw this one leave): it serves the guest now. Nothing
			 * held here may ever leave, and this guest never runs again. */
			char msg[512];
			snprintf(msg, sizeof(msg), "%s; the secondary %s took over (the event hook says "
				 "so): this guest never runs again", cause, ft->peer);
			stop_for_good(ft, msg);
			return;
		}
		if (!r) {
			pthread_mutex_lock(&ft->lock);
			ft->pri.revoke_ms = (ft__now_ns() - t0) / 1000000;
			struct mon_reply *ev = ft__event_begin_locked(ft);
			if (ev)
				mon_reply__u64(ev, "revoke_ms", ft->pri.revoke_ms);
			ft__event_end_locked(ft, "REVOKED", ev);
			pthread_mutex_unlock(&ft->lock);
			ft_audit(ft, "revoked", ft->pri.epoch, "ms=%llu", (unsigned long long)ft->pri.revoke_ms);
			fprintf(stderr, "ftvm: ft: secondary %s revoked by the event hook in %llu ms; "
				"releasing output, running unprotected\n", ft->peer,
				(unsigned long long)ft->pri.revoke_ms);
			ft__error(ft, "%s; revoked by the event hook", cause);
			return;
		}
		if (r == -ECANCELED) {
			fprintf(stderr, "ftvm: ft: revocation of %s abandoned (migrate_cancel or exit)\n",
				ft->peer);
			return;
		}
		ft__error(ft, "%s; output held: %s (attempt %u, retrying)", cause, why, attempt);
		fprintf(stderr, "ftvm: ft: %s\n", ft->last_error);
		if (sleep_unless_stopped(ft, 1000))
			return;
	}
}

int ft_primary__run(struct ft *ft)
{
	struct vm *vm = ft->cfg.vm;
	struct capture c = { 0 };
	char err[256];
	int ret;

	c.bitmap = calloc((vm__nr_pages(vm) + 63) / 64, 8);
	if (!c.bitmap)
		return -ENOMEM;
	const char *dbg = getenv("FTVM_DEBUG_PAUSE");
	c.debug_every = dbg ? (atoi(dbg) > 0 ? (unsigned)atoi(dbg) : 50) : 0;
	pthread_mutex_lock(&ft->lock);
	size_t cache_bytes = (size_t)ft->pri.delta_cache_mib << 20;
	pthread_mutex_unlock(&ft->lock);
	/* No hot pages in the sync: they would count as dirty in every round
	 * (checkpoint_send turns them on). */
	vm__dirty_log_set_hot(vm, 0);
	if ((ret = ft_page_cache__init(&c.cache, cache_bytes))) {
		capture__free(&c);
		return ret;
	}
	struct xport *x = NULL;
	ret = xport__connect(ft->uri, 5000, &x, err, sizeof(err));
	if (ret) {
		ft__error(ft, "%s", err);
		goto out;
	}
	/* Published under the lock: `info migrate` reads ft->x there. */
	pthread_mutex_lock(&ft->lock);
	ft->x = x;
	pthread_mutex_unlock(&ft->lock);
	xport__set_type_names(ft->x, ft_msg_names, FT_MSG_MAX);
	pthread_mutex_lock(&ft->lock);	/* `info migrate` reads it */
	snprintf(ft->peer, sizeof(ft->peer), "%s", xport__peer(ft->x));
	pthread_mutex_unlock(&ft->lock);
	if (ft->cfg.tls) {
		/* Nothing of the guest's leaves before the secondary proved it
		 * holds the same credentials. */
		char host[256];
		ft__host_of(strchr(ft->uri, ':') ? strchr(ft->uri, ':') + 1 : ft->uri, host, sizeof(host));
		ret = xport__start_tls(ft->x, ft->cfg.tls, false, host, FT_TLS_HANDSHAKE_MS, err, sizeof(err));
		if (ret) {
			ft__error(ft, "secondary %s: %s", ft->peer, err);
			goto out;
		}
	}
	ret = hello(ft, &c);
	if (!ret && (ret = ft_link__start(ft)))
		ft__error(ft, "starting the link's heartbeat thread: %s", strerror(-ret));
	if (ret)
		goto out;
	ft__set_state(ft, FT_SYNCING);
	eventtap__set_trigger(ft->cfg.et, on_output_held, ft);
	ret = initial_sync(ft, &c);
	if (ret)
		goto out;
	pthread_mutex_lock(&ft->lock);
	ft->pri.sync_percent = 100;
	pthread_mutex_unlock(&ft->lock);
	ft__set_state(ft, FT_PROTECTED);

	uint64_t last = ft__now_ns();
	/*
	 * Pipelined: a checkpoint in flight (sent, its ACK to come) does not
	 * hold the next one back. The guest runs while it travels; if its
	 * output makes the next checkpoint due before the ACK, that one is
	 * captured and sent at once, then the first is finished (ACK, release
	 * of its output only), then the second waits in turn. At most two are
	 * in flight; the secondary commits them in order, and a checkpoint's
	 * output list holds everything not yet released, the first's too.
	 */
	struct ckpt_sent inflight;
	bool pending = false;
	for (;;) {
		struct xport_msg ack;
		bool disk_failed = false;
		xport_msg__init(&ack);
		if (pending) {
			ret = wait_ack_or_due(ft, ft->wake_fd, last, &ack);
			if (ret == 1) {
				pending = false;
				ret = checkpoint_finish(ft, &inflight, &ack, true);
				xport_msg__free(&ack);
				if (ret && eventtap__failed(ft->cfg.et))
					goto disk;
				if (ret)
					break;
				continue;
			}
			xport_msg__free(&ack);
			if (ret)
				break;
		} else {
			prepause_allow(ft, true);
			ret = wait_for_trigger(ft, ft->wake_fd, last);
			prepause_allow(ft, false);
			if (ret)
				break;
		}
		if (atomic_load(&ft->pri.handover_req) && pending) {
			/* The one in flight first: a handover's checkpoint is the next. */
			pending = false;
			ret = checkpoint_finish(ft, &inflight, NULL, true);
			disk_failed = ret && eventtap__failed(ft->cfg.et);
			if (ret && !disk_failed)
				break;
		}
		if (!disk_failed && !atomic_load(&ft->pri.handover_req)) {
			last = ft__now_ns();
			struct ckpt_sent s;
			ret = checkpoint_send(ft, &c, false, &s);
			if (ret)
				break;
			if (pending) {
				pending = false;
				pthread_mutex_lock(&ft->lock);
				ft->pri.pipelined++;
				pthread_mutex_unlock(&ft->lock);
				ret = checkpoint_finish(ft, &inflight, NULL, true);
			}
			inflight = s;
			pending = true;
			if (!ret)
				continue;
			disk_failed = eventtap__failed(ft->cfg.et);
			if (!disk_failed)
				break;
		}
disk:
		if (pending) {
			/* Its ACK stands between us and the handover's own:
			 * take it (the failed release stays failed). */
			pending = false;
			int r2 = checkpoint_finish(ft, &inflight, NULL, false);
			if (r2 && !ret)
				ret = r2;
		}
		disk_failed = disk_failed || eventtap__failed(ft->cfg.et);
		if (disk_failed || atomic_load(&ft->pri.handover_req)) {
			/* A disk that failed under held output: the guest was told its
			 * write was done, this host cannot do it, the secondary holds
			 * it in its checkpoint. It takes over, or the guest stops. */
			if (disk_failed)
				fprintf(stderr, "ftvm: ft: %s; handing the guest over to %s\n",
					ft->last_error, ft->peer);
			prepause_drop(ft);
			ret = handover(ft, &c, disk_failed);
			if (!ret) {
				capture__free(&c);
				ft__set_state(ft, FT_HANDED_OVER);
				if (disk_failed)
					vm__request_quit(vm, 1);	/* it runs on the secondary now */
				return 0;
			}
			break;
		}
	}
out:
	prepause_drop(ft);
	/* A send that failed because the secondary refused us: its ERROR
	 * message may be waiting; it says more than "broken pipe". */
	if (ret && ret != -ECANCELED && ft->x) {
		struct xport_msg m;
		char e2[256];
		xport_msg__init(&m);
		while (xport__recv(ft->x, &m, 50, e2, sizeof(e2)) == 0)
			if (m.type == FT_MSG_ERROR) {
				ft__error(ft, "secondary %s refused: %.*s", ft->peer, (int)m.payload.len,
					  (const char *)m.payload.data);
				break;
			}
		xport_msg__free(&m);
	}
	eventtap__set_trigger(ft->cfg.et, NULL, NULL);
	/* The VMM is ending (quit, a signal): ft__destroy has not run yet, but
	 * a checkpoint that failed because the VM is going away is no lost
	 * secondary: neither revoke it nor release what no secondary has. */
	pthread_mutex_lock(&ft->lock);
	bool quitting = ft->pri.quitting || vm__quit_requested(vm), stopped = ft->state == FT_STOPPED,
	     committed = ft->pri.commit_sent;
	pthread_mutex_unlock(&ft->lock);
	if (stopped) {
		/* Stopped for good: nothing it holds may ever leave. */
		eventtap__track_disk(ft->cfg.et, false, 0);
		capture__free(&c);
		return ret;
	}
	/* migrate_cancel: the secondary drops its checkpoint and says so
	 * before anything held goes out. Unconfirmed, it may still hold one:
	 * then it is treated as lost. */
	bool cancel = atomic_load(&ft->pri.cancel_req) && !atomic_load(&ft->stop);
	bool cut = cancel && atomic_load(&ft->pri.cancel_cut);	/* ft__cancel shut the link */
	bool cancelled = cancel && (ret == -ECANCELED || cut);
	bool unconfirmed = false;
	if (cut) {
		ft_audit(ft, "cancel-unconfirmed", ft->pri.epoch, "the link was shut down: the "
			 "secondary read nothing");
		ft__error(ft, "migrate_cancel: the secondary read nothing (a stalled peer, though its "
			  "heartbeats may have come): the link was shut down, the CANCEL unconfirmed");
		unconfirmed = committed;
	} else if (cancelled && !quitting && ft->x) {
		char why[256] = "";
		if (cancel_peer(ft, why, sizeof(why))) {
			ft_audit(ft, "cancel-confirmed", ft->pri.epoch, NULL);
			ft__error(ft, "protection cancelled (migrate_cancel)");
		} else {
			ft_audit(ft, "cancel-unconfirmed", ft->pri.epoch, "%s", why);
			ft__error(ft, "migrate_cancel: the secondary did not confirm the CANCEL (%s)", why);
			unconfirmed = committed;
		}
	} else if (cancelled) {
		ft__error(ft, "protection cancelled (migrate_cancel)");
	}
	/* A secondary that may have committed a checkpoint (any COMMIT sent:
	 * its ACK may be what was lost) may still be promoted by the
	 * cluster: first make sure it never is (output-commit rule). */
	if (!quitting && ((ret && ret != -ECANCELED && committed) || unconfirmed) && ft->pri.event_hook[0]) {
		revoke_peer(ft);
		pthread_mutex_lock(&ft->lock);
		quitting = ft->pri.quitting || vm__quit_requested(vm);	/* it may have begun to end meanwhile */
		stopped = ft->state == FT_STOPPED;	/* superseded: the secondary took over */
		pthread_mutex_unlock(&ft->lock);
		if (stopped) {
			eventtap__track_disk(ft->cfg.et, false, 0);
			capture__free(&c);
			return ret;
		}
	}
	/* Alone again: everything held goes out, new output passes through.
	 * Not when the VMM is ending: that output belongs to state no
	 * secondary has; the guest that produced it ends here. */
	if (!quitting && eventtap__release_all(ft->cfg.et)) {
		char msg[256];
		snprintf(msg, sizeof(msg), "releasing held output after protection ended: a disk "
			 "write or flush failed (%s); the guest is stopped",
			 strerror(-eventtap__failed(ft->cfg.et)));
		stop_for_good(ft, msg);
		eventtap__track_disk(ft->cfg.et, false, 0);
		capture__free(&c);
		return ret;
	}
	eventtap__track_disk(ft->cfg.et, false, 0);
	vm__dirty_log_enable(vm, false);
	capture__free(&c);
	ft_audit(ft, quitting ? "quitting" : "unprotected", ft->pri.epoch, "released_all=%s",
		 quitting ? "no" : "yes");
	ft__set_state(ft, FT_UNPROTECTED);
	return ret;
}
