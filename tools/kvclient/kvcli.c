/* kvcli: output and signal helpers shared by the ftvm-kv command's files
 * (see kvcli.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the root CMakeLists defines it too */
#endif
#include "tools/kvclient/kvcli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void kvcli__usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "ftvm-kv: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'ftvm-kv --help'.\n");
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

void report__begin(struct report *r, bool json)
{
	r->json = json;
	r->first = true;
	if (json)
		putchar('{');
}

static void report_name(struct report *r, const char *name)
{
	if (r->json) {
		if (!r->first)
			putchar(',');
		json_string(name);
		putchar(':');
	} else {
		printf("%-26s ", name);
	}
	r->first = false;
}

void report__u64(struct report *r, const char *name, uint64_t v)
{
	report_name(r, name);
	printf("%" PRIu64 "%s", v, r->json ? "" : "\n");
}

void report__i64(struct report *r, const char *name, int64_t v)
{
	report_name(r, name);
	printf("%" PRId64 "%s", v, r->json ? "" : "\n");
}

void report__f(struct report *r, const char *name, double v)
{
	report_name(r, name);
	printf("%.3f%s", isfinite(v) ? v : 0.0, r->json ? "" : "\n");
}

void report__str(struct report *r, const char *name, const char *s)
{
	report_name(r, name);
	if (r->json) {
		if (s)
			json_string(s);
		else
			fputs("null", stdout);
	} else {
		printf("%s\n", s ? s : "(none)");
	}
}

void report__bool(struct report *r, const char *name, bool v)
{
	report_name(r, name);
	printf("%s%s", v ? "true" : "false", r->json ? "" : "\n");
}

void report__end(struct report *r)
{
	if (r->json)
		puts("}");
	fflush(stdout);
}

static const char *what_of(enum kvproto_op op)
{
	return kvproto__op_name(op);
}

int kvcli__failure(const struct kvcli_args *a, const struct kvclient *c,
			  enum kvproto_op op, const char *key, int err,
			  const char *reason)
{
	bool json_object = a->json && !(a->cmd & CMD_CHECKERS);

	if (err == -EREMOTEIO)
		fprintf(stderr, "ftvm-kv: %s%s%s: server answered ERR %s\n",
			what_of(op), key ? " " : "", key ? key : "", reason);
	else if (err == -ETIMEDOUT)
		fprintf(stderr, "ftvm-kv: %s%s%s: no answer from %s within %u ms "
			"(%u attempts%s%s%s)\n", what_of(op),
			key ? " " : "", key ? key : "", a->server_str,
			a->copts.deadline_ms, c->last_attempts,
			c->last_discarded[0] ? "; discarded datagram '" : "",
			c->last_discarded, c->last_discarded[0] ? "'" : "");
	else if (err == -EPROTO)
		fprintf(stderr, "ftvm-kv: %s%s%s: answer of the wrong kind\n",
			what_of(op), key ? " " : "", key ? key : "");
	else
		fprintf(stderr, "ftvm-kv: %s%s%s: %s\n", what_of(op),
			key ? " " : "", key ? key : "", strerror(-err));
	if (json_object) {
		struct report r;

		report__begin(&r, true);
		report__str(&r, "error", err == -EREMOTEIO ? reason :
				       err == -ETIMEDOUT ? "timeout" :
				       err == -EPROTO ? "bad_answer" : strerror(-err));
		report__end(&r);
	}
	return err == -EINVAL ? EXIT_USAGE : EXIT_FAIL;
}

void kvcli__block_stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigprocmask(SIG_BLOCK, set, NULL);
}

bool kvcli__stop_requested(const sigset_t *set)
{
	struct timespec zero = { 0, 0 };

	return sigtimedwait(set, NULL, &zero) > 0;
}

bool kvcli__sleep_until(const sigset_t *set, uint64_t until_us)
{
	uint64_t now = kvclient__now_us();
	struct timespec ts;

	while (now < until_us) {
		ts.tv_sec = (time_t)((until_us - now) / 1000000u);
		ts.tv_nsec = (long)((until_us - now) % 1000000u) * 1000;
		if (sigtimedwait(set, NULL, &ts) > 0)
			return true;
		now = kvclient__now_us();
	}
	return false;
}

void report__client_stats(struct report *r, const struct kvclient *c)
{
	report__u64(r, "attempts", c->stats.attempts);
	report__u64(r, "retries", c->stats.retries);
	report__u64(r, "late_answers", c->stats.late_answers);
	report__u64(r, "stale_answers_discarded", c->stats.stale_answers);
	report__u64(r, "malformed_discarded", c->stats.malformed);
	report__u64(r, "unmatched_discarded", c->stats.unmatched);
	report__u64(r, "foreign_discarded", c->stats.foreign);
	report__u64(r, "send_errors", c->stats.send_errors);
}
