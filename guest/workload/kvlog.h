/* The kv workload's on-disk log (docs/kv-protocol.md). */
#ifndef FTVM_GUEST_KVLOG_H
#define FTVM_GUEST_KVLOG_H

#include <stddef.h>
#include <stdint.h>

#define KVLOG_MAGIC 0x3152564bu /* "KVR1" little-endian */

typedef void (*kvlog_apply_fn)(const char *key, size_t klen, const char *val,
			       size_t vlen);

/* Reads the log from sector 1 up to the first record whose magic, CRC or
 * sequence number does not fit, calling apply for each record in order.
 * Sets the append position. Returns the number of records, or -EIO. */
long kvlog_replay(kvlog_apply_fn apply);
/* Appends one record and flushes the disk. NULL once it is durable, else
 * the protocol's error word ("disk_full", "io_error"). */
const char *kvlog_append(const char *key, size_t klen, const char *val, size_t vlen);
/* Appends n records (1..KVLOG_BATCH_MAX) in one write and one flush: all
 * durable (NULL), or none acknowledged (the error word). */
#define KVLOG_BATCH_MAX 64
struct kvlog_entry {
	const char *key;
	size_t klen;
	const char *val;
	size_t vlen;
};
const char *kvlog_append_batch(const struct kvlog_entry *e, size_t n);
uint64_t kvlog_records(void);
/* Sectors left for records. */
uint64_t kvlog_free(void);

#endif
