/*
 * One 512-byte record per PUT, appended at the next sector and flushed
 * before the PUT is acknowledged. Layout (little-endian):
 *   0 magic "KVR1" | 4 CRC-32C of bytes 8..511 | 8 sequence (1, 2, ...)
 *   16 key length | 17 value length | 18 key[64] | 82 value[64] | 146 zeros
 * Replay reads 64 KiB at a time: one request per 128 records.
 */
#include "workload/kvlog.h"

#include "lib/crc32c.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/x86.h"
#include "virtio/blk.h"
#include "workload/kvstore.h"

#define REC_SIZE     512
#define OFF_MAGIC    0
#define OFF_CRC      4
#define OFF_SEQ      8
#define OFF_KLEN     16
#define OFF_VLEN     17
#define OFF_KEY      18
#define OFF_VAL      82
#define FIRST_SECTOR 1

static uint8_t chunk[BLK_MAX_SECTORS * BLK_SECTOR] __attribute__((aligned(4096)));
static uint64_t next_sector = FIRST_SECTOR;
static uint64_t next_seq = 1;

/* Does this sector hold record number `seq`? */
static int record_ok(const uint8_t *r, uint64_t seq)
{
	if (get_le32(r + OFF_MAGIC) != KVLOG_MAGIC || get_le64(r + OFF_SEQ) != seq)
		return 0;
	if (r[OFF_KLEN] == 0 || r[OFF_KLEN] > KV_MAX_LEN || r[OFF_VLEN] == 0 ||
	    r[OFF_VLEN] > KV_MAX_LEN)
		return 0;
	return crc32c(r + OFF_SEQ, REC_SIZE - OFF_SEQ) == get_le32(r + OFF_CRC);
}

long kvlog_replay(kvlog_apply_fn apply)
{
	uint64_t cap = blk_capacity();
	uint64_t sector = FIRST_SECTOR, seq = 1;

	while (sector < cap) {
		uint64_t n = cap - sector;
		if (n > BLK_MAX_SECTORS)
			n = BLK_MAX_SECTORS;
		int r = blk_read(sector, chunk, (uint32_t)n);
		if (r) {
			printf("ftvm-guest: kv: reading the log at sector %llu failed (%d)\n",
			       (unsigned long long)sector, r);
			return -EIO;
		}
		uint64_t i;
		for (i = 0; i < n; i++) {
			const uint8_t *p = chunk + i * REC_SIZE;
			if (!record_ok(p, seq))
				break;
			apply((const char *)p + OFF_KEY, p[OFF_KLEN],
			      (const char *)p + OFF_VAL, p[OFF_VLEN]);
			seq++;
		}
		sector += i;
		if (i < n)
			break;
	}
	next_sector = sector;
	next_seq = seq;
	return (long)(seq - 1);
}

/* Record i of a batch, in chunk[]: sequence next_seq + i. */
static void fill(size_t i, const struct kvlog_entry *e)
{
	uint8_t *r = chunk + i * REC_SIZE;
	memset(r, 0, REC_SIZE);
	put_le32(r + OFF_MAGIC, KVLOG_MAGIC);
	put_le64(r + OFF_SEQ, next_seq + i);
	r[OFF_KLEN] = (uint8_t)e->klen;
	r[OFF_VLEN] = (uint8_t)e->vlen;
	memcpy(r + OFF_KEY, e->key, e->klen);
	memcpy(r + OFF_VAL, e->val, e->vlen);
	put_le32(r + OFF_CRC, crc32c(r + OFF_SEQ, REC_SIZE - OFF_SEQ));
}

const char *kvlog_append_batch(const struct kvlog_entry *e, size_t n)
{
	if (!n || n > KVLOG_BATCH_MAX)
		return "io_error";
	if (blk_capacity() < next_sector || blk_capacity() - next_sector < n)
		return "disk_full";
	for (size_t i = 0; i < n; i++)
		fill(i, &e[i]);
	/* One write of consecutive sectors, one flush. On failure the position
	 * is kept: the next append rewrites these sectors with the same
	 * sequence numbers (replay stops at the first that does not fit). */
	/* And a zeroed sector after the batch, where there is room: a failed
	 * append can leave records behind a shorter one that follows it, with
	 * the very sequence numbers that come next, and replay would take
	 * them. So the sector after the log's end is always zero. */
	size_t w = n;
	if (blk_capacity() - next_sector > n) {
		memset(chunk + n * REC_SIZE, 0, REC_SIZE);
		w = n + 1;
	}
	if (blk_write(next_sector, chunk, (uint32_t)w) || blk_flush())
		return "io_error";
	next_sector += n;
	next_seq += n;
	return NULL;
}

const char *kvlog_append(const char *key, size_t klen, const char *val, size_t vlen)
{
	struct kvlog_entry e = { key, klen, val, vlen };
	return kvlog_append_batch(&e, 1);
}

uint64_t kvlog_records(void)
{
	return next_seq - 1;
}

uint64_t kvlog_free(void)
{
	uint64_t cap = blk_capacity();
	return next_sector < cap ? cap - next_sector : 0;
}
