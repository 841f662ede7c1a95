/* kvmodel: what a GET may return, given the PUTs this client made.
 *
 * `ftvm-kv load` is one sequential client: while it waits for one answer
 * nothing else of its own is in flight, so for each key it knows exactly
 * which values the store may hold:
 *   - after an acknowledged PUT of v: exactly v;
 *   - after PUTs that were sent but never acknowledged (gave up, or an ERR
 *     answer that may hide an earlier applied attempt): the last
 *     acknowledged value or any of those unacknowledged values, in any
 *     order (a delayed datagram of an earlier one can land after a later
 *     one). Once a GET has shown one of them, the last acknowledged value
 *     cannot come back: it is superseded. The next acknowledged PUT
 *     resolves the doubt.
 *   - before any PUT of this run: the state an earlier run's ack log (the
 *     seed) left, or NONE for a key the log never mentions (or anything at
 *     all with allow_preexisting, counted as unverified).
 *
 * Values this run writes are "<prefix><seq>.<key index>", with seq the
 * operation number (unique per run) and a per-run prefix, so a read of an
 * older value of the same key (stale) is told exactly from a value that was
 * never written to it (wrong).
 */
#ifndef FTVM_TOOLS_KVMODEL_H
#define FTVM_TOOLS_KVMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/kvclient/kvlog.h"
#include "tools/kvclient/kvproto.h"

enum kvmodel_verdict {
	KVMODEL_OK,            /* the one value the key must hold */
	KVMODEL_OK_AMBIGUOUS,  /* acceptable, but the key was in doubt */
	KVMODEL_OK_UNVERIFIED, /* a pre-existing value we cannot judge */
	KVMODEL_STALE,         /* an older state of this key (incl. NONE) */
	KVMODEL_WRONG,         /* a value never written to this key */
};

struct kvmodel_key {
	uint64_t acked;     /* seq of the last acknowledged PUT, 0 = none */
	/* The last acknowledged value (or the seed state) was superseded by
	 * a read of an unacknowledged value. */
	bool base_gone;
	uint64_t *amb;      /* seqs of unacknowledged PUTs since `acked` */
	size_t n_amb, cap_amb;
	const struct kvlog_key *seed; /* from the earlier log, or NULL */
};

struct kvmodel {
	size_t nkeys;
	struct kvmodel_key *keys;
	char prefix[KVPROTO_TOKEN_MAX + 1];
	size_t prefix_len;
	bool allow_preexisting;
	uint8_t *put_bits;  /* bit seq set: operation seq was a PUT */
	size_t put_bits_bytes;
};

int kvmodel__init(struct kvmodel *m, size_t nkeys, const char *value_prefix,
		  bool allow_preexisting);
void kvmodel__free(struct kvmodel *m);

/* Seed key `key` from an earlier run's log entry (kept by pointer: the
 * kvlog must outlive the model). */
void kvmodel__seed(struct kvmodel *m, size_t key, const struct kvlog_key *k);

/* The value this run writes for operation seq on key. */
int kvmodel__format_value(const struct kvmodel *m, uint64_t seq, size_t key,
			  char *buf, size_t size);

/* A PUT finished: acknowledged, or not (gave up / ERR / bad answer). */
int kvmodel__put_done(struct kvmodel *m, size_t key, uint64_t seq, bool acked);

/* Judge a GET answer (value NULL = NONE) and update the model. If why is
 * non-NULL it receives a one-line explanation for a failed verdict. */
enum kvmodel_verdict kvmodel__check_get(struct kvmodel *m, size_t key,
					const char *value, char *why,
					size_t why_size);

/* Whether key currently has more than one acceptable value. */
bool kvmodel__ambiguous(const struct kvmodel *m, size_t key);

#endif
