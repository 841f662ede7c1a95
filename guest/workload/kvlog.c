/*
 * The log: batches of records from sector 1 on. A batch starts at a sector
 * boundary and is written with one request and flushed before any of it is
 * acknowledged; its records lie back to back, each (little-endian):
 *   0 magic "KVR2" | 4 CRC-32C of bytes 16..end | 8 the batch's tag |
 *   12 zero (u32) | 16 sequence (+1 a record) | 24 key length (u16) |
 *   26 value length (u16) | 28 op | 29 records after this one in the
 *   batch | 30 zero (u16) | 32 key | value | zeros to a multiple of 8
 * then zeros to the end of the sector. The tag, the same in every record
 * of a batch, is the CRC-32C of the records' CRCs in order: records of
 * two batches (a failed write and the one that rewrote its place, torn)
 * cannot pass for one, and a record from inside a batch cannot pass for
 * a batch of its own. The sector after a batch is zeroed in the same
 * write (where the disk has one), so the log ends at a sector that holds
 * no record.
 *
 * Replay reads 64 KiB at a time and takes a batch only whole: a batch cut
 * short by a failed write is not applied, so MSET stays all-or-none. A
 * batch is at most 127 sectors, so one read from its first sector always
 * holds it. Replay ends with a flush: what it found and now serves is
 * durable, even if it was written by a request whose flush failed.
 */
#include "workload/kvlog.h"

#include <stdbool.h>

#include "lib/crc32c.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/x86.h"
#include "virtio/blk.h"
#include "workload/kvstore.h"

#define SECTOR       BLK_SECTOR
#define OFF_MAGIC    0
#define OFF_CRC      4
#define OFF_TAG      8
#define OFF_ZERO32   12
#define OFF_SEQ      16
#define OFF_KLEN     24
#define OFF_VLEN     26
#define OFF_OP       28
#define OFF_LEFT     29
#define OFF_ZERO     30
#define FIRST_SECTOR 1

_Static_assert(KVLOG_BATCH_BYTES + SECTOR <= BLK_MAX_SECTORS * SECTOR,
	       "a batch and the zeroed sector after it go in one request");
_Static_assert(KVLOG_BATCH_MAX <= 256, "the records-after field is one byte");
_Static_assert(KVLOG_REC_HEADER == OFF_ZERO + 2, "KVLOG_REC_HEADER");

static uint8_t chunk[BLK_MAX_SECTORS * SECTOR] __attribute__((aligned(4096)));
static uint64_t next_sector = FIRST_SECTOR;
static uint64_t next_seq = 1;
static uint64_t first_seq = 1; /* of the record at sector 1 */
static bool restart_pending;   /* kvlog_flushall: sector 1 not yet rewritten */

size_t kvlog_record_bytes(size_t klen, size_t vlen)
{
	return (KVLOG_REC_HEADER + klen + vlen + 7) & ~(size_t)7;
}

/* Lengths an op may have. */
static bool lengths_ok(unsigned op, size_t klen, size_t vlen)
{
	switch (op) {
	case KVLOG_PUT:
		return klen <= KV_MAX_LEN && vlen <= KV_MAX_LEN;
	case KVLOG_DEL:
		return klen <= KV_MAX_LEN && vlen == 0;
	case KVLOG_FLUSHALL:
		return klen == 0 && vlen == 0;
	default:
		return false;
	}
}

enum batch { B_OK, B_CUT, B_BAD };

/*
 * The batch at p[0..avail) whose first record is number seq (any number
 * when any_seq: the log's first record may be a FLUSHALL that started it
 * over). On B_OK, *bytes is its length in whole sectors and *n its records.
 * B_CUT: it runs past avail.
 */
static enum batch batch_parse(const uint8_t *p, size_t avail, uint64_t seq, bool any_seq,
			      size_t *bytes, size_t *n)
{
	uint32_t crcs[KVLOG_BATCH_MAX];
	size_t at = 0, i = 0;
	unsigned left = 0;

	for (;; i++) {
		if (avail - at < KVLOG_REC_HEADER)
			return B_CUT;
		const uint8_t *r = p + at;
		if (get_le32(r + OFF_MAGIC) != KVLOG_MAGIC)
			return B_BAD;
		uint64_t s = get_le64(r + OFF_SEQ);
		if (i == 0 && any_seq && r[OFF_OP] == KVLOG_FLUSHALL && s >= 1)
			seq = s;
		size_t klen = get_le16(r + OFF_KLEN), vlen = get_le16(r + OFF_VLEN);
		if (s != seq + i || !lengths_ok(r[OFF_OP], klen, vlen) || get_le16(r + OFF_ZERO) ||
		    get_le32(r + OFF_ZERO32) || (i > 0 && r[OFF_LEFT] != left - 1) ||
		    (i > 0 && get_le32(r + OFF_TAG) != get_le32(p + OFF_TAG)))
			return B_BAD;
		left = r[OFF_LEFT];
		if (i == 0 && left >= KVLOG_BATCH_MAX)
			return B_BAD;
		size_t len = kvlog_record_bytes(klen, vlen);
		if (avail - at < len)
			return B_CUT;
		crcs[i] = crc32c(r + OFF_SEQ, len - OFF_SEQ);
		if (crcs[i] != get_le32(r + OFF_CRC))
			return B_BAD;
		at += len;
		if (at > KVLOG_BATCH_BYTES)
			return B_BAD;
		if (left == 0)
			break;
	}
	uint8_t le[4 * KVLOG_BATCH_MAX];
	for (size_t k = 0; k <= i; k++)
		put_le32(le + 4 * k, crcs[k]);
	if (crc32c(le, 4 * (i + 1)) != get_le32(p + OFF_TAG))
		return B_BAD;	/* records of more than one batch */
	*bytes = (at + SECTOR - 1) / SECTOR * SECTOR;
	*n = i + 1;
	return B_OK;
}

static void batch_apply(const uint8_t *p, size_t n, kvlog_apply_fn apply)
{
	for (size_t i = 0, at = 0; i < n; i++) {
		const uint8_t *r = p + at;
		struct kvlog_entry e;
		e.klen = get_le16(r + OFF_KLEN);
		e.vlen = get_le16(r + OFF_VLEN);
		e.key = (const char *)r + KVLOG_REC_HEADER;
		e.val = e.key + e.klen;
		e.op = (enum kvlog_op)r[OFF_OP];
		apply(&e);
		at += kvlog_record_bytes(e.klen, e.vlen);
	}
}

long kvlog_replay(kvlog_apply_fn apply)
{
	uint64_t cap = blk_capacity();
	uint64_t sector = FIRST_SECTOR, seq = 1, applied = 0;
	uint64_t base = 0, have = 0; /* chunk holds sectors [base, base + have) */

	first_seq = 1;
	restart_pending = false;
	while (sector < cap) {
		size_t bytes = 0, n = 0;
		enum batch b = B_CUT;
		if (sector < base + have)
			b = batch_parse(chunk + (sector - base) * SECTOR,
					(size_t)(base + have - sector) * SECTOR, seq,
					sector == FIRST_SECTOR, &bytes, &n);
		if (b == B_CUT && base != sector) {
			/* Read from this batch's first sector: one read holds it. */
			base = sector;
			have = cap - sector < BLK_MAX_SECTORS ? cap - sector : BLK_MAX_SECTORS;
			int r = blk_read(base, chunk, (uint32_t)have);
			if (r) {
				printf("ftvm-guest: kv: reading the log at sector %llu failed (%d)\n",
				       (unsigned long long)base, r);
				return -EIO;
			}
			if (sector == FIRST_SECTOR && get_le32(chunk + OFF_MAGIC) == KVLOG_MAGIC_V1)
				return -EPROTO;
			continue;
		}
		if (b != B_OK)
			break;	/* the log ends here */
		const uint8_t *p = chunk + (sector - base) * SECTOR;
		if (sector == FIRST_SECTOR)
			seq = first_seq = get_le64(p + OFF_SEQ);
		batch_apply(p, n, apply);
		/* A FLUSHALL past sector 1 ends the log, and the log was not
		 * started over after it (or that did not last): do it before
		 * the next write, or a full log would stay full. */
		restart_pending = sector != FIRST_SECTOR && p[OFF_OP] == KVLOG_FLUSHALL;
		applied += n;
		seq += n;
		sector += bytes / SECTOR;
	}
	next_sector = sector;
	next_seq = seq;
	if (blk_flush()) {
		printf("ftvm-guest: kv: flushing the replayed log failed\n");
		return -EIO;
	}
	return (long)applied;
}

/* Writes the batch laid out in chunk[0..bytes) at the log's end, with the
 * zeroed sector after it where there is one, and flushes. */
static const char *batch_write(size_t bytes, size_t n, bool zero_after)
{
	uint64_t cap = blk_capacity();
	size_t sectors = (bytes + SECTOR - 1) / SECTOR;
	memset(chunk + bytes, 0, sectors * SECTOR - bytes);
	/* On failure the position is kept: the next append rewrites these
	 * sectors with the same sequence numbers. A failed append can leave
	 * records behind a shorter one that follows it, with the very numbers
	 * that come next, and replay would take them: hence the zeroed sector
	 * after every batch. */
	size_t w = sectors;
	if (zero_after && cap - next_sector > sectors) {
		memset(chunk + sectors * SECTOR, 0, SECTOR);
		w = sectors + 1;
	}
	if (blk_write(next_sector, chunk, (uint32_t)w) || blk_flush())
		return "io_error";
	next_sector += sectors;
	next_seq += n;
	return NULL;
}

/* One record at r, its tag still zero; returns its length. */
static size_t fill(uint8_t *r, uint64_t seq, unsigned left, const struct kvlog_entry *e)
{
	size_t len = kvlog_record_bytes(e->klen, e->vlen);
	memset(r, 0, len);
	put_le32(r + OFF_MAGIC, KVLOG_MAGIC);
	put_le64(r + OFF_SEQ, seq);
	put_le16(r + OFF_KLEN, (uint16_t)e->klen);
	put_le16(r + OFF_VLEN, (uint16_t)e->vlen);
	r[OFF_OP] = (uint8_t)e->op;
	r[OFF_LEFT] = (uint8_t)left;
	if (e->klen)
		memcpy(r + KVLOG_REC_HEADER, e->key, e->klen);
	if (e->vlen)
		memcpy(r + KVLOG_REC_HEADER + e->klen, e->val, e->vlen);
	put_le32(r + OFF_CRC, crc32c(r + OFF_SEQ, len - OFF_SEQ));
	return len;
}

/* Lays out n records at chunk[0..), numbered from next_seq, with the
 * batch's tag; returns the bytes. */
static size_t layout(const struct kvlog_entry *e, size_t n)
{
	uint8_t le[4 * KVLOG_BATCH_MAX] = { 0 }; /* n >= 1, but gcc cannot tell */
	size_t at = 0, offs[KVLOG_BATCH_MAX];
	for (size_t i = 0; i < n; i++) {
		offs[i] = at;
		at += fill(chunk + at, next_seq + i, (unsigned)(n - 1 - i), &e[i]);
		put_le32(le + 4 * i, get_le32(chunk + offs[i] + OFF_CRC));
	}
	uint32_t tag = crc32c(le, 4 * n);
	for (size_t i = 0; i < n; i++)
		put_le32(chunk + offs[i] + OFF_TAG, tag);
	return at;
}

/* The space an append of this many sectors may use: all but the last
 * sector, which is kept for a FLUSHALL record, so that a full log can
 * still be emptied. */
static bool room_for(size_t sectors, bool flushall)
{
	uint64_t cap = blk_capacity();
	uint64_t left = cap > next_sector ? cap - next_sector : 0;
	return flushall ? left >= sectors : left > sectors;
}

/* Sector 1 becomes a FLUSHALL record numbered next_seq, the sector after
 * it zeroed: every older record has a lower number, so none can follow it
 * in a replay. Only ever after a FLUSHALL record is durable at the log's
 * end, so whichever of the two a replay finds, the store comes back
 * empty. */
static const char *restart(void)
{
	static const struct kvlog_entry e = { "", 0, "", 0, KVLOG_FLUSHALL };
	uint64_t keep_sector = next_sector, keep_seq = next_seq;
	next_sector = FIRST_SECTOR;
	/* Sector 1 alone first, flushed: were it written together with the
	 * zeroed sector 2, a disk cache could keep the zeros and lose sector
	 * 1, and the old log's first batch would come back. */
	const char *why = batch_write(layout(&e, 1), 1, false);
	if (!why && blk_capacity() > FIRST_SECTOR + 1) {
		memset(chunk, 0, SECTOR);
		if (blk_write(FIRST_SECTOR + 1, chunk, 1) || blk_flush())
			why = "io_error";
	}
	if (why) {
		next_sector = keep_sector;
		next_seq = keep_seq;
		return why;
	}
	first_seq = keep_seq;
	restart_pending = false;
	return NULL;
}

const char *kvlog_append_batch(const struct kvlog_entry *e, size_t n)
{
	if (!n || n > KVLOG_BATCH_MAX)
		return "too_long";
	size_t bytes = 0;
	for (size_t i = 0; i < n; i++) {
		if (!lengths_ok(e[i].op, e[i].klen, e[i].vlen) || e[i].op == KVLOG_FLUSHALL)
			return "too_long";
		bytes += kvlog_record_bytes(e[i].klen, e[i].vlen);
	}
	if (bytes > KVLOG_BATCH_BYTES)
		return "too_long";
	/* A restart that failed leaves sector 1 unknown: it may already hold
	 * the new start, and then records after the old end would be lost
	 * to a replay. It is retried before anything else is written. */
	if (restart_pending && restart())
		return "io_error";
	if (!room_for((bytes + SECTOR - 1) / SECTOR, false))
		return "disk_full";
	return batch_write(layout(e, n), n, true);
}

const char *kvlog_append(const struct kvlog_entry *e)
{
	return kvlog_append_batch(e, 1);
}

const char *kvlog_flushall(void)
{
	static const struct kvlog_entry e = { "", 0, "", 0, KVLOG_FLUSHALL };
	if (restart_pending && restart())
		return "io_error";
	if (!room_for(1, true))
		return "disk_full";
	const char *why = batch_write(layout(&e, 1), 1, true);
	if (why)
		return why;
	/* Durable: the store is empty whatever happens next. Starting the log
	 * over only gives the space back. */
	if (restart()) {
		restart_pending = true;
		printf("ftvm-guest: kv: starting the log over after FLUSHALL failed; "
		       "retried before the next write\n");
	}
	return NULL;
}

uint64_t kvlog_records(void)
{
	return next_seq - first_seq;
}

uint64_t kvlog_free(void)
{
	uint64_t cap = blk_capacity();
	return next_sector < cap ? cap - next_sector : 0;
}
