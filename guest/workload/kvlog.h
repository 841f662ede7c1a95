/* The kv workload's on-disk log (docs/kv-protocol.md, "The on-disk log"). */
#ifndef FTVM_GUEST_KVLOG_H
#define FTVM_GUEST_KVLOG_H

#include <stddef.h>
#include <stdint.h>

#define KVLOG_MAGIC    0x3252564bu /* "KVR2" little-endian */
#define KVLOG_MAGIC_V1 0x3152564bu /* "KVR1": the fixed 512-byte records of before */

enum kvlog_op {
	KVLOG_PUT = 1,		/* key = value */
	KVLOG_DEL = 2,		/* key gone (no value) */
	KVLOG_FLUSHALL = 3,	/* every key gone (no key, no value); starts the log over */
};

struct kvlog_entry {
	const char *key;
	size_t klen;
	const char *val;
	size_t vlen;
	enum kvlog_op op;
};

/* Called for each record of the log in order. */
typedef void (*kvlog_apply_fn)(const struct kvlog_entry *e);

/* Reads the log from sector 1 up to the first batch that does not fit
 * (magic, CRC, sequence, lengths, or a batch cut short), calling apply
 * for each record in order. Sets the append position. Returns the number
 * of records applied, -EIO if the disk cannot be read, or -EPROTO if it
 * holds a log of the old format (KVR1). */
long kvlog_replay(kvlog_apply_fn apply);

/* A batch holds at most KVLOG_BATCH_MAX records and KVLOG_BATCH_BYTES of
 * them (a record is KVLOG_REC_HEADER + key + value, rounded up to 8). */
#define KVLOG_BATCH_MAX   128
#define KVLOG_REC_HEADER  32
#define KVLOG_BATCH_BYTES (127u * 512u)
/* The bytes a record of these lengths takes. */
size_t kvlog_record_bytes(size_t klen, size_t vlen);

/* Appends n records (1..KVLOG_BATCH_MAX, within KVLOG_BATCH_BYTES) in one
 * write and one flush: all durable (NULL), or none acknowledged (the
 * protocol's error word: "disk_full", "io_error", "too_long"). Replay
 * applies a batch whole or not at all. */
const char *kvlog_append_batch(const struct kvlog_entry *e, size_t n);
/* One record, the same way. */
const char *kvlog_append(const struct kvlog_entry *e);
/* FLUSHALL: a FLUSHALL record at the log's end (the log's last sector is
 * kept for it, so a full log can still be emptied), then the log starts
 * over at sector 1 and the whole disk is free again. NULL once the
 * FLUSHALL is durable, else the error word. */
const char *kvlog_flushall(void);

/* Records in the log since it last started (at boot: those replayed). */
uint64_t kvlog_records(void);
/* Sectors left for records. */
uint64_t kvlog_free(void);

#endif
