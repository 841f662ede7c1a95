/*
 * The kv workload's durable store: the table (kvstore) and its log
 * (kvlog) kept in step. Every change is checked against the table first,
 * written and flushed as one log batch, and only then applied to the
 * table: what the table serves is always what the log holds, and a
 * change whose batch failed is neither served nor acknowledged.
 */
#ifndef FTVM_GUEST_KVDB_H
#define FTVM_GUEST_KVDB_H

#include <stddef.h>
#include <stdint.h>

#include "workload/kvlog.h"

/* The error words, besides kvlog's "disk_full", "io_error", "too_long"
 * (a key or value over KV_MAX_LEN, or more than one batch holds). */
#define KVDB_STORE_FULL "store_full"	/* the table or its memory is full */

/* n pairs (op KVLOG_PUT, 1..KVLOG_BATCH_MAX): all durable and served
 * (NULL), or none (the error word). */
const char *kvdb_put(size_t n, const struct kvlog_entry *pairs);
/* The keys of keys[0..n) that are there, each once, deleted in one
 * batch: NULL with *removed set (0: nothing written), or the error word
 * and nothing deleted. At most KVLOG_BATCH_MAX keys are looked at. */
const char *kvdb_del(size_t n, const struct kvlog_entry *keys, uint64_t *removed);
/* Every key gone, durably (NULL), or the error word and nothing gone. */
const char *kvdb_flushall(void);
/* Replays the log into the (just initialised) table: kvlog_replay's
 * answer; *dropped: PUTs that did not fit the table (a smaller VM). */
long kvdb_replay(uint64_t *dropped);

#endif
