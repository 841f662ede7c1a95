/*
 * test_ft_receive.c - the secondary's stream step (ft/receive.c), driven
 * message by message without KVM: guest RAM is a buffer here, the
 * replicated disk a real raw image under the real event tap.
 *
 * What a user relies on: RAM and disk change only at a COMMIT of a
 * complete, verified checkpoint; anything else is refused and changes
 * nothing; a checkpoint whose disk writes fail leaves the secondary
 * unusable rather than half applied; the initial sync is durable before
 * the first ACK.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ft/ft_internal.h"
#include "ft/receive.h"

#define PAGES 16

static uint8_t ram[PAGES][FT_PAGE];
static uint8_t before[PAGES][FT_PAGE];

static void *page_of(void *opaque, uint64_t idx)
{
	(void)opaque;
	return ram[idx];
}

/* A stand-in for vm__check_state: the blob must say "STATE". */
static int check_state(void *opaque, const void *blob, size_t len, char *err)
{
	(void)opaque;
	if (len >= 5 && !memcmp(blob, "STATE", 5))
		return 0;
	snprintf(err, VMM_ERR_LEN, "not a state blob");
	return -EINVAL;
}

/* A disk whose flushes are counted, over the raw image. */
struct counting {
	struct disk *inner;
	int flushes;
};

static int c_read(void *be, uint64_t off, const struct iovec *v, int n)
{
	struct counting *c = be;
	return c->inner->ops->read(c->inner->be, off, v, n);
}

static int c_write(void *be, uint64_t off, const struct iovec *v, int n)
{
	struct counting *c = be;
	return c->inner->ops->write(c->inner->be, off, v, n);
}

static int c_flush(void *be)
{
	struct counting *c = be;
	c->flushes++;
	return c->inner->ops->flush(c->inner->be);
}

static int c_reserve(void *be, uint64_t off, uint64_t len)
{
	struct counting *c = be;
	return c->inner->ops->reserve ? c->inner->ops->reserve(c->inner->be, off, len) : 0;
}

static const struct disk_ops counting_ops = {
	.read = c_read, .write = c_write, .flush = c_flush, .reserve = c_reserve,
};

struct msgbuf {
	struct xport_msg m;
};

static struct xport_msg *msg(struct msgbuf *b, uint32_t type, uint32_t flags, uint64_t epoch,
			     const void *payload, size_t len)
{
	sbuf__reset(&b->m.payload);
	b->m.type = type;
	b->m.flags = flags;
	b->m.epoch = epoch;
	if (len)
		sbuf__append(&b->m.payload, payload, len);
	return &b->m;
}

/* A raw PAGES/SYNC_RAM payload: the pages, each filled with fill[i]. */
static size_t pages_payload(uint8_t *out, const uint64_t *idx, const uint8_t *fill, uint32_t n)
{
	memcpy(out, &n, 4);
	memcpy(out + 4, idx, (size_t)n * 8);
	for (uint32_t i = 0; i < n; i++)
		memset(out + 4 + (size_t)n * 8 + (size_t)i * FT_PAGE, fill[i], FT_PAGE);
	return 4 + (size_t)n * 8 + (size_t)n * FT_PAGE;
}

/* An et_list with one disk write (or none: off == UINT64_MAX). */
static size_t outputs_payload(uint8_t *out, uint64_t epoch, uint64_t off, const char *data)
{
	uint32_t count = off == UINT64_MAX ? 0 : 1;
	memcpy(out, &count, 4);
	if (!count)
		return 4;
	uint32_t len = (uint32_t)strlen(data);
	out[4] = ET_DISK_WRITE;
	memcpy(out + 5, &epoch, 8);
	memcpy(out + 13, &off, 8);
	memcpy(out + 21, &len, 4);
	memcpy(out + 25, data, len);
	return 25 + len;
}

static enum ft_rx_verdict step(struct ft_rx *rx, struct xport_msg *m, struct ft_rx_reply *r, char *err)
{
	err[0] = '\0';
	return ft_rx__step(rx, m, r, err, 512);
}

static struct ft_commit commit_of(uint32_t pages, uint32_t page_msgs, uint32_t outputs)
{
	struct ft_commit c = { .pages = pages, .page_msgs = page_msgs, .outputs = outputs };
	return c;
}

/* BEGIN e, PAGES (n pages), STATE, OUTPUTS (empty); no COMMIT. */
static void stage_checkpoint(struct ft_rx *rx, struct msgbuf *b, uint64_t e, const uint64_t *idx,
			     const uint8_t *fill, uint32_t n, uint8_t *buf, char *err)
{
	struct ft_rx_reply r;
	uint64_t cap = 1234;
	CHECK(step(rx, msg(b, FT_MSG_BEGIN, 0, e, &cap, 8), &r, err) == FT_RX_NEXT, "BEGIN %llu: %s",
	      (unsigned long long)e, err);
	size_t len = pages_payload(buf, idx, fill, n);
	CHECK(step(rx, msg(b, FT_MSG_PAGES, 0, e, buf, len), &r, err) == FT_RX_NEXT, "PAGES: %s", err);
	CHECK(step(rx, msg(b, FT_MSG_STATE, 0, e, "STATE", 5), &r, err) == FT_RX_NEXT, "STATE: %s", err);
	len = outputs_payload(buf, e, UINT64_MAX, NULL);
	CHECK(step(rx, msg(b, FT_MSG_OUTPUTS, 0, e, buf, len), &r, err) == FT_RX_NEXT, "OUTPUTS: %s", err);
}

/* BEGIN 1, STATE, and an empty output list in two pieces (FT_FLAG_MORE on the first). */
static void stage_two_pieces(struct ft_rx *rx, struct msgbuf *b, char *err)
{
	struct ft_rx_reply r;
	uint64_t cap = 1;
	uint32_t zero = 0;
	CHECK(step(rx, msg(b, FT_MSG_BEGIN, 0, 1, &cap, 8), &r, err) == FT_RX_NEXT, "BEGIN: %s", err);
	CHECK(step(rx, msg(b, FT_MSG_STATE, 0, 1, "STATE", 5), &r, err) == FT_RX_NEXT, "STATE: %s", err);
	CHECK(step(rx, msg(b, FT_MSG_OUTPUTS, FT_FLAG_MORE, 1, &zero, 2), &r, err) == FT_RX_NEXT, "piece 1");
	CHECK(step(rx, msg(b, FT_MSG_OUTPUTS, 0, 1, &zero, 2), &r, err) == FT_RX_NEXT, "piece 2");
}

static int ram_unchanged(void)
{
	return !memcmp(ram, before, sizeof(ram));
}

/* A delta-coded PAGES payload, laid out as the primary's send_delta_pages
 * does (ft/page_cache.c): index, codes, CRCs and deltas, whole pages raw or
 * LZ4-coded. */
static void delta_payload(struct ft_page_cache *c, const uint64_t *idx, uint8_t (*pages)[FT_PAGE], uint32_t n,
			  bool lz4, struct sbuf *out, struct ft_page_counts *cnt)
{
	struct sbuf deltas;
	uint16_t codes[PAGES];
	sbuf__init(&deltas);
	sbuf__reset(out);
	sbuf__append(out, &n, 4);
	sbuf__append(out, idx, (size_t)n * 8);
	for (uint32_t i = 0; i < n; i++)
		CHECK(ft_page_cache__encode(c, idx[i], pages[i], &deltas, &codes[i], cnt) == 0, "encode");
	for (uint32_t i = 0; i < n; i++) {
		uint8_t le[2] = { (uint8_t)codes[i], (uint8_t)(codes[i] >> 8) };
		sbuf__append(out, le, 2);
	}
	sbuf__append(out, deltas.data, deltas.len);
	for (uint32_t i = 0; i < n; i++)
		if (codes[i] == FT_PAGE_WHOLE) {
			if (lz4)
				page_codec__encode(pages[i], FT_PAGE, out);
			else
				sbuf__append(out, pages[i], FT_PAGE);
		}
	sbuf__free(&deltas);
}

/* One checkpoint of delta-coded pages: BEGIN, PAGES, STATE, OUTPUTS, COMMIT. */
static enum ft_rx_verdict delta_checkpoint(struct ft_rx *rx, struct msgbuf *b, uint64_t e, struct sbuf *payload,
					   uint32_t n, bool lz4, char *err)
{
	struct ft_rx_reply r;
	uint64_t cap = e;
	uint8_t outs[8];
	struct ft_commit cm = commit_of(n, 1, 1);
	CHECK(step(rx, msg(b, FT_MSG_BEGIN, 0, e, &cap, 8), &r, err) == FT_RX_NEXT, "BEGIN: %s", err);
	enum ft_rx_verdict v = step(rx, msg(b, FT_MSG_PAGES, FT_FLAG_DELTA | (lz4 ? FT_FLAG_LZ4 : 0), e,
					    payload->data, payload->len), &r, err);
	if (v != FT_RX_NEXT)
		return v;
	CHECK(step(rx, msg(b, FT_MSG_STATE, 0, e, "STATE", 5), &r, err) == FT_RX_NEXT, "STATE: %s", err);
	size_t len = outputs_payload(outs, e, UINT64_MAX, NULL);
	CHECK(step(rx, msg(b, FT_MSG_OUTPUTS, 0, e, outs, len), &r, err) == FT_RX_NEXT, "OUTPUTS: %s", err);
	return step(rx, msg(b, FT_MSG_COMMIT, 0, e, &cm, sizeof(cm)), &r, err);
}

/*
 * Dirty pages sent as deltas against the secondary's copy: they rebuild
 * the primary's pages exactly, whole and zero pages travel with them, and
 * a secondary whose copy is not the primary's refuses the checkpoint
 * (the CRC of the rebuilt page) and keeps the one it had.
 */
static void test_delta_pages(const struct ft_rx_target *t)
{
	static uint8_t pages[PAGES][FT_PAGE];
	struct ft_page_cache cache = { 0 };
	struct ft_page_counts cnt = { 0, 0, 0 };
	struct ft_rx rx;
	struct msgbuf b;
	struct sbuf pl;
	char err[512];
	uint64_t idx[PAGES];
	uint64_t seed = 7;

	xport_msg__init(&b.m);
	sbuf__init(&pl);
	memset(ram, 0, sizeof(ram));
	ft_rx__init(&rx, t);
	CHECK(ft_page_cache__init(&cache, 100 * FT_PAGE) == 0 && cache.slots == 64, "a cache of 64 pages");
	for (uint32_t i = 0; i < PAGES; i++) {
		idx[i] = i;
		for (size_t j = 0; j < FT_PAGE; j++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			pages[i][j] = (uint8_t)(seed >> 56);
		}
	}
	memset(pages[2], 0, FT_PAGE);
	/* Epoch 1: every page new to the cache, whole (or zero). Then
	 * epochs 2..6 change a few bytes of each, with and without LZ4: the
	 * pages alone in their slot of the cache go as deltas. */
	for (uint64_t e = 1; e <= 6; e++) {
		if (e > 1)
			for (uint32_t i = 0; i < PAGES; i++)
				pages[i][(e * 131 + i * 17) % FT_PAGE] ^= (uint8_t)(e + 1);
		bool lz4 = e % 2 == 0;
		delta_payload(&cache, idx, pages, PAGES, lz4, &pl, &cnt);
		enum ft_rx_verdict v = delta_checkpoint(&rx, &b, e, &pl, PAGES, lz4, err);
		CHECK(v == FT_RX_COMMITTED, "delta checkpoint %llu: %s", (unsigned long long)e, err);
		CHECK(!memcmp(ram, pages, sizeof(ram)), "checkpoint %llu: RAM is not the primary's pages",
		      (unsigned long long)e);
	}
	CHECK(cnt.delta >= 5 * (PAGES - 4) && cnt.whole >= PAGES - 1 && cnt.zero >= 1,
	      "pages sent: %llu as deltas, %llu whole, %llu zero", (unsigned long long)cnt.delta,
	      (unsigned long long)cnt.whole, (unsigned long long)cnt.zero);
	CHECK(pl.len < 4 + PAGES * 30 + 4 * FT_PAGE, "a checkpoint of small changes took %zu bytes", pl.len);

	/* This secondary's copy of a page is no longer the primary's. */
	uint32_t victim = PAGES;
	for (uint32_t i = 0; i < PAGES && victim == PAGES; i++) {
		size_t s = (size_t)((i * 0x9e3779b97f4a7c15ull) >> cache.shift);
		if (cache.tag[s] == i + 1u)
			victim = i;
	}
	CHECK(victim < PAGES, "no page stayed in the cache");
	if (victim == PAGES)
		victim = 0;
	ram[victim][100] ^= 0xff;
	memcpy(before, ram, sizeof(ram));
	pages[victim][7] ^= 1;
	delta_payload(&cache, idx, pages, PAGES, false, &pl, &cnt);
	CHECK(delta_checkpoint(&rx, &b, 7, &pl, PAGES, false, err) == FT_RX_REFUSE && strstr(err, "CRC-32C"),
	      "a delta against another copy: \"%s\"", err);
	CHECK(ram_unchanged(), "a refused delta checkpoint changed RAM");

	/* Cut short: the codes, a delta, the whole pages. */
	for (size_t cut = 1; cut < 4 + PAGES * 10 + 40; cut += 7) {
		ft_rx__free(&rx);
		ft_rx__init(&rx, t);
		struct ft_page_cache fresh = { 0 };
		ft_page_cache__init(&fresh, 8 * FT_PAGE);
		delta_payload(&fresh, idx, pages, 1, false, &pl, &cnt);
		pl.len = cut < pl.len ? pl.len - cut : 0;
		CHECK(delta_checkpoint(&rx, &b, 1, &pl, 1, false, err) == FT_RX_REFUSE, "cut %zu accepted", cut);
		ft_page_cache__free(&fresh);
	}
	/* Delta-coded pages only in a checkpoint, never in the sync. */
	ft_rx__free(&rx);
	ft_rx__init(&rx, t);
	delta_payload(&cache, idx, pages, 1, false, &pl, &cnt);
	struct ft_rx_reply r;
	CHECK(step(&rx, msg(&b, FT_MSG_SYNC_RAM, FT_FLAG_DELTA, 0, pl.data, pl.len), &r, err) == FT_RX_REFUSE,
	      "delta-coded SYNC_RAM accepted");
	ft_rx__free(&rx);
	ft_page_cache__free(&cache);
	sbuf__free(&pl);
	xport_msg__free(&b.m);
}

int main(void)
{
	static uint8_t buf[4 + 8 * 4 + 4 * FT_PAGE];
	struct ft_rx_target t = {
		.nr_pages = PAGES, .mem_size = sizeof(ram), .page = page_of, .check_state = check_state,
	};
	struct ft_rx rx;
	struct ft_rx_reply r;
	struct msgbuf b;
	char err[512];
	struct ft_commit cm;
	uint64_t idx[4];
	uint8_t fill[4];
	uint32_t zero4 = 0;

	xport_msg__init(&b.m);

	/* 1. Initial sync, then checkpoint 1: applied at COMMIT, ACKed. */
	ft_rx__init(&rx, &t);
	idx[0] = 3, fill[0] = 0x33;
	size_t len = pages_payload(buf, idx, fill, 1);
	CHECK(step(&rx, msg(&b, FT_MSG_SYNC_RAM, 0, 0, buf, len), &r, err) == FT_RX_NEXT, "SYNC_RAM: %s", err);
	CHECK(ram[3][0] == 0x33 && ram[3][FT_PAGE - 1] == 0x33, "the initial sync writes RAM directly");
	idx[0] = 5, fill[0] = 0x55;
	stage_checkpoint(&rx, &b, 1, idx, fill, 1, buf, err);
	CHECK(ram[5][0] == 0, "a staged page is not in RAM before its COMMIT");
	cm = commit_of(1, 1, 1);
	CHECK(step(&rx, msg(&b, FT_MSG_COMMIT, 0, 1, &cm, sizeof(cm)), &r, err) == FT_RX_COMMITTED,
	      "COMMIT 1: %s", err);
	CHECK(r.type == FT_MSG_ACK && r.epoch == 1, "COMMIT 1 replies ACK 1 (got type %u epoch %llu)", r.type,
	      (unsigned long long)r.epoch);
	CHECK(ram[5][0] == 0x55, "checkpoint 1's page is in RAM after its COMMIT");
	struct sbuf st, out;
	sbuf__init(&st);
	sbuf__init(&out);
	ft_rx__take_committed(&rx, &st, &out);
	CHECK(st.len == 5 && !memcmp(st.data, "STATE", 5), "the committed state is checkpoint 1's");
	CHECK(out.len == 4, "the committed outputs are checkpoint 1's (%zu bytes)", out.len);
	sbuf__free(&st);
	sbuf__free(&out);
	memcpy(before, ram, sizeof(ram));

	/* 2. After a checkpoint, the initial sync is over. */
	idx[0] = 7, fill[0] = 0x77;
	len = pages_payload(buf, idx, fill, 1);
	CHECK(step(&rx, msg(&b, FT_MSG_SYNC_RAM, 0, 0, buf, len), &r, err) == FT_RX_REFUSE, "late SYNC_RAM");
	CHECK_ERR_HAS(err, "after the first checkpoint");
	CHECK(ram_unchanged(), "a refused SYNC_RAM changes no RAM");

	/* 3. Sequence: BEGIN must be committed + 1; HANDOVER only between checkpoints. */
	uint64_t cap = 1;
	CHECK(step(&rx, msg(&b, FT_MSG_BEGIN, 0, 3, &cap, 8), &r, err) == FT_RX_REFUSE, "BEGIN 3 after 1");
	CHECK_ERR_HAS(err, "out of sequence");
	CHECK(step(&rx, msg(&b, FT_MSG_HANDOVER, 0, 2, NULL, 0), &r, err) == FT_RX_REFUSE, "HANDOVER 2 at 1");
	ft_rx__free(&rx);

	/* 4. A page sent twice in one checkpoint (across two messages). */
	ft_rx__init(&rx, &t);
	CHECK(step(&rx, msg(&b, FT_MSG_BEGIN, 0, 1, &cap, 8), &r, err) == FT_RX_NEXT, "BEGIN: %s", err);
	idx[0] = 2, fill[0] = 0x22;
	len = pages_payload(buf, idx, fill, 1);
	CHECK(step(&rx, msg(&b, FT_MSG_PAGES, 0, 1, buf, len), &r, err) == FT_RX_NEXT, "PAGES: %s", err);
	idx[0] = 4, idx[1] = 2, fill[0] = 0x44, fill[1] = 0x99;
	len = pages_payload(buf, idx, fill, 2);
	CHECK(step(&rx, msg(&b, FT_MSG_PAGES, 0, 1, buf, len), &r, err) == FT_RX_REFUSE, "repeated page");
	CHECK_ERR_HAS(err, "sent twice");
	CHECK(ram_unchanged(), "a refused checkpoint changes no RAM");
	ft_rx__free(&rx);

	/* 5. A page beyond the guest's RAM; an incomplete checkpoint; a state the VM refuses;
	 * a page message of no pages (found by fuzz_receive: it must not touch its buffer). */
	ft_rx__init(&rx, &t);
	CHECK(step(&rx, msg(&b, FT_MSG_BEGIN, 0, 1, &cap, 8), &r, err) == FT_RX_NEXT, "BEGIN: %s", err);
	CHECK(step(&rx, msg(&b, FT_MSG_PAGES, 0, 1, &zero4, 4), &r, err) == FT_RX_NEXT, "no pages: %s", err);
	CHECK(step(&rx, msg(&b, FT_MSG_PAGES, 0, 1, "\0\0\0\0x", 5), &r, err) == FT_RX_REFUSE,
	      "data for no pages");
	CHECK_ERR_HAS(err, "for no page");
	idx[0] = PAGES, fill[0] = 1;
	len = pages_payload(buf, idx, fill, 1);
	CHECK(step(&rx, msg(&b, FT_MSG_PAGES, 0, 1, buf, len), &r, err) == FT_RX_REFUSE, "page beyond RAM");
	CHECK_ERR_HAS(err, "beyond");
	ft_rx__free(&rx);
	ft_rx__init(&rx, &t);
	CHECK(step(&rx, msg(&b, FT_MSG_BEGIN, 0, 1, &cap, 8), &r, err) == FT_RX_NEXT, "BEGIN: %s", err);
	idx[0] = 6, fill[0] = 0x66;
	len = pages_payload(buf, idx, fill, 1);
	CHECK(step(&rx, msg(&b, FT_MSG_PAGES, 0, 1, buf, len), &r, err) == FT_RX_NEXT, "PAGES: %s", err);
	len = outputs_payload(buf, 1, UINT64_MAX, NULL);
	CHECK(step(&rx, msg(&b, FT_MSG_OUTPUTS, 0, 1, buf, len), &r, err) == FT_RX_NEXT, "OUTPUTS: %s", err);
	cm = commit_of(1, 1, 1);
	CHECK(step(&rx, msg(&b, FT_MSG_COMMIT, 0, 1, &cm, sizeof(cm)), &r, err) == FT_RX_REFUSE,
	      "COMMIT without STATE");
	CHECK_ERR_HAS(err, "state missing");
	CHECK(r.type == 0, "no ACK for a refused COMMIT");
	CHECK(ram_unchanged(), "an incomplete checkpoint changes no RAM");
	ft_rx__free(&rx);
	ft_rx__init(&rx, &t);
	idx[0] = 6, fill[0] = 0x66;
	stage_checkpoint(&rx, &b, 1, idx, fill, 1, buf, err);
	CHECK(step(&rx, msg(&b, FT_MSG_STATE, 0, 1, "BOGUS", 5), &r, err) == FT_RX_NEXT, "STATE: %s", err);
	CHECK(step(&rx, msg(&b, FT_MSG_COMMIT, 0, 1, &cm, sizeof(cm)), &r, err) == FT_RX_REFUSE,
	      "COMMIT of a state the VM refuses");
	CHECK_ERR_HAS(err, "state refused");
	CHECK(ram_unchanged(), "a checkpoint with a refused state changes no RAM");
	ft_rx__free(&rx);

	/* 6. OUTPUTS in pieces (FT_FLAG_MORE): joined, counted by COMMIT; none after the last. */
	uint32_t zero = 0;
	ft_rx__init(&rx, &t);
	stage_two_pieces(&rx, &b, err);
	CHECK(step(&rx, msg(&b, FT_MSG_OUTPUTS, 0, 1, &zero, 2), &r, err) == FT_RX_REFUSE, "piece 3");
	CHECK_ERR_HAS(err, "after its last piece");
	ft_rx__free(&rx);
	ft_rx__init(&rx, &t);
	stage_two_pieces(&rx, &b, err);
	cm = commit_of(0, 0, 1);
	CHECK(step(&rx, msg(&b, FT_MSG_COMMIT, 0, 1, &cm, sizeof(cm)), &r, err) == FT_RX_REFUSE,
	      "COMMIT that counts 1 OUTPUTS message of 2");
	ft_rx__free(&rx);
	ft_rx__init(&rx, &t);
	stage_two_pieces(&rx, &b, err);
	cm = commit_of(0, 0, 2);
	CHECK(step(&rx, msg(&b, FT_MSG_COMMIT, 0, 1, &cm, sizeof(cm)), &r, err) == FT_RX_COMMITTED,
	      "COMMIT of a two-piece list: %s", err);

	/* 6b. A checkpoint's held output is bounded by the guest's RAM + 64 MiB:
	 * pieces past that are refused (staging must not grow without end). */
	{
		struct ft_rx big;
		size_t piece = 32u << 20;
		uint8_t *junk = calloc(1, piece);
		CHECK(junk != NULL, "32 MiB");
		ft_rx__init(&big, &t);
		CHECK(step(&big, msg(&b, FT_MSG_BEGIN, 0, 1, &cap, 8), &r, err) == FT_RX_NEXT, "BEGIN: %s", err);
		CHECK(step(&big, msg(&b, FT_MSG_OUTPUTS, FT_FLAG_MORE, 1, junk, piece), &r, err) == FT_RX_NEXT,
		      "32 MiB of outputs: %s", err);
		CHECK(step(&big, msg(&b, FT_MSG_OUTPUTS, FT_FLAG_MORE, 1, junk, piece), &r, err) == FT_RX_NEXT,
		      "64 MiB of outputs: %s", err);
		CHECK(step(&big, msg(&b, FT_MSG_OUTPUTS, FT_FLAG_MORE, 1, junk, piece), &r, err) == FT_RX_REFUSE,
		      "96 MiB of outputs for a 64 KiB guest");
		CHECK_ERR_HAS(err, "over 64 MiB");
		ft_rx__free(&big);
		free(junk);
	}

	/* 7. HANDOVER at the committed checkpoint; CANCEL. */
	CHECK(step(&rx, msg(&b, FT_MSG_HANDOVER, 0, 1, NULL, 0), &r, err) == FT_RX_HANDOVER, "HANDOVER: %s", err);
	CHECK(r.type == FT_MSG_HANDOVER_OK && r.epoch == 1, "HANDOVER replies HANDOVER_OK 1");
	CHECK(step(&rx, msg(&b, FT_MSG_BEGIN, 0, 2, &cap, 8), &r, err) == FT_RX_NEXT, "BEGIN 2: %s", err);
	CHECK(step(&rx, msg(&b, FT_MSG_HANDOVER, 0, 1, NULL, 0), &r, err) == FT_RX_REFUSE,
	      "HANDOVER while checkpoint 2 is open");
	CHECK(ft_rx__open_epoch(&rx) == 2, "checkpoint 2 is the open one");
	CHECK(step(&rx, msg(&b, FT_MSG_CANCEL, 0, 1, NULL, 0), &r, err) == FT_RX_CANCELLED, "CANCEL");
	CHECK(r.type == FT_MSG_CANCEL_OK, "CANCEL replies CANCEL_OK");
	CHECK(step(&rx, msg(&b, FT_MSG_ERROR, 0, 0, "bye", 3), &r, err) == FT_RX_PEER_ERROR, "ERROR");
	CHECK_ERR_HAS(err, "primary reported: bye");
	CHECK(step(&rx, msg(&b, 200, 0, 0, NULL, 0), &r, err) == FT_RX_REFUSE, "unknown type");
	ft_rx__free(&rx);

	/* 8. Replicated storage: the real image under the real event tap. */
	char path[] = "/tmp/ftvm-test-receive-XXXXXX";
	int fd = mkstemp(path);
	struct disk raw, disk;
	struct counting cnt = { .inner = &raw };
	struct eventtap *et;
	if (fd < 0 || ftruncate(fd, 1 << 20) < 0) {
		perror("image");
		return 1;
	}
	close(fd);
	CHECK(disk_raw__open(&raw, path, false, err) == 0, "open image: %s", err);
	disk = raw;
	disk.ops = &counting_ops;
	disk.be = &cnt;
	CHECK(eventtap__create(&disk, NULL, &et) == 0, "event tap");
	t.disk = &disk;
	t.et = et;
	t.disk_size = disk.size;
	ft_rx__init(&rx, &t);
	uint8_t sd[8 + 5];
	uint64_t off = 8192;
	memcpy(sd, &off, 8);
	memcpy(sd + 8, "synced", 5);
	CHECK(step(&rx, msg(&b, FT_MSG_SYNC_DISK, 0, 0, sd, sizeof(sd)), &r, err) == FT_RX_NEXT,
	      "SYNC_DISK: %s", err);
	off = 1 << 20;
	memcpy(sd, &off, 8);
	CHECK(step(&rx, msg(&b, FT_MSG_SYNC_DISK, 0, 0, sd, sizeof(sd)), &r, err) == FT_RX_REFUSE,
	      "SYNC_DISK beyond the disk");
	CHECK_ERR_HAS(err, "beyond the disk");
	idx[0] = 1, fill[0] = 0x11;
	stage_checkpoint(&rx, &b, 1, idx, fill, 1, buf, err);
	cm = commit_of(1, 1, 1);
	int flushes = cnt.flushes;
	CHECK(step(&rx, msg(&b, FT_MSG_COMMIT, 0, 1, &cm, sizeof(cm)), &r, err) == FT_RX_COMMITTED,
	      "COMMIT 1 (replicated): %s", err);
	CHECK(cnt.flushes == flushes + 1, "the initial sync is flushed before the first ACK (%d flushes)",
	      cnt.flushes - flushes);
	/* Checkpoint 2 writes the disk: applied at COMMIT. */
	CHECK(step(&rx, msg(&b, FT_MSG_BEGIN, 0, 2, &cap, 8), &r, err) == FT_RX_NEXT, "BEGIN 2: %s", err);
	CHECK(step(&rx, msg(&b, FT_MSG_STATE, 0, 2, "STATE", 5), &r, err) == FT_RX_NEXT, "STATE: %s", err);
	len = outputs_payload(buf, 2, 4096, "written");
	CHECK(step(&rx, msg(&b, FT_MSG_OUTPUTS, 0, 2, buf, len), &r, err) == FT_RX_NEXT, "OUTPUTS: %s", err);
	char got[8] = "";
	fd = open(path, O_RDONLY);
	CHECK(pread(fd, got, 7, 4096) == 7 && memcmp(got, "written", 7), "not on disk before COMMIT");
	cm = commit_of(0, 0, 1);
	CHECK(step(&rx, msg(&b, FT_MSG_COMMIT, 0, 2, &cm, sizeof(cm)), &r, err) == FT_RX_COMMITTED,
	      "COMMIT 2: %s", err);
	CHECK(pread(fd, got, 7, 4096) == 7 && !memcmp(got, "written", 7), "checkpoint 2's write on disk");
	/* Checkpoint 3's write fails (EIO): unusable, and its RAM is not applied. */
	memcpy(before, ram, sizeof(ram));
	CHECK(step(&rx, msg(&b, FT_MSG_BEGIN, 0, 3, &cap, 8), &r, err) == FT_RX_NEXT, "BEGIN 3: %s", err);
	idx[0] = 9, fill[0] = 0x99;
	len = pages_payload(buf, idx, fill, 1);
	CHECK(step(&rx, msg(&b, FT_MSG_PAGES, 0, 3, buf, len), &r, err) == FT_RX_NEXT, "PAGES: %s", err);
	CHECK(step(&rx, msg(&b, FT_MSG_STATE, 0, 3, "STATE", 5), &r, err) == FT_RX_NEXT, "STATE: %s", err);
	len = outputs_payload(buf, 3, 12288, "failing");
	CHECK(step(&rx, msg(&b, FT_MSG_OUTPUTS, 0, 3, buf, len), &r, err) == FT_RX_NEXT, "OUTPUTS: %s", err);
	disk_raw__inject_error(&raw, EIO, 1);
	cm = commit_of(1, 1, 1);
	CHECK(step(&rx, msg(&b, FT_MSG_COMMIT, 0, 3, &cm, sizeof(cm)), &r, err) == FT_RX_UNUSABLE,
	      "COMMIT 3 with a failing disk");
	CHECK_ERR_HAS(err, "cannot fail over");
	CHECK(r.type == 0, "no ACK for a checkpoint that was not applied");
	CHECK(ram_unchanged(), "checkpoint 3's pages are not applied after its disk write failed");
	CHECK(rx.committed == 2, "the stream's last checkpoint is still 2");
	close(fd);
	ft_rx__free(&rx);
	eventtap__destroy(et);
	disk_raw__close(&raw);
	unlink(path);
	xport_msg__free(&b.m);
	struct ft_rx_target mem_only = {
		.nr_pages = PAGES, .mem_size = sizeof(ram), .page = page_of, .check_state = check_state,
	};
	test_delta_pages(&mem_only);
	if (!failures)
		printf("test_ft_receive: all passed\n");
	return failures != 0;
}
