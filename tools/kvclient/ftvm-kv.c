/* ftvm-kv: command-line client for the kv workload (docs/kv-protocol.md).
 *
 * Single requests (put/get/time/stat/raw) for people and scripts, and the
 * checkers failover drills rely on: `load` (a sequential PUT/GET mix that
 * detects stale reads exactly and logs every acknowledged write), `verify`
 * (every logged write is still there) and `time-watch` (guest time never
 * goes backwards). Run `ftvm-kv --help` for the usage text below. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the root CMakeLists defines it too */
#endif
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>

#include "tools/kvclient/kvclient.h"
#include "tools/kvclient/kvhist.h"
#include "tools/kvclient/kvlog.h"
#include "tools/kvclient/kvmodel.h"
#include "tools/kvclient/kvproto.h"

/* Exit statuses (also in the help text). */
#define EXIT_OK 0
#define EXIT_FAIL 1  /* check failed, ERR answer, no answer */
#define EXIT_USAGE 2 /* bad command line, or cannot set up (socket, log) */
#define EXIT_NONE 3  /* get: the key has no value */

/* How many individual stale/wrong/lost findings are printed before only
 * counting: enough to diagnose, not enough to drown a drill's log. */
#define MAX_REPORTED 20

static const char usage_text[] =
"usage: ftvm-kv [OPTIONS] COMMAND [ARGS] [COMMAND OPTIONS]\n"
"\n"
"Client for the ftvm guest's kv workload (UDP, docs/kv-protocol.md).\n"
"\n"
"Options (any command):\n"
"  --server IP:PORT     the guest's kv service (default 10.0.0.10:7777)\n"
"  --timeout-ms N       first attempt's wait for an answer (default 200)\n"
"  --max-timeout-ms N   cap of the doubling per-attempt wait (default 8x timeout)\n"
"  --deadline-ms N      give up on a request after N ms in all (default 10000)\n"
"  --json               print one JSON object instead of text\n"
"  -h, --help           this text\n"
"\n"
"Commands:\n"
"  put KEY VALUE        store; prints OK once the guest acknowledged it\n"
"  get KEY              prints the value; exit 3 (nothing printed) for NONE\n"
"  time                 prints guest_tsc=N guest_ns=N\n"
"  stat                 prints the guest's STAT fields\n"
"  raw TEXT             sends TEXT as one datagram (no newline added) and\n"
"                       prints the first datagram that comes back, verbatim\n"
"  load                 sequential mix of PUTs and GETs, checking each GET\n"
"    --ops N              operations (default 1000 unless --duration-ms)\n"
"    --duration-ms D      stop after D ms (with --ops: whichever comes first)\n"
"    --keys K             keys <key-prefix>0..K-1 (default 100)\n"
"    --key-prefix P       default k\n"
"    --read-ratio R       fraction of GETs, 0..1 (default 0.5)\n"
"    --seed S             PRNG seed for the op mix (default 1)\n"
"    --rate OPS_PER_S     pace operations (default 0: as fast as answered);\n"
"                         after a stall at most 100 ops are caught up\n"
"    --value-prefix P     values are P<op>.<key index>; must be unique per run\n"
"                         (default v<random>-)\n"
"    --ack-log FILE       append every finished PUT (see below); an existing\n"
"                         log also seeds what the keys must hold before this run\n"
"    --allow-preexisting  keys not in the ack log may hold values from before\n"
"                         (counted as unverified instead of wrong)\n"
"    --progress-ms N      print a progress line to stderr every N ms\n"
"  verify --ack-log FILE  GET every key in the log: each must hold its last\n"
"                       acknowledged value (or a later unacknowledged one)\n"
"  time-watch           repeated TIME: guest_tsc and guest_ns must never\n"
"                       decrease; reports the largest forward jump against\n"
"                       the host time that passed\n"
"    --count N            samples (default 100 unless --duration-ms)\n"
"    --duration-ms D      sample for D ms\n"
"    --interval-ms I      pause between samples (default 10)\n"
"    --max-excess-us U    also fail if guest time ever ran U us ahead of\n"
"                         the host time between two answers\n"
"\n"
"Requests are retried with a doubling wait until the deadline; each attempt\n"
"has its own reqid, answers to earlier requests are discarded.\n"
"\n"
"load: a GET must return the last acknowledged value of its key (NONE if\n"
"none). After a PUT that got no acknowledgement (gave up, or ERR) the key\n"
"may hold either, until the next acknowledged PUT: such reads are accepted\n"
"and counted as ambiguous_reads. Fails (exit 1) on any stale read, wrong\n"
"answer, ERR answer or request that gave up.\n"
"\n"
"Ack log lines: 'SENT KEY VALUE' before a PUT is first sent, 'PUT KEY VALUE'\n"
"once it was acknowledged (never before its OK arrived). A SENT with no PUT\n"
"after it may or may not have been applied. Each line is written at once (it\n"
"survives the client being killed) and fdatasync'd every 256 lines, every\n"
"second and at exit. The file is appended to, never truncated: delete it to\n"
"start afresh.\n"
"\n"
"Exit status: 0 success, 1 check failed / ERR answer / no answer,\n"
"2 usage or setup error, 3 get found no value.\n";

enum cmd {
	CMD_NONE = 0,
	CMD_PUT = 1u << 0,
	CMD_GET = 1u << 1,
	CMD_TIME = 1u << 2,
	CMD_STAT = 1u << 3,
	CMD_RAW = 1u << 4,
	CMD_LOAD = 1u << 5,
	CMD_VERIFY = 1u << 6,
	CMD_TIMEWATCH = 1u << 7,
};
#define CMD_ALL 0xffu

static const struct {
	const char *name;
	enum cmd cmd;
	int nargs;
} commands[] = {
	{ "put", CMD_PUT, 2 },       { "get", CMD_GET, 1 },
	{ "time", CMD_TIME, 0 },     { "stat", CMD_STAT, 0 },
	{ "raw", CMD_RAW, 1 },       { "load", CMD_LOAD, 0 },
	{ "verify", CMD_VERIFY, 0 }, { "time-watch", CMD_TIMEWATCH, 0 },
};

enum opt_id {
	OPT_SERVER, OPT_TIMEOUT, OPT_MAX_TIMEOUT, OPT_DEADLINE, OPT_JSON,
	OPT_HELP, OPT_OPS, OPT_DURATION, OPT_KEYS, OPT_KEY_PREFIX,
	OPT_READ_RATIO, OPT_SEED, OPT_RATE, OPT_VALUE_PREFIX, OPT_ACK_LOG,
	OPT_ALLOW_PRE, OPT_PROGRESS, OPT_COUNT, OPT_INTERVAL, OPT_MAX_EXCESS,
};

static const struct {
	const char *name;
	enum opt_id id;
	bool has_arg;
	unsigned cmds; /* commands that accept it */
} options[] = {
	{ "server", OPT_SERVER, true, CMD_ALL },
	{ "timeout-ms", OPT_TIMEOUT, true, CMD_ALL },
	{ "max-timeout-ms", OPT_MAX_TIMEOUT, true, CMD_ALL },
	{ "deadline-ms", OPT_DEADLINE, true, CMD_ALL },
	{ "json", OPT_JSON, false, CMD_ALL },
	{ "help", OPT_HELP, false, CMD_ALL },
	{ "ops", OPT_OPS, true, CMD_LOAD },
	{ "duration-ms", OPT_DURATION, true, CMD_LOAD | CMD_TIMEWATCH },
	{ "keys", OPT_KEYS, true, CMD_LOAD },
	{ "key-prefix", OPT_KEY_PREFIX, true, CMD_LOAD },
	{ "read-ratio", OPT_READ_RATIO, true, CMD_LOAD },
	{ "seed", OPT_SEED, true, CMD_LOAD },
	{ "rate", OPT_RATE, true, CMD_LOAD },
	{ "value-prefix", OPT_VALUE_PREFIX, true, CMD_LOAD },
	{ "ack-log", OPT_ACK_LOG, true, CMD_LOAD | CMD_VERIFY },
	{ "allow-preexisting", OPT_ALLOW_PRE, false, CMD_LOAD },
	{ "progress-ms", OPT_PROGRESS, true, CMD_LOAD },
	{ "count", OPT_COUNT, true, CMD_TIMEWATCH },
	{ "interval-ms", OPT_INTERVAL, true, CMD_TIMEWATCH },
	{ "max-excess-us", OPT_MAX_EXCESS, true, CMD_TIMEWATCH },
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

struct args {
	enum cmd cmd;
	const char *cmd_name;
	const char *pos[2];
	int npos;
	bool given[N_OPTIONS];

	const char *server_str;
	struct kvclient_opts copts;
	bool json;

	uint64_t ops, duration_ms, keys, seed, rate, progress_ms;
	double read_ratio;
	const char *key_prefix, *value_prefix, *ack_log;
	bool allow_preexisting;

	uint64_t count, interval_ms, max_excess_us;
	bool max_excess_set;
};

static void usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "ftvm-kv: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'ftvm-kv --help'.\n");
}

/* Strict decimal: digits only, within [min, max]. */
static int parse_u64_arg(const char *name, const char *s, uint64_t min,
			 uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	if (s[0] < '0' || s[0] > '9')
		goto bad;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		goto bad;
	*out = v;
	return 0;
bad:
	fprintf(stderr, "ftvm-kv: --%s: '%s' is not a number in %" PRIu64
		"..%" PRIu64 "\nTry 'ftvm-kv --help'.\n", name, s, min, max);
	return -EINVAL;
}

static int set_option(struct args *a, enum opt_id id, const char *name,
		      const char *v)
{
	uint64_t n;
	char *end;

	switch (id) {
	case OPT_SERVER:
		a->server_str = v;
		if (kvclient__parse_addr(v, &a->copts.server) < 0) {
			usage_error("--server: '%s' is not IPV4:PORT", v);
			return -EINVAL;
		}
		return 0;
	case OPT_TIMEOUT:
		if (parse_u64_arg(name, v, 1, 3600000, &n) < 0)
			return -EINVAL;
		a->copts.timeout_ms = (unsigned)n;
		return 0;
	case OPT_MAX_TIMEOUT:
		if (parse_u64_arg(name, v, 1, 3600000, &n) < 0)
			return -EINVAL;
		a->copts.max_timeout_ms = (unsigned)n;
		return 0;
	case OPT_DEADLINE:
		if (parse_u64_arg(name, v, 1, 86400000, &n) < 0)
			return -EINVAL;
		a->copts.deadline_ms = (unsigned)n;
		return 0;
	case OPT_JSON: a->json = true; return 0;
	case OPT_HELP: return 0;
	case OPT_OPS: return parse_u64_arg(name, v, 1, UINT64_MAX / 2, &a->ops);
	case OPT_DURATION:
		return parse_u64_arg(name, v, 1, UINT64_MAX / 2000, &a->duration_ms);
	case OPT_KEYS: return parse_u64_arg(name, v, 1, 10000000, &a->keys);
	case OPT_SEED: return parse_u64_arg(name, v, 0, UINT64_MAX, &a->seed);
	case OPT_RATE: return parse_u64_arg(name, v, 0, 10000000, &a->rate);
	case OPT_PROGRESS:
		return parse_u64_arg(name, v, 1, 86400000, &a->progress_ms);
	case OPT_COUNT: return parse_u64_arg(name, v, 1, UINT64_MAX / 2, &a->count);
	case OPT_INTERVAL:
		return parse_u64_arg(name, v, 0, 3600000, &a->interval_ms);
	case OPT_MAX_EXCESS:
		a->max_excess_set = true;
		return parse_u64_arg(name, v, 0, UINT64_MAX / 2000,
				     &a->max_excess_us);
	case OPT_READ_RATIO:
		errno = 0;
		a->read_ratio = strtod(v, &end);
		if (errno || end == v || *end || !(a->read_ratio >= 0.0) ||
		    a->read_ratio > 1.0) {
			usage_error("--read-ratio: '%s' is not a number in 0..1", v);
			return -EINVAL;
		}
		return 0;
	case OPT_KEY_PREFIX: a->key_prefix = v; return 0;
	case OPT_VALUE_PREFIX: a->value_prefix = v; return 0;
	case OPT_ACK_LOG: a->ack_log = v; return 0;
	case OPT_ALLOW_PRE: a->allow_preexisting = true; return 0;
	}
	return -EINVAL;
}

/* Returns 0 to run, 1 when help was printed, -EINVAL on a usage error
 * (already reported). Options may come before or after the command. */
static int parse_args(int argc, char **argv, struct args *a)
{
	bool only_pos = false, help = false;

	memset(a, 0, sizeof(*a));
	a->server_str = "10.0.0.10:7777";
	kvclient__parse_addr(a->server_str, &a->copts.server);
	a->copts.timeout_ms = 200;
	a->copts.deadline_ms = 10000;
	a->keys = 100;
	a->key_prefix = "k";
	a->read_ratio = 0.5;
	a->seed = 1;
	a->interval_ms = 10;

	for (int i = 1; i < argc; i++) {
		const char *s = argv[i], *eq, *val = NULL;
		char name[32];
		size_t nl, o;

		if (!only_pos && !strcmp(s, "--")) {
			only_pos = true;
			continue;
		}
		if (!only_pos && (!strcmp(s, "-h") || !strcmp(s, "--help"))) {
			help = true;
			continue;
		}
		if (only_pos || s[0] != '-' || s[1] == '\0') {
			if (a->cmd == CMD_NONE) {
				for (o = 0; o < sizeof(commands) / sizeof(commands[0]); o++)
					if (!strcmp(s, commands[o].name))
						break;
				if (o == sizeof(commands) / sizeof(commands[0])) {
					usage_error("unknown command '%s'", s);
					return -EINVAL;
				}
				a->cmd = commands[o].cmd;
				a->cmd_name = commands[o].name;
				continue;
			}
			if (a->npos == 2) {
				usage_error("unexpected argument '%s'", s);
				return -EINVAL;
			}
			a->pos[a->npos++] = s;
			continue;
		}
		if (s[1] != '-') {
			usage_error("unknown option '%s'", s);
			return -EINVAL;
		}
		eq = strchr(s + 2, '=');
		nl = eq ? (size_t)(eq - s - 2) : strlen(s + 2);
		if (nl >= sizeof(name)) {
			usage_error("unknown option '%s'", s);
			return -EINVAL;
		}
		memcpy(name, s + 2, nl);
		name[nl] = '\0';
		for (o = 0; o < N_OPTIONS; o++)
			if (!strcmp(name, options[o].name))
				break;
		if (o == N_OPTIONS) {
			usage_error("unknown option '%s'", s);
			return -EINVAL;
		}
		if (options[o].has_arg) {
			if (eq) {
				val = eq + 1;
			} else if (i + 1 < argc) {
				val = argv[++i];
			} else {
				usage_error("option '%s' needs a value", s);
				return -EINVAL;
			}
		} else if (eq) {
			usage_error("option '--%s' takes no value", name);
			return -EINVAL;
		}
		a->given[o] = true;
		if (set_option(a, options[o].id, name, val) < 0)
			return -EINVAL;
	}
	if (help) {
		fputs(usage_text, stdout);
		return 1;
	}
	if (a->cmd == CMD_NONE) {
		usage_error("%s", "no command given");
		return -EINVAL;
	}
	for (size_t o = 0; o < N_OPTIONS; o++) {
		if (a->given[o] && !(options[o].cmds & a->cmd)) {
			fprintf(stderr, "ftvm-kv: option '--%s' does not apply to '%s'\n"
				"Try 'ftvm-kv --help'.\n", options[o].name,
				a->cmd_name);
			return -EINVAL;
		}
	}
	for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
		if (commands[c].cmd == a->cmd && a->npos != commands[c].nargs) {
			fprintf(stderr, "ftvm-kv: '%s' takes %d argument%s, got %d\n"
				"Try 'ftvm-kv --help'.\n", a->cmd_name,
				commands[c].nargs, commands[c].nargs == 1 ? "" : "s",
				a->npos);
			return -EINVAL;
		}
	}
	if (a->copts.deadline_ms < a->copts.timeout_ms) {
		usage_error("%s", "--deadline-ms must be at least --timeout-ms");
		return -EINVAL;
	}
	if (a->cmd == CMD_VERIFY && !a->ack_log) {
		usage_error("%s", "verify needs --ack-log FILE");
		return -EINVAL;
	}
	if (a->cmd == CMD_LOAD && !a->ops && !a->duration_ms)
		a->ops = 1000;
	if (a->cmd == CMD_TIMEWATCH && !a->count && !a->duration_ms)
		a->count = 100;
	return 0;
}

/* ---- output: the same named fields as text lines or one JSON object ---- */

struct report {
	bool json, first;
};

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

static void report_begin(struct report *r, bool json)
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

static void report_u64(struct report *r, const char *name, uint64_t v)
{
	report_name(r, name);
	printf("%" PRIu64 "%s", v, r->json ? "" : "\n");
}

static void report_i64(struct report *r, const char *name, int64_t v)
{
	report_name(r, name);
	printf("%" PRId64 "%s", v, r->json ? "" : "\n");
}

static void report_f(struct report *r, const char *name, double v)
{
	report_name(r, name);
	printf("%.3f%s", isfinite(v) ? v : 0.0, r->json ? "" : "\n");
}

static void report_str(struct report *r, const char *name, const char *s)
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

static void report_bool(struct report *r, const char *name, bool v)
{
	report_name(r, name);
	printf("%s%s", v ? "true" : "false", r->json ? "" : "\n");
}

static void report_end(struct report *r)
{
	if (r->json)
		puts("}");
	fflush(stdout);
}

/* ---- shared helpers ---- */

static const char *what_of(enum kvproto_op op)
{
	return kvproto__op_name(op);
}

/* Report a failed request on stderr (and, in JSON mode, as an object on
 * stdout so a script always gets one). Returns the exit status. */
static int report_failure(const struct args *a, const struct kvclient *c,
			  enum kvproto_op op, const char *key, int err,
			  const char *reason)
{
	if (err == -EREMOTEIO)
		fprintf(stderr, "ftvm-kv: %s%s%s: server answered ERR %s\n",
			what_of(op), key ? " " : "", key ? key : "", reason);
	else if (err == -ETIMEDOUT)
		fprintf(stderr, "ftvm-kv: %s%s%s: no answer from %s within %u ms "
			"(%" PRIu64 " attempts%s%s%s)\n", what_of(op),
			key ? " " : "", key ? key : "", a->server_str,
			a->copts.deadline_ms, c->stats.attempts,
			c->last_discarded[0] ? "; discarded datagram '" : "",
			c->last_discarded, c->last_discarded[0] ? "'" : "");
	else if (err == -EPROTO)
		fprintf(stderr, "ftvm-kv: %s%s%s: answer of the wrong kind\n",
			what_of(op), key ? " " : "", key ? key : "");
	else
		fprintf(stderr, "ftvm-kv: %s%s%s: %s\n", what_of(op),
			key ? " " : "", key ? key : "", strerror(-err));
	if (a->json) {
		struct report r;

		report_begin(&r, true);
		report_str(&r, "error", err == -EREMOTEIO ? reason :
				       err == -ETIMEDOUT ? "timeout" :
				       err == -EPROTO ? "bad_answer" : strerror(-err));
		report_end(&r);
	}
	return err == -EINVAL ? EXIT_USAGE : EXIT_FAIL;
}

/* Signals that end load/time-watch early: blocked, then polled between
 * requests and used to cut pacing sleeps short, so a run stopped with ^C or
 * SIGTERM still syncs its log and prints its summary. No handler, hence no
 * global flag. */
static void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigprocmask(SIG_BLOCK, set, NULL);
}

static bool stop_requested(const sigset_t *set)
{
	struct timespec zero = { 0, 0 };

	return sigtimedwait(set, NULL, &zero) > 0;
}

/* Sleep until the monotonic clock reaches until_us; returns true if a stop
 * signal arrived meanwhile. */
static bool sleep_until(const sigset_t *set, uint64_t until_us)
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

static void report_client_stats(struct report *r, const struct kvclient *c)
{
	report_u64(r, "attempts", c->stats.attempts);
	report_u64(r, "retries", c->stats.retries);
	report_u64(r, "late_answers", c->stats.late_answers);
	report_u64(r, "stale_answers_discarded", c->stats.stale_answers);
	report_u64(r, "malformed_discarded", c->stats.malformed);
	report_u64(r, "unmatched_discarded", c->stats.unmatched);
	report_u64(r, "foreign_discarded", c->stats.foreign);
	report_u64(r, "send_errors", c->stats.send_errors);
}

/* ---- single requests ---- */

static int cmd_single(const struct args *a, struct kvclient *c)
{
	char reason[KVPROTO_REASON_MAX + 1] = "";
	char value[KVPROTO_TOKEN_MAX + 1];
	struct report r;
	int found, err;

	switch (a->cmd) {
	case CMD_PUT:
		if (!kvproto__valid_token(a->pos[0]) ||
		    !kvproto__valid_token(a->pos[1])) {
			usage_error("%s", "KEY and VALUE must be 1-64 characters of "
				    "[A-Za-z0-9_.-] (use 'raw' to send anything)");
			return EXIT_USAGE;
		}
		err = kvclient__put(c, a->pos[0], a->pos[1], reason);
		if (err < 0)
			return report_failure(a, c, KVPROTO_PUT, a->pos[0], err, reason);
		if (!a->json) {
			puts("OK");
			return EXIT_OK;
		}
		report_begin(&r, true);
		report_bool(&r, "acked", true);
		report_str(&r, "key", a->pos[0]);
		report_str(&r, "value", a->pos[1]);
		report_u64(&r, "latency_us", c->last_latency_us);
		report_u64(&r, "attempts", c->last_attempts);
		report_end(&r);
		return EXIT_OK;
	case CMD_GET:
		if (!kvproto__valid_token(a->pos[0])) {
			usage_error("%s", "KEY must be 1-64 characters of "
				    "[A-Za-z0-9_.-] (use 'raw' to send anything)");
			return EXIT_USAGE;
		}
		err = kvclient__get(c, a->pos[0], &found, value, reason);
		if (err < 0)
			return report_failure(a, c, KVPROTO_GET, a->pos[0], err, reason);
		if (a->json) {
			report_begin(&r, true);
			report_str(&r, "key", a->pos[0]);
			report_str(&r, "value", found ? value : NULL);
			report_u64(&r, "latency_us", c->last_latency_us);
			report_end(&r);
		} else if (found) {
			puts(value);
		}
		return found ? EXIT_OK : EXIT_NONE;
	case CMD_TIME: {
		uint64_t tsc, ns;

		err = kvclient__time(c, &tsc, &ns, reason);
		if (err < 0)
			return report_failure(a, c, KVPROTO_TIME, NULL, err, reason);
		if (!a->json) {
			printf("guest_tsc=%" PRIu64 " guest_ns=%" PRIu64 "\n", tsc, ns);
			return EXIT_OK;
		}
		report_begin(&r, true);
		report_u64(&r, "guest_tsc", tsc);
		report_u64(&r, "guest_ns", ns);
		report_end(&r);
		return EXIT_OK;
	}
	case CMD_STAT: {
		struct kvproto_stat st;

		err = kvclient__stat(c, &st, reason);
		if (err < 0)
			return report_failure(a, c, KVPROTO_STAT, NULL, err, reason);
		if (!a->json) {
			printf("entries=%" PRIu64 " puts=%" PRIu64 " gets=%" PRIu64
			       " dirtied=%" PRIu64 " tsc=%" PRIu64 " ns=%" PRIu64 "\n",
			       st.entries, st.puts, st.gets, st.dirtied, st.tsc, st.ns);
			return EXIT_OK;
		}
		report_begin(&r, true);
		report_u64(&r, "entries", st.entries);
		report_u64(&r, "puts", st.puts);
		report_u64(&r, "gets", st.gets);
		report_u64(&r, "dirtied", st.dirtied);
		report_u64(&r, "tsc", st.tsc);
		report_u64(&r, "ns", st.ns);
		report_end(&r);
		return EXIT_OK;
	}
	case CMD_RAW: {
		char ans[2048];
		size_t len;

		err = kvclient__raw(c, a->pos[0], strlen(a->pos[0]), ans,
				    sizeof(ans), &len);
		if (err == -ETIMEDOUT) {
			fprintf(stderr, "ftvm-kv: raw: no answer from %s within %u ms\n",
				a->server_str, a->copts.deadline_ms);
			return EXIT_FAIL;
		}
		if (err < 0) {
			fprintf(stderr, "ftvm-kv: raw: %s\n", strerror(-err));
			return err == -EMSGSIZE ? EXIT_USAGE : EXIT_FAIL;
		}
		if (a->json) {
			report_begin(&r, true);
			report_str(&r, "answer", ans);
			report_end(&r);
		} else {
			fwrite(ans, 1, len, stdout);
			if (len == 0 || ans[len - 1] != '\n')
				putchar('\n');
		}
		return EXIT_OK;
	}
	default:
		return EXIT_USAGE;
	}
}

/* ---- load ---- */

struct load_stats {
	uint64_t ops, puts, puts_acked, puts_gave_up, puts_failed;
	uint64_t gets, gets_ok, gets_gave_up, ambiguous_reads, unverified_reads;
	uint64_t stale, wrong, errors, reported;
	struct kvhist lat;
};

/* splitmix64: tiny, good enough to pick keys and op kinds reproducibly. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void load_finding(struct load_stats *ls, const char *kind,
			 uint64_t seq, const char *key, const char *why)
{
	if (ls->reported < MAX_REPORTED)
		fprintf(stderr, "ftvm-kv: load: op %" PRIu64 ": %s on GET %s: %s\n",
			seq, kind, key, why);
	else if (ls->reported == MAX_REPORTED)
		fprintf(stderr, "ftvm-kv: load: further findings only counted\n");
	ls->reported++;
}

/* Seed the model from an existing ack log so a second load run (after a
 * failover) is checked against what the first one acknowledged. */
static int load_seed(const struct args *a, struct kvlog *log,
		     struct kvmodel *m, const char *prefix)
{
	size_t bad = 0;
	int r = kvlog__load(log, a->ack_log, &bad);

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
	for (size_t i = 0; i < log->n; i++) {
		const struct kvlog_key *k = &log->keys[i];
		bool clash = k->has_acked && !strncmp(k->acked, prefix, strlen(prefix));

		for (size_t j = 0; j < k->n_pending; j++)
			clash |= !strncmp(k->pending[j], prefix, strlen(prefix));
		if (clash) {
			fprintf(stderr, "ftvm-kv: %s already holds values with prefix "
				"'%s': give this run another --value-prefix\n",
				a->ack_log, prefix);
			return -EEXIST;
		}
	}
	for (uint64_t i = 0; i < a->keys; i++) {
		char key[KVPROTO_TOKEN_MAX + 8];

		snprintf(key, sizeof(key), "%s%" PRIu64, a->key_prefix, i);
		kvmodel__seed(m, (size_t)i, kvlog__find(log, key));
	}
	return 0;
}

static void load_progress(const struct load_stats *ls, const struct kvclient *c,
			  uint64_t elapsed_us)
{
	fprintf(stderr, "ftvm-kv: load: t=%.1fs ops=%" PRIu64 " acked=%" PRIu64
		" gets=%" PRIu64 " stale=%" PRIu64 " wrong=%" PRIu64
		" gave_up=%" PRIu64 " retries=%" PRIu64 " last_lat_us=%" PRIu64 "\n",
		(double)elapsed_us / 1e6, ls->ops, ls->puts_acked, ls->gets,
		ls->stale, ls->wrong, ls->puts_gave_up + ls->gets_gave_up,
		c->stats.retries, c->last_latency_us);
}

static int log_append(struct kvlog_writer *w, const char *path, bool acked,
		      const char *key, const char *value)
{
	int err = kvlog__append(w, acked, key, value);

	if (err < 0)
		fprintf(stderr, "ftvm-kv: %s: %s\n", path, strerror(-err));
	return err;
}

static int cmd_load(const struct args *a, struct kvclient *c)
{
	char prefix[KVPROTO_TOKEN_MAX + 1];
	struct kvlog_writer w = { .fd = -1 };
	struct kvlog seedlog;
	struct kvmodel m;
	struct load_stats *ls;
	struct report r;
	sigset_t stopset;
	uint64_t rng, start, end, next_progress, elapsed, gave_up, due_ns = 0;
	bool interrupted = false, pass;
	int ret = EXIT_USAGE, err;
	char keydigits[24];

	if (a->value_prefix)
		snprintf(prefix, sizeof(prefix), "%s", a->value_prefix);
	else
		snprintf(prefix, sizeof(prefix), "v%s-", c->nonce);
	/* Longest key and value this run formats must fit the protocol. */
	snprintf(keydigits, sizeof(keydigits), "%" PRIu64, a->keys - 1);
	if (!kvproto__valid_token(a->key_prefix) ||
	    strlen(a->key_prefix) + strlen(keydigits) > KVPROTO_TOKEN_MAX) {
		usage_error("--key-prefix: '%s' must be [A-Za-z0-9_.-] and leave "
			    "room for the key number", a->key_prefix);
		return EXIT_USAGE;
	}
	if (!kvproto__valid_token(prefix) ||
	    strlen(prefix) + 20 + 1 + strlen(keydigits) > KVPROTO_TOKEN_MAX) {
		usage_error("--value-prefix: '%s' must be [A-Za-z0-9_.-] and leave "
			    "room for '<op>.<key>' (at most 64 characters in all)",
			    prefix);
		return EXIT_USAGE;
	}

	ls = calloc(1, sizeof(*ls));
	if (!ls)
		return EXIT_USAGE;
	kvhist__init(&ls->lat);
	kvlog__init(&seedlog);
	if (kvmodel__init(&m, (size_t)a->keys, prefix, a->allow_preexisting) < 0) {
		free(ls);
		return EXIT_USAGE;
	}
	if (a->ack_log) {
		if (load_seed(a, &seedlog, &m, prefix) < 0)
			goto out;
		err = kvlog__open_writer(&w, a->ack_log);
		if (err < 0) {
			fprintf(stderr, "ftvm-kv: %s: %s\n", a->ack_log, strerror(-err));
			goto out;
		}
	}

	stop_signals(&stopset);
	rng = a->seed;
	start = kvclient__now_us();
	end = a->duration_ms ? start + a->duration_ms * 1000u : UINT64_MAX;
	next_progress = a->progress_ms ? start + a->progress_ms * 1000u : UINT64_MAX;

	for (uint64_t seq = 1; !a->ops || seq <= a->ops; seq++) {
		char key[KVPROTO_TOKEN_MAX + 1], value[KVPROTO_TOKEN_MAX + 1];
		char reason[KVPROTO_REASON_MAX + 1] = "";
		size_t ki = (size_t)(rng_next(&rng) % a->keys);
		bool acked;
		bool is_get = (double)(rng_next(&rng) >> 11) * 0x1p-53 < a->read_ratio;
		uint64_t now = kvclient__now_us();

		if (now >= end)
			break;
		if (stop_requested(&stopset)) {
			interrupted = true;
			break;
		}
		if (now >= next_progress) {
			load_progress(ls, c, now - start);
			next_progress = now + a->progress_ms * 1000u;
		}
		/* Pace to a schedule so short hiccups do not lower the rate,
		 * but drop the debt of a long stall (a failover): catching up
		 * in a burst would hit the new primary with a load the user
		 * never asked for, and distort the latencies after it. */
		if (a->rate) {
			uint64_t interval_ns = 1000000000u / a->rate;

			if (due_ns + 100 * interval_ns < (now - start) * 1000u)
				due_ns = (now - start) * 1000u;
			if (sleep_until(&stopset, start + due_ns / 1000u)) {
				interrupted = true;
				break;
			}
			due_ns += interval_ns;
		}
		snprintf(key, sizeof(key), "%s%zu", a->key_prefix, ki);
		ls->ops++;

		if (is_get) {
			char got[KVPROTO_TOKEN_MAX + 1], why[256];
			int found = 0;

			ls->gets++;
			err = kvclient__get(c, key, &found, got, reason);
			if (err == -ETIMEDOUT) {
				ls->gets_gave_up++;
				continue;
			}
			if (err == -EREMOTEIO) {
				ls->errors++;
				snprintf(why, sizeof(why), "ERR %s", reason);
				load_finding(ls, "error", seq, key, why);
				continue;
			}
			if (err == -EPROTO) {
				ls->wrong++;
				load_finding(ls, "wrong", seq, key,
					     "answer of the wrong kind");
				continue;
			}
			if (err < 0) {
				fprintf(stderr, "ftvm-kv: load: %s\n", strerror(-err));
				goto out;
			}
			kvhist__add(&ls->lat, c->last_latency_us);
			switch (kvmodel__check_get(&m, ki, found ? got : NULL, why,
						   sizeof(why))) {
			case KVMODEL_OK:
				ls->gets_ok++;
				break;
			case KVMODEL_OK_AMBIGUOUS:
				ls->gets_ok++;
				ls->ambiguous_reads++;
				break;
			case KVMODEL_OK_UNVERIFIED:
				ls->gets_ok++;
				ls->unverified_reads++;
				break;
			case KVMODEL_STALE:
				ls->stale++;
				load_finding(ls, "stale read", seq, key, why);
				break;
			case KVMODEL_WRONG:
				ls->wrong++;
				load_finding(ls, "wrong answer", seq, key, why);
				break;
			}
			continue;
		}

		ls->puts++;
		if (kvmodel__format_value(&m, seq, ki, value, sizeof(value)) < 0) {
			fprintf(stderr, "ftvm-kv: load: value too long at op %" PRIu64
				"\n", seq);
			goto out;
		}
		/* Intent first: if we die between the server's OK and the PUT
		 * line, verify still knows this value may be there. */
		if (w.fd >= 0 && log_append(&w, a->ack_log, false, key, value) < 0)
			goto out;
		err = kvclient__put(c, key, value, reason);
		if (err < 0 && err != -ETIMEDOUT && err != -EREMOTEIO &&
		    err != -EPROTO) {
			fprintf(stderr, "ftvm-kv: load: %s\n", strerror(-err));
			goto out;
		}
		acked = err == 0;
		if (acked) {
			ls->puts_acked++;
			kvhist__add(&ls->lat, c->last_latency_us);
		} else if (err == -ETIMEDOUT) {
			ls->puts_gave_up++;
		} else {
			char why[64];

			ls->puts_failed++;
			if (err == -EREMOTEIO) {
				ls->errors++;
				snprintf(why, sizeof(why), "ERR %s", reason);
			} else {
				ls->wrong++;
				snprintf(why, sizeof(why), "answer of the wrong kind");
			}
			if (ls->reported++ < MAX_REPORTED)
				fprintf(stderr, "ftvm-kv: load: op %" PRIu64 ": PUT %s %s: %s\n",
					seq, key, value, why);
		}
		/* The PUT line exists only for an OK. */
		if (acked && w.fd >= 0 && log_append(&w, a->ack_log, true, key, value) < 0)
			goto out;
		err = kvmodel__put_done(&m, ki, seq, acked);
		if (err < 0)
			goto out;
	}

	elapsed = kvclient__now_us() - start;
	if (w.fd >= 0) {
		err = kvlog__close_writer(&w);
		if (err < 0) {
			fprintf(stderr, "ftvm-kv: %s: %s\n", a->ack_log, strerror(-err));
			goto out;
		}
	}
	gave_up = ls->puts_gave_up + ls->gets_gave_up;
	pass = !ls->stale && !ls->wrong && !gave_up && !ls->errors;

	report_begin(&r, a->json);
	report_str(&r, "result", pass ? "pass" : "fail");
	report_u64(&r, "ops", ls->ops);
	report_u64(&r, "puts", ls->puts);
	report_u64(&r, "puts_acked", ls->puts_acked);
	report_u64(&r, "puts_gave_up", ls->puts_gave_up);
	report_u64(&r, "puts_failed", ls->puts_failed);
	report_u64(&r, "gets", ls->gets);
	report_u64(&r, "gets_ok", ls->gets_ok);
	report_u64(&r, "gets_gave_up", ls->gets_gave_up);
	report_u64(&r, "ambiguous_reads", ls->ambiguous_reads);
	report_u64(&r, "unverified_reads", ls->unverified_reads);
	report_u64(&r, "stale_reads", ls->stale);
	report_u64(&r, "wrong_answers", ls->wrong);
	report_u64(&r, "errors", ls->errors);
	report_u64(&r, "gave_up", gave_up);
	report_u64(&r, "timeouts", c->stats.retries);
	report_client_stats(&r, c);
	report_f(&r, "elapsed_s", (double)elapsed / 1e6);
	report_f(&r, "throughput_ops_s",
		 elapsed ? (double)ls->ops * 1e6 / (double)elapsed : 0.0);
	report_u64(&r, "latency_p50_us", kvhist__quantile(&ls->lat, 0.50));
	report_u64(&r, "latency_p99_us", kvhist__quantile(&ls->lat, 0.99));
	report_u64(&r, "latency_p999_us", kvhist__quantile(&ls->lat, 0.999));
	report_u64(&r, "latency_max_us", ls->lat.count ? ls->lat.max : 0);
	report_u64(&r, "seed", a->seed);
	report_str(&r, "value_prefix", prefix);
	report_str(&r, "ack_log", a->ack_log);
	report_u64(&r, "ack_log_seeded_keys", seedlog.n);
	report_bool(&r, "interrupted", interrupted);
	report_end(&r);
	ret = pass ? EXIT_OK : EXIT_FAIL;
out:
	if (w.fd >= 0)
		kvlog__close_writer(&w);
	kvmodel__free(&m);
	kvlog__free(&seedlog);
	free(ls);
	return ret;
}

/* ---- verify ---- */

static int cmd_verify(const struct args *a, struct kvclient *c)
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
				report_failure(a, c, KVPROTO_GET, k->key, err, reason);
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
		if (shown++ < MAX_REPORTED)
			fprintf(stderr, "ftvm-kv: verify: %s: key %s holds %s, expected "
				"%s%s\n", verdict, k->key, found ? got : "NONE",
				k->has_acked ? k->acked : "NONE",
				k->n_pending ? " or a later unacknowledged value" : "");
	}

	report_begin(&r, a->json);
	report_str(&r, "result", !lost && !wrong && !errors ? "pass" : "fail");
	report_u64(&r, "checked", log.n);
	report_u64(&r, "ok", ok);
	report_u64(&r, "ambiguous", ambiguous);
	report_u64(&r, "lost", lost);
	report_u64(&r, "wrong", wrong);
	report_u64(&r, "errors", errors);
	report_u64(&r, "log_puts", log.puts);
	report_u64(&r, "log_sent", log.sent);
	report_end(&r);
	kvlog__free(&log);
	return !lost && !wrong && !errors ? EXIT_OK : EXIT_FAIL;
}

/* ---- time-watch ---- */

static int cmd_time_watch(const struct args *a, struct kvclient *c)
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

	stop_signals(&stopset);
	start = kvclient__now_us();
	end = a->duration_ms ? start + a->duration_ms * 1000u : UINT64_MAX;

	while (!a->count || samples < a->count) {
		char reason[KVPROTO_REASON_MAX + 1] = "";
		uint64_t tsc, ns, t_send, t_recv;
		int err;

		if (kvclient__now_us() >= end)
			break;
		if (stop_requested(&stopset)) {
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
			report_failure(a, c, KVPROTO_TIME, NULL, err, reason);
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
		    sleep_until(&stopset, kvclient__now_us() + a->interval_ms * 1000u)) {
			interrupted = true;
			break;
		}
	}

	pass = !back_steps && !gave_up && !errors && answered > 0;
	if (a->max_excess_set && max_excess_ns != INT64_MIN &&
	    max_excess_ns > (int64_t)(a->max_excess_us * 1000u))
		pass = false;

	report_begin(&r, a->json);
	report_str(&r, "result", pass ? "pass" : "fail");
	report_u64(&r, "samples", samples);
	report_u64(&r, "answered", answered);
	report_u64(&r, "gave_up", gave_up);
	report_u64(&r, "errors", errors);
	report_u64(&r, "backward_steps", back_steps);
	report_u64(&r, "max_backward_tsc", max_back_tsc);
	report_u64(&r, "max_backward_ns", max_back_ns);
	report_u64(&r, "max_forward_jump_ns", max_jump_ns);
	report_u64(&r, "max_forward_jump_host_ns", max_jump_host_ns);
	report_i64(&r, "max_excess_ns", max_excess_ns == INT64_MIN ? 0 : max_excess_ns);
	report_f(&r, "guest_tsc_mhz",
		 prev_ns > first_ns ? (double)(prev_tsc - first_tsc) * 1e3 /
					      (double)(prev_ns - first_ns) : 0.0);
	report_u64(&r, "retries", c->stats.retries);
	report_bool(&r, "interrupted", interrupted);
	report_end(&r);
	return pass ? EXIT_OK : EXIT_FAIL;
}

int main(int argc, char **argv)
{
	struct kvclient c;
	struct args a;
	int r;

	r = parse_args(argc, argv, &a);
	if (r > 0)
		return EXIT_OK;
	if (r < 0)
		return EXIT_USAGE;

	r = kvclient__open(&c, &a.copts);
	if (r < 0) {
		fprintf(stderr, "ftvm-kv: cannot open a UDP socket: %s\n",
			strerror(-r));
		return EXIT_USAGE;
	}
	switch (a.cmd) {
	case CMD_LOAD: r = cmd_load(&a, &c); break;
	case CMD_VERIFY: r = cmd_verify(&a, &c); break;
	case CMD_TIMEWATCH: r = cmd_time_watch(&a, &c); break;
	default: r = cmd_single(&a, &c); break;
	}
	kvclient__close(&c);
	return r;
}
