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
#include "workload/kvstore.h"

#define RESP_MAX_ARGS   129	/* MSET of 64 pairs, DEL of 128 keys (KVLOG_BATCH_MAX); more is an error */
#define RESP_MAX_BULK   4096	/* a longer argument is a protocol error */
#define RESP_MAX_INLINE 4096

/* The store behind the commands (the kv workload's table and log). The
 * error words: "disk_full", "io_error", "too_long" (more than one log
 * batch holds), or a sentence. */
struct resp_store {
	/* NULL once durable, else the error word. */
	const char *(*set)(const char *key, size_t klen, const char *val, size_t vlen);
	/* n pairs (op KVLOG_PUT; at most KVLOG_BATCH_MAX), all durable at
	 * once, or none. */
	const char *(*mset)(size_t n, const struct kvlog_entry *pairs);
	/* The keys of keys[0..n) that are there, deleted, all durable at once
	 * (*removed of them), or none (the error word). */
	const char *(*del)(size_t n, const struct kvlog_entry *keys, uint64_t *removed);
	/* Every key gone, durably; or the error word and nothing gone. */
	const char *(*flushall)(void);
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
/* The longest answer: MGET of RESP_MAX_ARGS - 1 keys, each value of
 * KV_MAX_LEN bytes ("$512\r\n" + value + "\r\n"), after its "*128\r\n". */
#define RESP_MIN_ROOM (16 + (RESP_MAX_ARGS - 1) * (KV_MAX_LEN + 16))
enum resp_step resp_step(const uint8_t *in, size_t len, size_t *used, struct resp_out *out,
			 const struct resp_store *st);

#endif
