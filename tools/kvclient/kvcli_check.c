/* ftvm-kv verify (every logged write is still there) and time-watch (guest
 * time never goes backwards). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the root CMakeLists defines it too */
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/kvclient/kvcli.h"
#include "tools/kvclient/kvlog.h"

int kvcli__verify(const struct kvcli_args *a, struct kvclient *c)
{
	uint64_t ok = 0, ambiguous = 0, lost = 0, wrong = 0, errors = 0, shown = 0;
	struct kvlog log;
	struct report r;
	size_t bad = 0;
	int err;

	kvlog__init(&log);
	err = kvlog__load(&log, a->ack_log, &bad);
	if (err < 0) {
		if (err == -EPROTO)
			fprintf(stderr, "ftvm-kv: %s:%zu: not an ack log line\n",
				a->ack_log, bad);
		else
			fprintf(stderr, "ftvm-kv: %s: %s\n", a->ack_log,
				strerror(-err));
		kvlog__free(&log);
		return EXIT_USAGE;
	}
	if (log.torn)
		fprintf(stderr, "ftvm-kv: %s: ignoring an unterminated last line\n",
			a->ack_log);

	for (size_t i = 0; i < log.n; i++) {
		const struct kvlog_key *k = &log.keys[i];
		char reason[KVPROTO_REASON_MAX + 1] = "", got[KVPROTO_TOKEN_MAX + 1];
		const char *verdict = NULL;
		bool accepted = false;
		int found = 0;

		err = kvclient__get(c, k->key, &found, got, reason);
		if (err < 0) {
			errors++;
			if (err == -ETIMEDOUT || err == -EREMOTEIO || err == -EPROTO) {
				kvcli__failure(a, c, KVPROTO_GET, k->key, err, reason);
				continue;
			}
			fprintf(stderr, "ftvm-kv: verify: %s\n", strerror(-err));
			kvlog__free(&log);
			return EXIT_USAGE;
		}
		if (found) {
			accepted = k->has_acked && !strcmp(got, k->acked);
			for (size_t j = 0; j < k->n_pending && !accepted; j++)
				accepted = !strcmp(got, k->pending[j]);
		} else {
			/* Never acknowledged, only SENT lines: NONE is fine. */
			accepted = !k->has_acked;
		}
		if (accepted) {
			ok++;
			if (k->n_pending)
				ambiguous++;
			continue;
		}
		if (!found || kvlog__key_seen(k, got)) {
			lost++;
			verdict = "lost";
		} else {
			wrong++;
			verdict = "wrong";
		}
		if (shown++ < KVCLI_MAX_REPORTED)
			fprintf(stderr, "ftvm-kv: verify: %s: key %s holds %s, expected "
				"%s%s\n", verdict, k->key, found ? got : "NONE",
				k->has_acked ? k->acked : "NONE",
				k->n_pending ? " or a later unacknowledged value" : "");
	}

	report__begin(&r, a->json);
	report__str(&r, "result", !lost && !wrong && !errors ? "pass" : "fail");
	report__u64(&r, "checked", log.n);
	report__u64(&r, "ok", ok);
	report__u64(&r, "ambiguous", ambiguous);
	report__u64(&r, "lost", lost);
	report__u64(&r, "wrong", wrong);
	report__u64(&r, "errors", errors);
	report__u64(&r, "log_puts", log.puts);
	report__u64(&r, "log_sent", log.sent);
	report__end(&r);
	kvlog__free(&log);
	return !lost && !wrong && !errors ? EXIT_OK : EXIT_FAIL;
}

int kvcli__time_watch(const struct kvcli_args *a, struct kvclient *c)
{
	uint64_t samples = 0, answered = 0, gave_up = 0, errors = 0;
	uint64_t back_steps = 0, max_back_tsc = 0, max_back_ns = 0;
	uint64_t max_jump_ns = 0, max_jump_host_ns = 0;
	uint64_t first_tsc = 0, first_ns = 0, prev_tsc = 0, prev_ns = 0;
	uint64_t prev_send = 0, start, end;
	int64_t max_excess_ns = INT64_MIN;
	bool have_prev = false, interrupted = false, pass;
	sigset_t stopset;
	struct report r;

	kvcli__block_stop_signals(&stopset);
	start = kvclient__now_us();
	end = a->duration_ms ? start + a->duration_ms * 1000u : UINT64_MAX;

	while (!a->count || samples < a->count) {
		char reason[KVPROTO_REASON_MAX + 1] = "";
		uint64_t tsc, ns, t_send, t_recv;
		int err;

		if (kvclient__now_us() >= end)
			break;
		if (kvcli__stop_requested(&stopset)) {
			interrupted = true;
			break;
		}
		samples++;
		t_send = kvclient__now_us();
		err = kvclient__time(c, &tsc, &ns, reason);
		t_recv = kvclient__now_us();
		if (err == -ETIMEDOUT) {
			gave_up++;
		} else if (err < 0) {
			errors++;
			kvcli__failure(a, c, KVPROTO_TIME, NULL, err, reason);
			if (err != -EREMOTEIO && err != -EPROTO)
				return EXIT_USAGE;
		} else {
			answered++;
			if (!have_prev) {
				first_tsc = tsc;
				first_ns = ns;
			} else {
				/* The guest read its clocks somewhere between
				 * our send and receive, so between two answers
				 * at most t_recv - prev_send of host time
				 * passed: guest time beyond that is a jump
				 * ahead for certain, not measurement noise. */
				uint64_t host_ns = (t_recv - prev_send) * 1000u;

				if (tsc < prev_tsc || ns < prev_ns) {
					back_steps++;
					if (tsc < prev_tsc && prev_tsc - tsc > max_back_tsc)
						max_back_tsc = prev_tsc - tsc;
					if (ns < prev_ns && prev_ns - ns > max_back_ns)
						max_back_ns = prev_ns - ns;
					fprintf(stderr, "ftvm-kv: time-watch: sample %" PRIu64
						" went backwards: tsc %" PRIu64 " -> %" PRIu64
						", ns %" PRIu64 " -> %" PRIu64 "\n", samples,
						prev_tsc, tsc, prev_ns, ns);
				}
				if (ns >= prev_ns) {
					int64_t excess = (int64_t)(ns - prev_ns) -
							 (int64_t)host_ns;

					if (ns - prev_ns > max_jump_ns) {
						max_jump_ns = ns - prev_ns;
						max_jump_host_ns = host_ns;
					}
					if (excess > max_excess_ns)
						max_excess_ns = excess;
				}
			}
			have_prev = true;
			prev_tsc = tsc;
			prev_ns = ns;
			prev_send = t_send;
		}
		if (a->interval_ms &&
		    kvcli__sleep_until(&stopset, kvclient__now_us() + a->interval_ms * 1000u)) {
			interrupted = true;
			break;
		}
	}

	pass = !back_steps && !gave_up && !errors && answered > 0;
	if (a->max_excess_set && max_excess_ns != INT64_MIN &&
	    max_excess_ns > (int64_t)(a->max_excess_us * 1000u))
		pass = false;

	report__begin(&r, a->json);
	report__str(&r, "result", pass ? "pass" : "fail");
	report__u64(&r, "samples", samples);
	report__u64(&r, "answered", answered);
	report__u64(&r, "gave_up", gave_up);
	report__u64(&r, "errors", errors);
	report__u64(&r, "backward_steps", back_steps);
	report__u64(&r, "max_backward_tsc", max_back_tsc);
	report__u64(&r, "max_backward_ns", max_back_ns);
	report__u64(&r, "max_forward_jump_ns", max_jump_ns);
	report__u64(&r, "max_forward_jump_host_ns", max_jump_host_ns);
	report__i64(&r, "max_excess_ns", max_excess_ns == INT64_MIN ? 0 : max_excess_ns);
	report__f(&r, "guest_tsc_mhz",
		 prev_ns > first_ns ? (double)(prev_tsc - first_tsc) * 1e3 /
					      (double)(prev_ns - first_ns) : 0.0);
	report__u64(&r, "retries", c->stats.retries);
	report__bool(&r, "interrupted", interrupted);
	report__end(&r);
	return pass ? EXIT_OK : EXIT_FAIL;
}
