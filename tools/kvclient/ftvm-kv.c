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
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/kvclient/kvcli.h"
#include "tools/kvclient/kvclient.h"
#include "tools/kvclient/kvproto.h"

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
"    --ack-log FILE       log every PUT (see below); an existing\n"
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

static const struct {
	const char *name;
	enum kvcli_cmd cmd;
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

static int set_option(struct kvcli_args *a, enum opt_id id, const char *name,
		      const char *v)
{
	uint64_t n;
	char *end;

	switch (id) {
	case OPT_SERVER:
		a->server_str = v;
		if (kvclient__parse_addr(v, &a->copts.server) < 0) {
			kvcli__usage_error("--server: '%s' is not IPV4:PORT", v);
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
			kvcli__usage_error("--read-ratio: '%s' is not a number in 0..1", v);
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
static int parse_args(int argc, char **argv, struct kvcli_args *a)
{
	bool only_pos = false, help = false, given[N_OPTIONS] = { false };

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
		const char *s = argv[i], *eq, *val = "";
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
					kvcli__usage_error("unknown command '%s'", s);
					return -EINVAL;
				}
				a->cmd = commands[o].cmd;
				a->cmd_name = commands[o].name;
				continue;
			}
			if (a->npos == 2) {
				kvcli__usage_error("unexpected argument '%s'", s);
				return -EINVAL;
			}
			a->pos[a->npos++] = s;
			continue;
		}
		if (s[1] != '-') {
			kvcli__usage_error("unknown option '%s'", s);
			return -EINVAL;
		}
		eq = strchr(s + 2, '=');
		nl = eq ? (size_t)(eq - s - 2) : strlen(s + 2);
		if (nl >= sizeof(name)) {
			kvcli__usage_error("unknown option '%s'", s);
			return -EINVAL;
		}
		memcpy(name, s + 2, nl);
		name[nl] = '\0';
		for (o = 0; o < N_OPTIONS; o++)
			if (!strcmp(name, options[o].name))
				break;
		if (o == N_OPTIONS) {
			kvcli__usage_error("unknown option '%s'", s);
			return -EINVAL;
		}
		if (options[o].has_arg) {
			if (eq) {
				val = eq + 1;
			} else if (i + 1 < argc) {
				val = argv[++i];
			} else {
				kvcli__usage_error("option '%s' needs a value", s);
				return -EINVAL;
			}
		} else if (eq) {
			kvcli__usage_error("option '--%s' takes no value", name);
			return -EINVAL;
		}
		given[o] = true;
		if (set_option(a, options[o].id, name, val) < 0)
			return -EINVAL;
	}
	if (help) {
		fputs(usage_text, stdout);
		return 1;
	}
	if (a->cmd == CMD_NONE) {
		kvcli__usage_error("%s", "no command given");
		return -EINVAL;
	}
	for (size_t o = 0; o < N_OPTIONS; o++) {
		if (given[o] && !(options[o].cmds & a->cmd)) {
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
		kvcli__usage_error("%s", "--deadline-ms must be at least --timeout-ms");
		return -EINVAL;
	}
	if (a->cmd == CMD_VERIFY && !a->ack_log) {
		kvcli__usage_error("%s", "verify needs --ack-log FILE");
		return -EINVAL;
	}
	if (a->cmd == CMD_LOAD && !a->ops && !a->duration_ms)
		a->ops = 1000;
	if (a->cmd == CMD_TIMEWATCH && !a->count && !a->duration_ms)
		a->count = 100;
	return 0;
}

static int cmd_single(const struct kvcli_args *a, struct kvclient *c)
{
	char reason[KVPROTO_REASON_MAX + 1] = "";
	char value[KVPROTO_TOKEN_MAX + 1];
	struct report r;
	int found, err;

	switch (a->cmd) {
	case CMD_PUT:
		if (!kvproto__valid_token(a->pos[0]) ||
		    !kvproto__valid_token(a->pos[1])) {
			kvcli__usage_error("%s", "KEY and VALUE must be 1-64 characters of "
				    "[A-Za-z0-9_.-] (use 'raw' to send anything)");
			return EXIT_USAGE;
		}
		err = kvclient__put(c, a->pos[0], a->pos[1], reason);
		if (err < 0)
			return kvcli__failure(a, c, KVPROTO_PUT, a->pos[0], err, reason);
		if (!a->json) {
			puts("OK");
			return EXIT_OK;
		}
		report__begin(&r, true);
		report__bool(&r, "acked", true);
		report__str(&r, "key", a->pos[0]);
		report__str(&r, "value", a->pos[1]);
		report__u64(&r, "latency_us", c->last_latency_us);
		report__u64(&r, "attempts", c->last_attempts);
		report__end(&r);
		return EXIT_OK;
	case CMD_GET:
		if (!kvproto__valid_token(a->pos[0])) {
			kvcli__usage_error("%s", "KEY must be 1-64 characters of "
				    "[A-Za-z0-9_.-] (use 'raw' to send anything)");
			return EXIT_USAGE;
		}
		err = kvclient__get(c, a->pos[0], &found, value, reason);
		if (err < 0)
			return kvcli__failure(a, c, KVPROTO_GET, a->pos[0], err, reason);
		if (a->json) {
			report__begin(&r, true);
			report__str(&r, "key", a->pos[0]);
			report__str(&r, "value", found ? value : NULL);
			report__u64(&r, "latency_us", c->last_latency_us);
			report__end(&r);
		} else if (found) {
			puts(value);
		}
		return found ? EXIT_OK : EXIT_NONE;
	case CMD_TIME: {
		uint64_t tsc, ns;

		err = kvclient__time(c, &tsc, &ns, reason);
		if (err < 0)
			return kvcli__failure(a, c, KVPROTO_TIME, NULL, err, reason);
		if (!a->json) {
			printf("guest_tsc=%" PRIu64 " guest_ns=%" PRIu64 "\n", tsc, ns);
			return EXIT_OK;
		}
		report__begin(&r, true);
		report__u64(&r, "guest_tsc", tsc);
		report__u64(&r, "guest_ns", ns);
		report__end(&r);
		return EXIT_OK;
	}
	case CMD_STAT: {
		struct kvproto_stat st;

		err = kvclient__stat(c, &st, reason);
		if (err < 0)
			return kvcli__failure(a, c, KVPROTO_STAT, NULL, err, reason);
		if (!a->json) {
			printf("entries=%" PRIu64 " puts=%" PRIu64 " gets=%" PRIu64
			       " dirtied=%" PRIu64 " tsc=%" PRIu64 " ns=%" PRIu64 " ap_tsc=%" PRIu64
			       " ap_iterations=%" PRIu64 " tsc_order_errors=%" PRIu64 "\n",
			       st.entries, st.puts, st.gets, st.dirtied, st.tsc, st.ns, st.ap_tsc,
			       st.ap_iterations, st.tsc_order_errors);
			return EXIT_OK;
		}
		report__begin(&r, true);
		report__u64(&r, "entries", st.entries);
		report__u64(&r, "puts", st.puts);
		report__u64(&r, "gets", st.gets);
		report__u64(&r, "dirtied", st.dirtied);
		report__u64(&r, "tsc", st.tsc);
		report__u64(&r, "ns", st.ns);
		report__u64(&r, "ap_tsc", st.ap_tsc);
		report__u64(&r, "ap_iterations", st.ap_iterations);
		report__u64(&r, "tsc_order_errors", st.tsc_order_errors);
		report__end(&r);
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
			report__begin(&r, true);
			report__str(&r, "answer", ans);
			report__end(&r);
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

int main(int argc, char **argv)
{
	struct kvclient c;
	struct kvcli_args a;
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
	case CMD_LOAD: r = kvcli__load(&a, &c); break;
	case CMD_VERIFY: r = kvcli__verify(&a, &c); break;
	case CMD_TIMEWATCH: r = kvcli__time_watch(&a, &c); break;
	default: r = cmd_single(&a, &c); break;
	}
	kvclient__close(&c);
	return r;
}
