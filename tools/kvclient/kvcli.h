/* kvcli: internals shared by the files of the ftvm-kv command (ftvm-kv.c:
 * arguments and single requests; kvcli_load.c: load; kvcli_check.c: verify
 * and time-watch; kvcli.c: output and signal helpers). Not a library API. */
#ifndef FTVM_TOOLS_KVCLI_H
#define FTVM_TOOLS_KVCLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "tools/kvclient/kvclient.h"

/* Exit statuses (also in the help text). */
#define EXIT_OK 0
#define EXIT_FAIL 1  /* check failed, ERR answer, no answer */
#define EXIT_USAGE 2 /* bad command line, or cannot set up (socket, log) */
#define EXIT_NONE 3  /* get: the key has no value */

/* How many individual findings (stale, wrong, lost, gave up) are printed
 * before only counting: enough to diagnose, not enough to drown a drill's
 * log. */
#define KVCLI_MAX_REPORTED 20

enum kvcli_cmd {
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
#define CMD_CHECKERS (CMD_LOAD | CMD_VERIFY | CMD_TIMEWATCH)

/* The parsed command line; defaults filled in by the parser. */
struct kvcli_args {
	enum kvcli_cmd cmd;
	const char *cmd_name;
	const char *pos[2];
	int npos;

	const char *server_str;
	struct kvclient_opts copts;
	bool json;

	/* load */
	uint64_t ops, duration_ms, keys, seed, rate, progress_ms;
	double read_ratio;
	const char *key_prefix, *value_prefix, *ack_log;
	bool allow_preexisting;

	/* time-watch (duration_ms too) */
	uint64_t count, interval_ms, max_excess_us;
	bool max_excess_set;
};

int kvcli__load(const struct kvcli_args *a, struct kvclient *c);
int kvcli__verify(const struct kvcli_args *a, struct kvclient *c);
int kvcli__time_watch(const struct kvcli_args *a, struct kvclient *c);

/* "ftvm-kv: <fmt with arg>" plus the --help hint, on stderr. */
void kvcli__usage_error(const char *fmt, const char *arg);

/* Report a failed request on stderr (and, for a single request in JSON
 * mode, as an object on stdout so a script always gets one; the checkers
 * print their one summary object instead). Returns the exit status. */
int kvcli__failure(const struct kvcli_args *a, const struct kvclient *c,
		   enum kvproto_op op, const char *key, int err,
		   const char *reason);

/* Output: the same named fields as aligned text lines or one JSON object
 * on one line, so scripts and people read the same names. */
struct report {
	bool json, first;
};

void report__begin(struct report *r, bool json);
void report__u64(struct report *r, const char *name, uint64_t v);
void report__i64(struct report *r, const char *name, int64_t v);
void report__f(struct report *r, const char *name, double v);
void report__str(struct report *r, const char *name, const char *s); /* NULL: null */
void report__bool(struct report *r, const char *name, bool v);
void report__client_stats(struct report *r, const struct kvclient *c);
void report__end(struct report *r);

/* Signals that end load/time-watch early (INT, TERM, HUP): blocked, then
 * polled between requests and used to cut pacing sleeps short, so a run
 * stopped with ^C or SIGTERM still syncs its log and prints its summary.
 * No handler, hence no global flag. A request in flight is finished first
 * (at most --deadline-ms). */
void kvcli__block_stop_signals(sigset_t *set);
bool kvcli__stop_requested(const sigset_t *set);
/* Sleep until the monotonic clock reaches until_us; true if a stop signal
 * arrived meanwhile. */
bool kvcli__sleep_until(const sigset_t *set, uint64_t until_us);

#endif
