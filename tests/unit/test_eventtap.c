/*
 * test_eventtap.c - the output-commit rule at the backend seam: while
 * holding, nothing reaches the disk image or the wire; reads see held
 * writes; release performs exactly the outputs of acknowledged epochs, in
 * order, disk before frames; a serialized list re-issues the same outputs.
 *
 * The disk is the real raw-image backend on a temporary file. The wire is
 * a pipe behind a struct net_ops (tap devices need root; the tap backend
 * is exercised by the integration tests).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eventtap/eventtap.h"

#include "tests/unit/check.h"

/* ---- a wire: frames written to a pipe, one per write ---------------------- */
struct wire {
	int fds[2];
	unsigned sent;
};

static int wire_tx(void *be, const struct iovec *iov, int n)
{
	struct wire *w = be;
	uint8_t buf[2048];
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		memcpy(buf + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	w->sent++;
	return write(w->fds[1], buf, len) == (ssize_t)len ? 0 : -EIO;
}
static ssize_t wire_rx(void *be, void *buf, size_t len) { (void)be; (void)buf; (void)len; return -EAGAIN; }
static int wire_rx_fd(void *be) { return ((struct wire *)be)->fds[0]; }
static const struct net_ops wire_ops = { .tx = wire_tx, .rx = wire_rx, .rx_fd = wire_rx_fd };

static int wire_recv(struct wire *w, char *buf, size_t len)
{
	(void)len;
	ssize_t r = read(w->fds[0], buf, 64);	/* every frame in this test is 64 bytes */
	if (r < 0)
		return -1;
	buf[r] = 0;
	return (int)r;
}

static int triggers, observable_triggers;
static void on_trigger(void *opaque, uint64_t held, bool observable)
{
	(void)opaque;
	(void)held;
	triggers++;
	observable_triggers += observable;
}

static void frame(char *buf, const char *text)
{
	memset(buf, 0, 64);
	snprintf(buf + 14, 50, "%s", text);	/* after a 14-byte Ethernet header */
}

static int disk_rw(struct disk *d, bool write, uint64_t off, void *buf, size_t len)
{
	struct iovec v = { buf, len };
	return write ? d->ops->write(d->be, off, &v, 1) : d->ops->read(d->be, off, &v, 1);
}

/* ---- a gated disk: the raw image, but each flush first waits for a byte
 * on a pipe, so the test decides when the flusher thread's flush ends. */
static struct disk *gate_inner;
static int gate_fds[2];
static int gate_read(void *be, uint64_t off, const struct iovec *iov, int n)
{
	(void)be;
	return gate_inner->ops->read(gate_inner->be, off, iov, n);
}
static int gate_write(void *be, uint64_t off, const struct iovec *iov, int n)
{
	(void)be;
	return gate_inner->ops->write(gate_inner->be, off, iov, n);
}
static int gate_flush(void *be)
{
	char c;
	(void)be;
	if (read(gate_fds[0], &c, 1) != 1)
		return -EIO;
	return gate_inner->ops->flush(gate_inner->be);
}
static const struct disk_ops gate_ops = { .read = gate_read, .write = gate_write, .flush = gate_flush };
static void gate_open_once(void) { CHECK(write(gate_fds[1], "x", 1) == 1, "gate"); }

static void image_read(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	CHECK(pread(fd, buf, len, (off_t)off) == (ssize_t)len, "pread image");
	close(fd);
}

int main(void)
{
	char path[] = "/tmp/ftvm-test-eventtap-XXXXXX";
	char err[256];
	int fd = mkstemp(path);
	struct disk disk;
	struct wire w = { .sent = 0 };
	struct net net = { .ops = &wire_ops, .be = &w };
	struct eventtap *et;
	uint8_t a[4096], b[4096], got[4096];
	char f[64], rx[128];

	if (fd < 0 || ftruncate(fd, 1 << 20) < 0 || pipe2(w.fds, O_NONBLOCK) < 0) {
		perror("setup");
		return 1;
	}
	close(fd);
	CHECK(disk_raw__open(&disk, path, false, err) == 0, "open image: %s", err);
	CHECK(eventtap__create(&disk, &net, &et) == 0, "create");
	eventtap__set_trigger(et, on_trigger, NULL);
	struct disk *d = eventtap__disk(et);
	struct net *n = eventtap__net(et);

	/* Not holding: straight through. */
	memset(a, 'A', sizeof(a));
	CHECK(disk_rw(d, true, 0, a, 4096) == 0, "pass-through write");
	image_read(path, 0, got, 4096);
	CHECK(memcmp(got, a, 4096) == 0, "pass-through write reached the image");
	frame(f, "hello");
	struct iovec fv = { f, 64 };
	CHECK(n->ops->tx(n->be, &fv, 1) == 0 && w.sent == 1, "pass-through frame");
	wire_recv(&w, rx, sizeof(rx));
	CHECK(triggers == 0, "no trigger while not holding");

	/* Holding epoch 5: nothing leaves, reads see the held write. */
	eventtap__set_holding(et, true, 5);
	memset(b, 'B', sizeof(b));
	CHECK(disk_rw(d, true, 512, b, 1024) == 0, "held write");
	CHECK(d->ops->flush(d->be) == 0, "held flush");
	frame(f, "epoch5");
	CHECK(n->ops->tx(n->be, &fv, 1) == 0, "held frame");
	CHECK(triggers == 3, "each held output triggers (%d)", triggers);
	/* Only the frame can be observed: the write and the flush alone make
	 * no checkpoint due (ft/primary.c on_output_held). */
	CHECK(observable_triggers == 1, "only the frame is observable output (%d)", observable_triggers);
	image_read(path, 512, got, 1024);
	CHECK(memcmp(got, a, 1024) == 0, "held write must not reach the image");
	CHECK(wire_recv(&w, rx, sizeof(rx)) < 0, "held frame must not reach the wire");
	CHECK(disk_rw(d, false, 0, got, 4096) == 0, "overlay read");
	CHECK(memcmp(got, a, 512) == 0 && memcmp(got + 512, b, 1024) == 0 &&
	      memcmp(got + 1536, a, 2560) == 0, "read sees held write exactly where written");

	CHECK(eventtap__seal(et) == 5, "seal returns the closed epoch");
	/* Epoch 6 output. */
	uint8_t c[512];
	memset(c, 'C', sizeof(c));
	CHECK(disk_rw(d, true, 512, c, 512) == 0, "epoch 6 write over epoch 5's");
	frame(f, "epoch6");
	CHECK(n->ops->tx(n->be, &fv, 1) == 0, "epoch 6 frame");
	CHECK(disk_rw(d, false, 512, got, 512) == 0 && memcmp(got, c, 512) == 0,
	      "overlay applies held writes in issue order");

	/* The checkpoint's list: all unreleased items, in order. */
	struct sbuf list;
	uint32_t count = 0;
	sbuf__init(&list);
	CHECK(eventtap__serialize(et, &list, &count) == 0 && count == 5, "serialize (%u)", count);
	CHECK(et_list__check(list.data, list.len, 6, d->size, err, sizeof(err)) == 0, "list checks: %s",
	      err);
	CHECK(et_list__check(list.data, list.len, 5, d->size, err, sizeof(err)) == -EBADMSG,
	      "an item from a future epoch is refused");
	CHECK(et_list__check(list.data, list.len - 1, 6, d->size, err, sizeof(err)) == -EBADMSG &&
	      strstr(err, "truncated"), "truncated list refused: %s", err);
	/* The secondary checks writes against its real disk, not "any size". */
	CHECK(et_list__check(list.data, list.len, 6, 512, err, sizeof(err)) == -EBADMSG,
	      "a write beyond the disk is refused at check, before anything is applied");

	struct et_stats st;
	eventtap__stats(et, &st);
	CHECK(st.held_items == 5 && st.held_frames == 2 && st.held_writes == 2, "stats");

	/* ACK(5): epoch 5 out, epoch 6 still held. */
	CHECK(eventtap__release(et, 5) == 0, "release 5");
	image_read(path, 512, got, 1024);
	CHECK(memcmp(got, b, 1024) == 0, "epoch 5 write on the image after release");
	CHECK(wire_recv(&w, rx, sizeof(rx)) == 64 && !strcmp(rx + 14, "epoch5"), "epoch 5 frame sent");
	CHECK(wire_recv(&w, rx, sizeof(rx)) < 0, "epoch 6 frame still held");
	CHECK(disk_rw(d, false, 512, got, 512) == 0 && memcmp(got, c, 512) == 0,
	      "read still sees epoch 6's held write");
	CHECK(eventtap__release(et, 6) == 0, "release 6");
	image_read(path, 512, got, 512);
	CHECK(memcmp(got, c, 512) == 0, "epoch 6 write on the image");
	CHECK(wire_recv(&w, rx, sizeof(rx)) == 64 && !strcmp(rx + 14, "epoch6"), "epoch 6 frame");
	eventtap__stats(et, &st);
	CHECK(st.held_items == 0 && st.released_items == 5, "all released");
	uint64_t lat[8];
	CHECK(eventtap__latencies(et, lat, 8) == 5, "a latency per released item");

	/* Re-issue the checkpoint's list (what a secondary does at failover):
	 * write something else first, re-issue must restore it. */
	memset(a, 'Z', sizeof(a));
	eventtap__set_holding(et, false, 0);
	CHECK(disk_rw(d, true, 0, a, 4096) == 0, "overwrite");
	uint32_t frames = 0, writes = 0;
	CHECK(et_list__reissue(et, list.data, list.len, true, &frames, &writes) == 0 &&
	      frames == 2 && writes == 2, "re-issue (%u frames, %u writes)", frames, writes);
	image_read(path, 512, got, 512);
	CHECK(memcmp(got, c, 512) == 0, "re-issued writes in order: last one wins");
	CHECK(wire_recv(&w, rx, sizeof(rx)) == 64 && !strcmp(rx + 14, "epoch5"), "re-issued frame 1");
	CHECK(wire_recv(&w, rx, sizeof(rx)) == 64 && !strcmp(rx + 14, "epoch6"), "re-issued frame 2");

	/* apply_disk with min_epoch: only epoch 6's write. */
	CHECK(disk_rw(d, true, 0, a, 4096) == 0, "overwrite again");
	CHECK(et_list__apply_disk(et, list.data, list.len, 6) == 0, "apply epoch >= 6");
	image_read(path, 0, got, 4096);
	CHECK(memcmp(got + 512, c, 512) == 0 && got[1024] == 'Z', "only epoch 6 applied");

	/* Disk tracking for initial sync. */
	uint64_t bm[1] = { 0 };
	CHECK(eventtap__track_disk(et, true, 65536) == 0, "track");
	CHECK(disk_rw(d, true, 65536 * 3 + 10, a, 100) == 0, "tracked write");
	CHECK(eventtap__collect_disk_dirty(et, bm) == 0 && bm[0] == (1ull << 3), "block 3 dirty (%llx)",
	      (unsigned long long)bm[0]);

	/* A release whose write fails: nothing of it is sent, everything it
	 * took off goes back (in order), and the event tap stays failed. */
	eventtap__track_disk(et, false, 0);
	eventtap__set_holding(et, true, 20);
	memset(a, 'F', 512);
	CHECK(disk_rw(d, true, 8192, a, 512) == 0, "held write (fails at release)");
	frame(f, "fail20");
	CHECK(n->ops->tx(n->be, &fv, 1) == 0, "held frame after it");
	CHECK(eventtap__seal(et) == 20, "seal 20");
	unsigned sent0 = w.sent;
	disk_raw__inject_error(&disk, EIO, 1);
	CHECK(eventtap__release(et, 20) == -EIO, "release with a failing write");
	CHECK(w.sent == sent0 && wire_recv(&w, rx, sizeof(rx)) < 0,
	      "no frame sent after the write it follows failed");
	eventtap__stats(et, &st);
	CHECK(st.held_items == 2 && st.held_writes == 1 && st.held_frames == 1,
	      "the failed release's items are held again (%llu)", (unsigned long long)st.held_items);
	CHECK(eventtap__failed(et) == -EIO && eventtap__release(et, 20) == -EIO &&
	      eventtap__release_all(et) == -EIO && w.sent == sent0, "failed for good");
	CHECK(disk_rw(d, false, 8192, got, 512) == 0 && got[0] == 'F', "reads still see the write");
	sbuf__reset(&list);
	CHECK(eventtap__serialize(et, &list, &count) == 0 && count == 2,
	      "the next checkpoint carries them (%u)", count);
	eventtap__destroy(et);

	/* A failing flush (the path where the lock was let go): the frame
	 * after it is not sent, flush and frame are held again. */
	CHECK(eventtap__create(&disk, &net, &et) == 0, "a second event tap");
	d = eventtap__disk(et);
	n = eventtap__net(et);
	eventtap__set_holding(et, true, 30);
	CHECK(d->ops->flush(d->be) == 0, "held flush");
	frame(f, "flush30");
	CHECK(n->ops->tx(n->be, &fv, 1) == 0, "held frame");
	eventtap__seal(et);
	sent0 = w.sent;
	disk_raw__inject_error(&disk, EIO, 1);
	CHECK(eventtap__release(et, 30) == -EIO && w.sent == sent0, "release with a failing flush");
	eventtap__stats(et, &st);
	CHECK(st.held_items == 2 && st.held_frames == 1, "flush and frame held again (%llu)",
	      (unsigned long long)st.held_items);
	CHECK(wire_recv(&w, rx, sizeof(rx)) < 0, "nothing on the wire");
	eventtap__destroy(et);

	/* Replicated storage (release_flush_last): the frames leave once the
	 * writes are issued, before this disk's flush; a write that fails
	 * still stops them, a flush that fails keeps the flush (and the
	 * writes) held, and the event tap fails. */
	CHECK(eventtap__create(&disk, &net, &et) == 0, "a third event tap");
	d = eventtap__disk(et);
	n = eventtap__net(et);
	eventtap__set_holding(et, true, 40);
	memset(a, 'R', 512);
	CHECK(disk_rw(d, true, 12288, a, 512) == 0 && d->ops->flush(d->be) == 0, "held write and flush");
	frame(f, "repl40");
	CHECK(n->ops->tx(n->be, &fv, 1) == 0, "held frame");
	eventtap__seal(et);
	CHECK(eventtap__release_flush_last(et, 40) == 0, "release 40");
	CHECK(wire_recv(&w, rx, sizeof(rx)) == 64 && !strcmp(rx + 14, "repl40"), "the frame of 40 went out");
	image_read(path, 12288, got, 512);
	CHECK(got[0] == 'R' && got[511] == 'R', "the write of 40 is in the image");
	CHECK(disk_rw(d, true, 12800, a, 512) == 0, "held write 41");
	frame(f, "repl41");
	CHECK(n->ops->tx(n->be, &fv, 1) == 0, "held frame 41");
	eventtap__seal(et);
	sent0 = w.sent;
	disk_raw__inject_error(&disk, EIO, 1);
	CHECK(eventtap__release_flush_last(et, 41) == -EIO && w.sent == sent0,
	      "a failed write sends no frame, flush last or not");
	eventtap__destroy(et);
	CHECK(eventtap__create(&disk, &net, &et) == 0, "a fourth event tap");
	d = eventtap__disk(et);
	n = eventtap__net(et);
	eventtap__set_holding(et, true, 50);
	CHECK(d->ops->flush(d->be) == 0, "held flush 50");
	frame(f, "repl50");
	CHECK(n->ops->tx(n->be, &fv, 1) == 0, "held frame 50");
	eventtap__seal(et);
	disk_raw__inject_error(&disk, EIO, 1);
	CHECK(eventtap__release_flush_last(et, 50) == -EIO, "release 50 with a failing flush");
	CHECK(wire_recv(&w, rx, sizeof(rx)) == 64 && !strcmp(rx + 14, "repl50"),
	      "the frame went out before the flush");
	eventtap__stats(et, &st);
	CHECK(st.held_items == 1 && st.held_frames == 0 && eventtap__failed(et) == -EIO,
	      "the flush is held again, the frame is not (%llu items)", (unsigned long long)st.held_items);
	sbuf__reset(&list);
	CHECK(eventtap__serialize(et, &list, &count) == 0 && count == 1, "a handover carries the flush");

	/*
	 * eventtap__release_async: the writes are issued at once, the flush is
	 * the flusher thread's, and until it is done the items are still held
	 * (serialized, counted) and no frame after them leaves, not even one of
	 * a later epoch. A frame with nothing queued before it leaves at once.
	 */
	{
		struct disk gd = disk;
		gd.ops = &gate_ops;
		gate_inner = &disk;
		CHECK(pipe(gate_fds) == 0, "gate pipe");
		struct eventtap *et2;
		CHECK(eventtap__create(&gd, &net, &et2) == 0, "create a second event tap");
		triggers = observable_triggers = 0;
		eventtap__set_trigger(et2, on_trigger, NULL);
		struct disk *d2 = eventtap__disk(et2);
		struct net *n2 = eventtap__net(et2);
		while (wire_recv(&w, rx, sizeof(rx)) > 0)
			;
		eventtap__set_holding(et2, true, 1);
		memset(b, 'W', sizeof(b));
		CHECK(disk_rw(d2, true, 65536, b, 512) == 0 && d2->ops->flush(d2->be) == 0, "held write + flush 1");
		frame(f, "async1");
		CHECK(n2->ops->tx(n2->be, &fv, 1) == 0, "held frame 1");
		CHECK(eventtap__seal(et2) == 1, "seal 1");
		CHECK(eventtap__release_async(et2, 1) == 0, "async release 1");
		image_read(path, 65536, got, 512);
		CHECK(memcmp(got, b, 512) == 0, "the write is issued by the async release itself");
		usleep(20000);	/* the flusher waits in its flush (the gate) */
		CHECK(wire_recv(&w, rx, sizeof(rx)) < 0, "no frame before the flush is done");
		sbuf__reset(&list);
		CHECK(eventtap__serialize(et2, &list, &count) == 0 && count == 3,
		      "a capture during the flush still carries write, flush and frame (%u)", count);
		frame(f, "async2");
		CHECK(n2->ops->tx(n2->be, &fv, 1) == 0 && eventtap__seal(et2) == 2, "held frame 2");
		CHECK(eventtap__release_async(et2, 2) == 0, "async release 2");
		CHECK(wire_recv(&w, rx, sizeof(rx)) < 0, "a later frame does not overtake the queued ones");
		gate_open_once();
		CHECK(eventtap__drain(et2) == 0, "drain");
		CHECK(wire_recv(&w, rx, sizeof(rx)) == 64 && !strcmp(rx + 14, "async1") &&
		      wire_recv(&w, rx, sizeof(rx)) == 64 && !strcmp(rx + 14, "async2"),
		      "after the flush: both frames, in order");
		eventtap__stats(et2, &st);
		CHECK(st.held_items == 0, "nothing held after the drain (%llu)", (unsigned long long)st.held_items);
		frame(f, "async3");
		CHECK(n2->ops->tx(n2->be, &fv, 1) == 0 && eventtap__seal(et2) == 3, "held frame 3");
		CHECK(eventtap__release_async(et2, 3) == 0 && wire_recv(&w, rx, sizeof(rx)) == 64 &&
		      !strcmp(rx + 14, "async3"), "a frame with nothing before it leaves at once");
		/* The flusher's flush fails: everything stays held, the trigger
		 * fires, and every later release returns the error. */
		CHECK(disk_rw(d2, true, 69632, b, 512) == 0 && d2->ops->flush(d2->be) == 0, "held write + flush 4");
		frame(f, "async4");
		CHECK(n2->ops->tx(n2->be, &fv, 1) == 0 && eventtap__seal(et2) == 4, "held frame 4");
		int obs0 = observable_triggers;
		disk_raw__inject_flush_error(&disk, EIO, 1);
		gate_open_once();
		CHECK(eventtap__release_async(et2, 4) == 0, "async release 4");
		CHECK(eventtap__drain(et2) == -EIO, "the drain reports the failed flush");
		CHECK(observable_triggers == obs0 + 1, "the failed flush fired the trigger");
		CHECK(wire_recv(&w, rx, sizeof(rx)) < 0, "no frame after a failed flush");
		eventtap__stats(et2, &st);
		CHECK(st.held_items == 3, "write, flush and frame stay held (%llu)", (unsigned long long)st.held_items);
		CHECK(eventtap__release(et2, 4) == -EIO && eventtap__release_async(et2, 4) == -EIO,
		      "later releases return the error");
		sbuf__reset(&list);
		CHECK(eventtap__serialize(et2, &list, &count) == 0 && count == 3, "a handover carries them");
		eventtap__destroy(et2);
		close(gate_fds[0]);
		close(gate_fds[1]);
	}

	/* Policies. */
	struct et_policy_cfg p;
	CHECK(et_policy__parse("event", &p, err, sizeof(err)) == 0 && p.policy == ET_POLICY_EVENT, "event");
	CHECK(et_policy__parse("epoch:50", &p, err, sizeof(err)) == 0 && p.epoch_ms == 50, "epoch:50");
	CHECK(et_policy__parse("hybrid:300:40", &p, err, sizeof(err)) == 0 && p.window_us == 300 &&
	      p.max_ms == 40, "hybrid");
	CHECK(et_policy__parse("epoch:0", &p, err, sizeof(err)) < 0 && strstr(err, "epoch:0"), "epoch:0");
	CHECK(et_policy__parse("remus", &p, err, sizeof(err)) < 0, "unknown policy");
	CHECK(et_policy__parse("event:5", &p, err, sizeof(err)) < 0, "event takes no argument");
	CHECK(et_policy__parse("hybrid:x", &p, err, sizeof(err)) < 0, "bad hybrid window");

	sbuf__free(&list);
	eventtap__destroy(et);
	disk_raw__close(&disk);
	unlink(path);
	if (failures) {
		printf("test_eventtap: %d checks failed\n", failures);
		return 1;
	}
	printf("test_eventtap: all checks passed\n");
	return 0;
}
