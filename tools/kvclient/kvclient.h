/* kvclient: a UDP client for the kv workload (docs/kv-protocol.md).
 *
 * One request at a time. Each request gets a fresh sequence number; each
 * attempt (first send and every retry) gets its own reqid
 * "<nonce>.<seq-hex>.<attempt>", so an answer says exactly which attempt of
 * which request it belongs to:
 *   - an answer to an attempt of the current request is accepted, even an
 *     earlier attempt's (it answers the very same question, asked inside
 *     this operation's time span, so it is as fresh as the latest
 *     attempt's would be) — counted in stats.late_answers;
 *   - an answer to an earlier request is discarded (stats.stale_answers);
 *   - a datagram from another address, or one that does not parse, is
 *     discarded too (stats.foreign, stats.malformed).
 * The nonce is random per client, so answers meant for an earlier process
 * that happened to use the same local port are never taken for ours.
 *
 * Timing: attempt k (k = 0, 1, ...) waits min(timeout_ms << k, max_timeout_ms)
 * for its answer, then the request is sent again; after deadline_ms since
 * the first send the call gives up with -ETIMEDOUT. Backing off matters
 * during a failover: the guest is unreachable for a while and a fixed short
 * timeout would flood the link the moment it returns.
 */
#ifndef FTVM_TOOLS_KVCLIENT_H
#define FTVM_TOOLS_KVCLIENT_H

#include <netinet/in.h>
#include <stdint.h>

#include "tools/kvclient/kvproto.h"

struct kvclient_opts {
	struct sockaddr_in server;
	unsigned timeout_ms;     /* first attempt's wait, > 0 */
	unsigned max_timeout_ms; /* cap for the backed-off wait; 0 = 8x timeout */
	unsigned deadline_ms;    /* total time for one call, >= timeout_ms */
};

struct kvclient_stats {
	uint64_t requests;      /* calls made */
	uint64_t attempts;      /* datagrams sent (requests + retries) */
	uint64_t retries;       /* attempts after the first (= attempt timeouts) */
	uint64_t gave_up;       /* calls that hit the deadline */
	uint64_t late_answers;  /* accepted answers to an earlier attempt */
	uint64_t stale_answers; /* discarded answers to an earlier request */
	uint64_t foreign;       /* discarded datagrams from another address */
	uint64_t malformed;     /* discarded datagrams that did not parse */
	uint64_t unmatched;     /* discarded answers whose reqid is not ours
				 * (e.g. "ERR - ..."): a server bug for the
				 * well-formed requests this client sends */
	uint64_t send_errors;   /* sendto failures (e.g. no route yet) */
};

struct kvclient {
	int fd;
	struct kvclient_opts opts;
	char nonce[9];       /* 8 hex digits */
	uint64_t seq;        /* sequence number of the current/last request */
	struct kvclient_stats stats;
	/* The last datagram discarded as malformed or unmatched, for the
	 * error message when a call times out because the server speaks
	 * something else. */
	char last_discarded[96];
	/* Latency of the last successful call, first send to answer. */
	uint64_t last_latency_us;
	unsigned last_attempts;
};

/* Open a UDP socket for talking to opts->server. */
int kvclient__open(struct kvclient *c, const struct kvclient_opts *opts);
void kvclient__close(struct kvclient *c);

/* One request with retries. key/value as kvproto__format_request.
 * Returns 0 with *ans filled (which may be an ERR answer: the caller
 * decides), -ETIMEDOUT when the deadline passed with no answer, -EPROTO
 * when an answer carried our reqid but a kind that cannot answer this
 * request (ans still filled), -EINVAL for invalid arguments, or another
 * negative errno from the socket. */
int kvclient__call(struct kvclient *c, enum kvproto_op op, const char *key,
		   const char *value, struct kvproto_answer *ans);

/* Convenience wrappers. An ERR answer is returned as -EREMOTEIO with the
 * reason copied into reason (if non-NULL, KVPROTO_REASON_MAX + 1 bytes). */
int kvclient__put(struct kvclient *c, const char *key, const char *value,
		  char *reason);
/* *found is 0 for NONE, 1 with value (KVPROTO_TOKEN_MAX + 1 bytes) filled. */
int kvclient__get(struct kvclient *c, const char *key, int *found,
		  char *value, char *reason);
int kvclient__time(struct kvclient *c, uint64_t *tsc, uint64_t *ns,
		   char *reason);
int kvclient__stat(struct kvclient *c, struct kvproto_stat *st, char *reason);

/* Send arbitrary text (for bad-input tests) and return the first datagram
 * the server sends back, verbatim, NUL-terminated (the answer cannot be
 * matched to the request: bad input may carry no reqid). Retries like
 * kvclient__call. On success *len is the answer length. */
int kvclient__raw(struct kvclient *c, const char *text, size_t text_len,
		  char *answer, size_t size, size_t *len);

/* Parse "A.B.C.D:PORT" (PORT 1..65535). */
int kvclient__parse_addr(const char *s, struct sockaddr_in *out);

/* Monotonic clock in microseconds (shared by the CLI for its timing). */
uint64_t kvclient__now_us(void);

#endif
