/* ftvm-kv load: a sequential mix of PUTs and GETs that checks every GET
 * against what was acknowledged (kvmodel) and logs every PUT (kvlog).
 *
 * Sequential on purpose: with one request in flight the client knows, for
 * every key, exactly which values the store may hold, so a stale read is a
 * certainty and not a guess. Throughput is the guest's round trip. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the root CMakeLists defines it too */
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/kvclient/kvcli.h"
#include "tools/kvclient/kvhist.h"
#include "tools/kvclient/kvlog.h"
#include "tools/kvclient/kvmodel.h"

struct load {
	const struct kvcli_args *a;
	struct kvclient *c;
	struct kvmodel model;
	struct kvlog seed;          /* the ack log as it was before this run */
	struct kvlog_writer w;      /* fd -1 without --ack-log */
	char prefix[KVPROTO_TOKEN_MAX + 1];

	uint64_t ops, puts, puts_acked, puts_gave_up, puts_failed;
	uint64_t gets, gets_ok, gets_gave_up, ambiguous_reads, unverified_reads;
	uint64_t stale, wrong, errors;
	uint64_t reported;          /* findings so far, printed or not */
	struct kvhist lat;          /* answered ops only: first send to answer */
};

/* splitmix64: tiny, good enough to pick keys and op kinds reproducibly. */
static uint64_t load__rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void load__finding(struct load *l, uint64_t seq, const char *op,
			  const char *key, const char *what)
{
	if (l->reported++ < KVCLI_MAX_REPORTED)
		fprintf(stderr, "ftvm-kv: load: op %" PRIu64 ": %s %s: %s\n", seq,
			op, key, what);
}

/* Seed the model from an existing ack log so a second load run (after a
 * failover) is checked against what the first one acknowledged. */
static int load__seed(struct load *l)
{
	const struct kvcli_args *a = l->a;
	size_t bad = 0, pl = strlen(l->prefix);
	int r = kvlog__load(&l->seed, a->ack_log, &bad);

	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		if (r == -EPROTO)
			fprintf(stderr, "ftvm-kv: %s:%zu: not an ack log line\n",
				a->ack_log, bad);
		else
			fprintf(stderr, "ftvm-kv: %s: %s\n", a->ack_log, strerror(-r));
		return r;
	}
	/* Values must be unique per run, or an old value would pass for one
	 * of ours. The default prefix is random; a chosen one may repeat. */
	for (size_t i = 0; i < l->seed.n; i++) {
		const struct kvlog_key *k = &l->seed.keys[i];
		bool clash = k->has_acked && !strncmp(k->acked, l->prefix, pl);

		for (size_t j = 0; j < k->n_pending; j++)
			clash |= !strncmp(k->pending[j], l->prefix, pl);
		if (clash) {
			fprintf(stderr, "ftvm-kv: %s already holds values with prefix "
				"'%s': give this run another --value-prefix\n",
				a->ack_log, l->prefix);
			return -EEXIST;
		}
	}
	for (uint64_t i = 0; i < a->keys; i++) {
		char key[KVPROTO_TOKEN_MAX + 24];

		snprintf(key, sizeof(key), "%s%" PRIu64, a->key_prefix, i);
		kvmodel__seed(&l->model, (size_t)i, kvlog__find(&l->seed, key));
	}
	return 0;
}

static int load__log(struct load *l, bool acked, const char *key,
		     const char *value)
{
	int err;

	if (l->w.fd < 0)
		return 0;
	err = kvlog__append(&l->w, acked, key, value);
	if (err < 0)
		fprintf(stderr, "ftvm-kv: %s: %s\n", l->a->ack_log, strerror(-err));
	return err;
}

/* One GET, judged by the model. Returns 0 or a fatal negative errno. */
static int load__get(struct load *l, uint64_t seq, size_t ki, const char *key)
{
	char got[KVPROTO_TOKEN_MAX + 1], why[256], line[300];
	char reason[KVPROTO_REASON_MAX + 1] = "";
	int found = 0, err;

	l->gets++;
	err = kvclient__get(l->c, key, &found, got, reason);
	switch (err) {
	case 0:
		break;
	case -ETIMEDOUT:
		l->gets_gave_up++;
		load__finding(l, seq, "GET", key, "no answer, gave up at the deadline");
		return 0;
	case -EREMOTEIO:
		l->errors++;
		snprintf(why, sizeof(why), "answered ERR %s", reason);
		load__finding(l, seq, "GET", key, why);
		return 0;
	case -EPROTO:
		l->wrong++;
		load__finding(l, seq, "GET", key, "wrong answer: not VAL/NONE");
		return 0;
	default:
		return err;
	}
	kvhist__add(&l->lat, l->c->last_latency_us);
	switch (kvmodel__check_get(&l->model, ki, found ? got : NULL, why,
				   sizeof(why))) {
	case KVMODEL_OK:
		l->gets_ok++;
		break;
	case KVMODEL_OK_AMBIGUOUS:
		l->gets_ok++;
		l->ambiguous_reads++;
		break;
	case KVMODEL_OK_UNVERIFIED:
		l->gets_ok++;
		l->unverified_reads++;
		break;
	case KVMODEL_STALE:
		l->stale++;
		snprintf(line, sizeof(line), "stale read: %s", why);
		load__finding(l, seq, "GET", key, line);
		break;
	case KVMODEL_WRONG:
		l->wrong++;
		snprintf(line, sizeof(line), "wrong answer: %s", why);
		load__finding(l, seq, "GET", key, line);
		break;
	}
	return 0;
}

/* One PUT of a value unique to this op. Returns 0 or a fatal errno. */
static int load__put(struct load *l, uint64_t seq, size_t ki, const char *key)
{
	char value[KVPROTO_TOKEN_MAX + 1], why[KVPROTO_TOKEN_MAX + 96];
	char reason[KVPROTO_REASON_MAX + 1] = "";
	bool acked;
	int err;

	l->puts++;
	err = kvmodel__format_value(&l->model, seq, ki, value, sizeof(value));
	if (err < 0)
		return err; /* excluded by the prefix length check */
	/* Intent first: if we die between the server's OK and the PUT line,
	 * verify still knows this value may be there. */
	err = load__log(l, false, key, value);
	if (err < 0)
		return err;
	err = kvclient__put(l->c, key, value, reason);
	acked = err == 0;
	switch (err) {
	case 0:
		l->puts_acked++;
		kvhist__add(&l->lat, l->c->last_latency_us);
		/* The PUT line exists only for an OK. */
		err = load__log(l, true, key, value);
		if (err < 0)
			return err;
		break;
	case -ETIMEDOUT:
		l->puts_gave_up++;
		snprintf(why, sizeof(why), "%s: no answer, gave up at the deadline "
			 "(the key may hold either value)", value);
		load__finding(l, seq, "PUT", key, why);
		break;
	case -EREMOTEIO:
		l->puts_failed++;
		l->errors++;
		snprintf(why, sizeof(why), "%s: answered ERR %s", value, reason);
		load__finding(l, seq, "PUT", key, why);
		break;
	case -EPROTO:
		l->puts_failed++;
		l->wrong++;
		snprintf(why, sizeof(why), "%s: wrong answer: not OK", value);
		load__finding(l, seq, "PUT", key, why);
		break;
	default:
		return err;
	}
	/* Not acknowledged (even an ERR may follow an attempt that was
	 * applied): the model keeps both possibilities open. */
	return kvmodel__put_done(&l->model, ki, seq, acked);
}

static void load__progress(const struct load *l, uint64_t elapsed_us)
{
	fprintf(stderr, "ftvm-kv: load: t=%.1fs ops=%" PRIu64 " acked=%" PRIu64
		" gets=%" PRIu64 " stale=%" PRIu64 " wrong=%" PRIu64
		" gave_up=%" PRIu64 " retries=%" PRIu64 " last_lat_us=%" PRIu64 "\n",
		(double)elapsed_us / 1e6, l->ops, l->puts_acked, l->gets,
		l->stale, l->wrong, l->puts_gave_up + l->gets_gave_up,
		l->c->stats.retries, l->c->last_latency_us);
}

static bool load__summary(const struct load *l, uint64_t elapsed_us,
			  bool interrupted)
{
	uint64_t gave_up = l->puts_gave_up + l->gets_gave_up;
	bool pass = !l->stale && !l->wrong && !gave_up && !l->errors;
	struct report r;

	if (l->reported > KVCLI_MAX_REPORTED)
		fprintf(stderr, "ftvm-kv: load: %" PRIu64 " more findings not shown\n",
			l->reported - KVCLI_MAX_REPORTED);
	report__begin(&r, l->a->json);
	report__str(&r, "result", pass ? "pass" : "fail");
	report__u64(&r, "ops", l->ops);
	report__u64(&r, "puts", l->puts);
	report__u64(&r, "puts_acked", l->puts_acked);
	report__u64(&r, "puts_gave_up", l->puts_gave_up);
	report__u64(&r, "puts_failed", l->puts_failed);
	report__u64(&r, "gets", l->gets);
	report__u64(&r, "gets_ok", l->gets_ok);
	report__u64(&r, "gets_gave_up", l->gets_gave_up);
	report__u64(&r, "ambiguous_reads", l->ambiguous_reads);
	report__u64(&r, "unverified_reads", l->unverified_reads);
	report__u64(&r, "stale_reads", l->stale);
	report__u64(&r, "wrong_answers", l->wrong);
	report__u64(&r, "errors", l->errors);
	report__u64(&r, "gave_up", gave_up);
	report__u64(&r, "timeouts", l->c->stats.retries);
	report__client_stats(&r, l->c);
	report__f(&r, "elapsed_s", (double)elapsed_us / 1e6);
	report__f(&r, "throughput_ops_s",
		  elapsed_us ? (double)l->ops * 1e6 / (double)elapsed_us : 0.0);
	report__u64(&r, "latency_p50_us", kvhist__quantile(&l->lat, 0.50));
	report__u64(&r, "latency_p99_us", kvhist__quantile(&l->lat, 0.99));
	report__u64(&r, "latency_p999_us", kvhist__quantile(&l->lat, 0.999));
	report__u64(&r, "latency_max_us", l->lat.count ? l->lat.max : 0);
	/* The latency distribution, for CDF plots: the value at each
	 * percentile 1..100 (bench/ draws them). */
	char cdf[100 * 21 + 1];
	size_t at = 0;
	for (int pc = 1; pc <= 100; pc++)
		at += (size_t)snprintf(cdf + at, sizeof(cdf) - at, "%s%llu", pc > 1 ? " " : "",
				       (unsigned long long)kvhist__quantile(&l->lat, pc / 100.0));
	report__str(&r, "latency_cdf_us", cdf);
	report__u64(&r, "seed", l->a->seed);
	report__str(&r, "value_prefix", l->prefix);
	report__str(&r, "ack_log", l->a->ack_log);
	report__u64(&r, "ack_log_seeded_keys", l->seed.n);
	report__bool(&r, "interrupted", interrupted);
	report__end(&r);
	return pass;
}

/* Check the prefixes leave room for every key and value this run can
 * format (value: prefix + up to 20 digits + '.' + key index). */
static int load__check_prefixes(const struct load *l)
{
	char keydigits[24];

	snprintf(keydigits, sizeof(keydigits), "%" PRIu64, l->a->keys - 1);
	if (!kvproto__valid_token(l->a->key_prefix) ||
	    strlen(l->a->key_prefix) + strlen(keydigits) > KVPROTO_TOKEN_MAX) {
		kvcli__usage_error("--key-prefix: '%s' must be [A-Za-z0-9_.-] and "
				   "leave room for the key number", l->a->key_prefix);
		return -EINVAL;
	}
	if (!kvproto__valid_token(l->prefix) ||
	    strlen(l->prefix) + 20 + 1 + strlen(keydigits) > KVPROTO_TOKEN_MAX) {
		kvcli__usage_error("--value-prefix: '%s' must be [A-Za-z0-9_.-] and "
				   "leave room for '<op>.<key>' (64 characters in all)",
				   l->prefix);
		return -EINVAL;
	}
	return 0;
}

/* The main loop. Returns 0 when it ran to the end (or was stopped by a
 * signal: *interrupted), a negative errno when it could not go on. */
static int load__run(struct load *l, bool *interrupted)
{
	const struct kvcli_args *a = l->a;
	uint64_t rng = a->seed, start = kvclient__now_us(), due_ns = 0;
	uint64_t end = a->duration_ms ? start + a->duration_ms * 1000u : UINT64_MAX;
	uint64_t next_progress = a->progress_ms ? start + a->progress_ms * 1000u :
						  UINT64_MAX;
	sigset_t stop;
	int err;

	kvcli__block_stop_signals(&stop);
	for (uint64_t seq = 1; !a->ops || seq <= a->ops; seq++) {
		char key[KVPROTO_TOKEN_MAX + 1];
		size_t ki = (size_t)(load__rng(&rng) % a->keys);
		bool is_get = (double)(load__rng(&rng) >> 11) * 0x1p-53 < a->read_ratio;
		uint64_t now = kvclient__now_us();

		if (now >= next_progress) {
			load__progress(l, now - start);
			next_progress = now + a->progress_ms * 1000u;
		}
		/* Pace to a schedule so short hiccups do not lower the rate,
		 * but drop the debt of a long stall (a failover): catching up
		 * in a burst would hit the new primary with a load nobody
		 * asked for, and distort the latencies after it. */
		if (a->rate) {
			uint64_t interval_ns = 1000000000u / a->rate;

			if (due_ns + 100 * interval_ns < (now - start) * 1000u)
				due_ns = (now - start) * 1000u;
			if (kvcli__sleep_until(&stop, start + due_ns / 1000u)) {
				*interrupted = true;
				break;
			}
			due_ns += interval_ns;
			now = kvclient__now_us();
		}
		if (now >= end)
			break;
		if (kvcli__stop_requested(&stop)) {
			*interrupted = true;
			break;
		}
		snprintf(key, sizeof(key), "%s%zu", a->key_prefix, ki);
		l->ops++;
		err = is_get ? load__get(l, seq, ki, key) : load__put(l, seq, ki, key);
		if (err < 0)
			return err;
	}
	return 0;
}

int kvcli__load(const struct kvcli_args *a, struct kvclient *c)
{
	struct load *l = calloc(1, sizeof(*l)); /* kvhist is ~30 KiB */
	bool interrupted = false, pass;
	uint64_t start;
	int ret = EXIT_USAGE, err;

	if (!l)
		return EXIT_USAGE;
	l->a = a;
	l->c = c;
	l->w.fd = -1;
	kvhist__init(&l->lat);
	kvlog__init(&l->seed);
	if (a->value_prefix)
		snprintf(l->prefix, sizeof(l->prefix), "%s", a->value_prefix);
	else
		snprintf(l->prefix, sizeof(l->prefix), "v%s-", c->nonce);
	if (load__check_prefixes(l) < 0) {
		free(l);
		return EXIT_USAGE;
	}
	err = kvmodel__init(&l->model, (size_t)a->keys, l->prefix,
			    a->allow_preexisting);
	if (err < 0) {
		fprintf(stderr, "ftvm-kv: load: %s\n", strerror(-err));
		free(l);
		return EXIT_USAGE;
	}
	if (a->ack_log) {
		if (load__seed(l) < 0)
			goto out;
		err = kvlog__open_writer(&l->w, a->ack_log);
		if (err < 0) {
			fprintf(stderr, "ftvm-kv: %s: %s\n", a->ack_log, strerror(-err));
			goto out;
		}
	}

	start = kvclient__now_us();
	err = load__run(l, &interrupted);
	if (err < 0) {
		fprintf(stderr, "ftvm-kv: load: %s\n", strerror(-err));
		goto out;
	}
	err = kvlog__close_writer(&l->w);
	if (err < 0) {
		fprintf(stderr, "ftvm-kv: %s: %s\n", a->ack_log, strerror(-err));
		goto out;
	}
	pass = load__summary(l, kvclient__now_us() - start, interrupted);
	ret = pass ? EXIT_OK : EXIT_FAIL;
out:
	kvlog__close_writer(&l->w);
	kvmodel__free(&l->model);
	kvlog__free(&l->seed);
	free(l);
	return ret;
}
