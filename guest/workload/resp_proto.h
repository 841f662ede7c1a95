/*
 * RESP2, the Redis protocol, for the kv workload's TCP service: parsing
 * one command at a time (multibulk `*N\r\n$L\r\n...` or an inline line)
 * and answering it from a store. No I/O and no state beyond the store:
 * resp_server.c feeds it a connection's bytes; the unit test and the fuzz
 * target feed it directly.
 */
#ifndef FTVM_GUEST_RESP_PROTO_H
#define FTVM_GUEST_RESP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workload/kvlog.h"

#define RESP_MAX_ARGS   129	/* MSET of 64 pairs (KVLOG_BATCH_MAX); more is an error */
#define RESP_MAX_BULK   4096	/* a longer argument is a protocol error */
#define RESP_MAX_INLINE 4096

/* The store behind the commands (the kv workload's table and log). */
struct resp_store {
	/* NULL once durable, else the error word ("disk_full", "io_error",
	 * "too_long" for a key or value the store cannot hold). */
	const char *(*set)(const char *key, size_t klen, const char *val, size_t vlen);
	/* n pairs (at most KVLOG_BATCH_MAX), all durable at once, or none. */
	const char *(*mset)(size_t n, const struct kvlog_entry *pairs);
	/* 0 with *val and *vlen set, or -ENOENT. */
	int (*get)(const char *key, size_t klen, const char **val, size_t *vlen);
	uint64_t (*count)(void);
};

/* Where an answer is built: out[0..len), at most cap bytes. */
struct resp_out {
	uint8_t *buf;
	size_t len, cap;
};

enum resp_step {
	RESP_NEED_MORE,		/* no whole command in the input yet */
	RESP_ANSWERED,		/* one command consumed and answered */
	RESP_CLOSE,		/* answered (an error, or QUIT); then close the connection */
};

/*
 * Takes the first command of in[0..len): sets *used to the bytes it took
 * and appends its answer to out (which must have RESP_MIN_ROOM free). A
 * protocol error (a bad length, an unterminated line longer than the
 * limits) answers "-ERR Protocol error: ..." and returns RESP_CLOSE, as
 * Redis does.
 */
#define RESP_MIN_ROOM 8192
enum resp_step resp_step(const uint8_t *in, size_t len, size_t *used, struct resp_out *out,
			 const struct resp_store *st);

#endif
