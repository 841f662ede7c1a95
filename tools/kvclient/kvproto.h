/* kvproto: the kv workload's UDP protocol (docs/kv-protocol.md) as pure
 * functions: format a request into a buffer, parse an answer datagram
 * strictly. No I/O and no allocation, so every corner is unit-testable.
 *
 * Every function returns 0 or a negative errno:
 *   -EINVAL   a field the caller passed is not valid on the wire
 *   -ENOSPC   the output buffer is too small
 *   -EPROTO   the answer does not follow the protocol
 */
#ifndef FTVM_TOOLS_KVPROTO_H
#define FTVM_TOOLS_KVPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVPROTO_REQID_MAX 32  /* characters of [A-Za-z0-9_.-] */
#define KVPROTO_TOKEN_MAX 64  /* key and value, same charset */
#define KVPROTO_REASON_MAX 32 /* our cap for an ERR reason word ([a-z_]) */

/* Largest request we ever format: "STAT"/"PUT" + reqid + key + value. Also a
 * comfortable receive buffer size for answers (a longer datagram is
 * malformed by definition, and the caller learns that from the length). */
#define KVPROTO_DGRAM_MAX 512

enum kvproto_op {
	KVPROTO_PUT,
	KVPROTO_GET,
	KVPROTO_TIME,
	KVPROTO_STAT,
};

enum kvproto_kind {
	KVPROTO_ANS_OK,   /* OK <reqid>                 answers PUT */
	KVPROTO_ANS_VAL,  /* VAL <reqid> <value>        answers GET */
	KVPROTO_ANS_NONE, /* NONE <reqid>               answers GET */
	KVPROTO_ANS_TIME, /* TIME <reqid> <tsc> <ns>    answers TIME */
	KVPROTO_ANS_STAT, /* STAT <reqid> entries=...   answers STAT */
	KVPROTO_ANS_ERR,  /* ERR <reqid|-> <reason>     answers anything */
};

struct kvproto_stat {
	uint64_t entries, puts, gets, dirtied, tsc, ns;
	uint64_t ap_tsc, ap_iterations, tsc_order_errors;	/* cross-vCPU TSC check */
};

struct kvproto_answer {
	enum kvproto_kind kind;
	/* The reqid the answer carries; for ERR it may be "-" (the request
	 * had no valid reqid), which never matches a reqid we generate. */
	char reqid[KVPROTO_REQID_MAX + 1];
	char value[KVPROTO_TOKEN_MAX + 1];    /* VAL */
	char reason[KVPROTO_REASON_MAX + 1];  /* ERR */
	uint64_t tsc, ns;                     /* TIME */
	struct kvproto_stat stat;             /* STAT */
};

/* Character-set and length checks, shared by the CLI for early errors. */
bool kvproto__valid_reqid(const char *s);
bool kvproto__valid_token(const char *s); /* key or value */

/* Format one request (no trailing newline: the protocol ignores it, and
 * leaving it out keeps the request minimal). key is used by PUT/GET, value
 * by PUT; pass NULL otherwise. On success *len is the datagram length and
 * buf is also NUL-terminated. */
int kvproto__format_request(char *buf, size_t size, size_t *len,
			    enum kvproto_op op, const char *reqid,
			    const char *key, const char *value);

/* Parse one answer datagram of len bytes (need not be NUL-terminated).
 * Strict: exact keywords, single spaces, no empty or extra fields, tokens in
 * their charset and length, decimal numbers without sign or leading junk
 * and within 64 bits. One trailing '\n' is tolerated, mirroring the
 * request side of the protocol. */
int kvproto__parse_answer(const char *buf, size_t len,
			  struct kvproto_answer *ans);

/* True if an answer of this kind can answer a request of this op (ERR can
 * answer anything). A matching reqid with a kind that does not fit is a
 * server bug the caller should report, not a retryable condition. */
bool kvproto__answer_fits(enum kvproto_op op, enum kvproto_kind kind);

const char *kvproto__op_name(enum kvproto_op op);
const char *kvproto__kind_name(enum kvproto_kind kind);

#endif
