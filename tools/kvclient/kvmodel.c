/* kvmodel: the expected-state model behind `ftvm-kv load`. See kvmodel.h
 * for the rules. */
#include "tools/kvclient/kvmodel.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kvmodel__init(struct kvmodel *m, size_t nkeys, const char *value_prefix,
		  bool allow_preexisting)
{
	size_t pl = strlen(value_prefix);

	memset(m, 0, sizeof(*m));
	if (nkeys == 0 || pl == 0 || pl > KVPROTO_TOKEN_MAX ||
	    !kvproto__valid_token(value_prefix))
		return -EINVAL;
	m->keys = calloc(nkeys, sizeof(*m->keys));
	if (!m->keys)
		return -ENOMEM;
	m->nkeys = nkeys;
	memcpy(m->prefix, value_prefix, pl + 1);
	m->prefix_len = pl;
	m->allow_preexisting = allow_preexisting;
	return 0;
}

void kvmodel__free(struct kvmodel *m)
{
	for (size_t i = 0; i < m->nkeys; i++)
		free(m->keys[i].amb);
	free(m->keys);
	free(m->put_bits);
	memset(m, 0, sizeof(*m));
}

void kvmodel__seed(struct kvmodel *m, size_t key, const struct kvlog_key *k)
{
	if (key < m->nkeys)
		m->keys[key].seed = k;
}

int kvmodel__format_value(const struct kvmodel *m, uint64_t seq, size_t key,
			  char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s%" PRIu64 ".%zu", m->prefix, seq, key);

	if (n < 0 || (size_t)n >= size || n > KVPROTO_TOKEN_MAX)
		return -ENOSPC;
	return 0;
}

static bool kvmodel__was_put(const struct kvmodel *m, uint64_t seq)
{
	return seq / 8 < m->put_bits_bytes &&
	       (m->put_bits[seq / 8] & (1u << (seq % 8)));
}

static int kvmodel__mark_put(struct kvmodel *m, uint64_t seq)
{
	if (seq / 8 >= m->put_bits_bytes) {
		size_t nb = m->put_bits_bytes ? m->put_bits_bytes : 4096;
		uint8_t *p;

		while (seq / 8 >= nb)
			nb *= 2;
		p = realloc(m->put_bits, nb);
		if (!p)
			return -ENOMEM;
		memset(p + m->put_bits_bytes, 0, nb - m->put_bits_bytes);
		m->put_bits = p;
		m->put_bits_bytes = nb;
	}
	m->put_bits[seq / 8] |= (uint8_t)(1u << (seq % 8));
	return 0;
}

int kvmodel__put_done(struct kvmodel *m, size_t key, uint64_t seq, bool acked)
{
	struct kvmodel_key *k;
	int r;

	if (key >= m->nkeys || seq == 0)
		return -EINVAL;
	k = &m->keys[key];
	r = kvmodel__mark_put(m, seq);
	if (r < 0)
		return r;
	if (acked) {
		k->acked = seq;
		k->n_amb = 0;
		k->base_gone = false;
		return 0;
	}
	if (k->n_amb == k->cap_amb) {
		size_t nc = k->cap_amb ? k->cap_amb * 2 : 4;
		uint64_t *p = realloc(k->amb, nc * sizeof(*p));

		if (!p)
			return -ENOMEM;
		k->amb = p;
		k->cap_amb = nc;
	}
	k->amb[k->n_amb++] = seq;
	return 0;
}

bool kvmodel__ambiguous(const struct kvmodel *m, size_t key)
{
	const struct kvmodel_key *k = &m->keys[key];

	return k->n_amb > 0 || (k->acked == 0 && k->seed && k->seed->n_pending > 0);
}

/* "<prefix><seq>.<key>": returns 0 and fills seq/key for a value of this
 * run's format, -EINVAL if it only shares the prefix. */
static int kvmodel__parse_own(const struct kvmodel *m, const char *v,
			      uint64_t *seq, uint64_t *key)
{
	const char *p = v + m->prefix_len;
	uint64_t a = 0, b = 0;
	size_t n = 0;

	for (; p[n] >= '0' && p[n] <= '9'; n++)
		a = a * 10 + (uint64_t)(p[n] - '0');
	if (n == 0 || n > 19 || p[n] != '.')
		return -EINVAL;
	p += n + 1;
	for (n = 0; p[n] >= '0' && p[n] <= '9'; n++)
		b = b * 10 + (uint64_t)(p[n] - '0');
	if (n == 0 || n > 19 || p[n] != '\0')
		return -EINVAL;
	*seq = a;
	*key = b;
	return 0;
}

static void kvmodel__expected(const struct kvmodel *m, size_t key, char *buf,
			      size_t size)
{
	const struct kvmodel_key *k = &m->keys[key];
	char base[KVPROTO_TOKEN_MAX + 1];
	size_t others = k->n_amb;

	if (k->acked) {
		if (kvmodel__format_value(m, k->acked, key, base, sizeof(base)) < 0)
			snprintf(base, sizeof(base), "?");
	} else if (k->seed && k->seed->has_acked) {
		snprintf(base, sizeof(base), "%s", k->seed->acked);
	} else {
		snprintf(base, sizeof(base), "%s",
			 m->allow_preexisting && !k->seed ? "NONE-or-any" : "NONE");
	}
	if (!k->acked && k->seed)
		others += k->seed->n_pending;
	if (others)
		snprintf(buf, size, "%s%s or one of %zu unacknowledged",
			 k->base_gone ? "(superseded) " : "", base, others);
	else
		snprintf(buf, size, "%s", base);
}

enum kvmodel_verdict kvmodel__check_get(struct kvmodel *m, size_t key,
					const char *value, char *why,
					size_t why_size)
{
	struct kvmodel_key *k = &m->keys[key];
	const struct kvlog_key *seed = k->seed;
	enum kvmodel_verdict ok = kvmodel__ambiguous(m, key) ?
					  KVMODEL_OK_AMBIGUOUS : KVMODEL_OK;
	enum kvmodel_verdict v;
	char exp[160];
	const char *what;

	if (!value) {
		if (!k->acked && !k->base_gone && !(seed && seed->has_acked))
			return ok;
		v = KVMODEL_STALE;
		what = "the key held a value already";
		goto fail;
	}

	if (strncmp(value, m->prefix, m->prefix_len) == 0) {
		uint64_t seq, ki;

		if (kvmodel__parse_own(m, value, &seq, &ki) < 0) {
			v = KVMODEL_WRONG;
			what = "has this run's prefix but not its format";
			goto fail;
		}
		if (ki != key) {
			v = KVMODEL_WRONG;
			what = "a value written to another key";
			goto fail;
		}
		for (size_t i = 0; i < k->n_amb; i++) {
			if (k->amb[i] == seq) {
				/* The store has applied this unacknowledged
				 * PUT: from now on the last acknowledged value
				 * is history. */
				k->base_gone = true;
				return KVMODEL_OK_AMBIGUOUS;
			}
		}
		if (k->acked && seq == k->acked && !k->base_gone)
			return ok;
		if (kvmodel__was_put(m, seq)) {
			v = KVMODEL_STALE;
			what = "an older value of this key";
		} else {
			v = KVMODEL_WRONG;
			what = "a value never written";
		}
		goto fail;
	}

	/* A value from before this run. */
	if (!k->acked && seed) {
		if (!k->base_gone && seed->has_acked && !strcmp(value, seed->acked))
			return ok;
		for (size_t i = 0; i < seed->n_pending; i++) {
			if (!strcmp(value, seed->pending[i])) {
				k->base_gone = true;
				return KVMODEL_OK_AMBIGUOUS;
			}
		}
	}
	if (!k->acked && !seed && m->allow_preexisting && !k->base_gone)
		return KVMODEL_OK_UNVERIFIED;
	if ((seed && kvlog__key_seen(seed, value)) ||
	    (!seed && m->allow_preexisting)) {
		v = KVMODEL_STALE;
		what = "a value from before this run, since overwritten";
	} else {
		v = KVMODEL_WRONG;
		what = "a value neither this run nor the ack log wrote to this key";
	}

fail:
	if (why) {
		kvmodel__expected(m, key, exp, sizeof(exp));
		snprintf(why, why_size, "got %s: %s; expected %s",
			 value ? value : "NONE", what, exp);
	}
	return v;
}
