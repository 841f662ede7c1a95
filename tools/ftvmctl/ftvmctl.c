/* ftvmctl: run one monitor command against a running ftvm (docs/monitor.md).
 *
 *   ftvmctl SOCKET [--json] [--timeout SECONDS] COMMAND [ARG...]
 *   ftvmctl SOCKET migrate -d -k URI --wait
 *
 * Text mode: read the greeting line and the "(ftvm) " prompt, send the
 * command, print everything up to the next prompt; exit 1 if the answer
 * starts with "error: ". JSON mode: send "json" first, read its
 * {"return":{}} line, send the command, print its one answer line; exit 1
 * for an {"error":...} object. Exit 2 for usage errors and when the monitor
 * cannot be reached, times out, or breaks the protocol. A monitor that
 * closes the connection after `quit` has done what was asked: exit 0.
 *
 *   ftvmctl SOCKET --shell[=PREFIX] COMMAND [ARG...]
 *   ftvmctl SOCKET --events [--until STATE|EVENT[,...]] [--timeout SECONDS]
 *   ftvmctl --states
 *
 * --shell prints the answer's top-level members as shell assignments
 * (FTVM_STATE='peer-lost'), safe for eval. --events follows the monitor's
 * asynchronous events (docs/monitor.md, "Events"). The state names are
 * ft/ft_states.h's, the table the VMM itself uses.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the root CMakeLists defines it too */
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ft/ft_states.h"

#define EXIT_OK 0
#define EXIT_CMD_FAILED 1
#define EXIT_UNREACHABLE 2

#define PROMPT "(ftvm) "
#define PROMPT_LEN (sizeof(PROMPT) - 1)
#define GREETING "ftvm monitor "
#define LINE_MAX_BYTES 4095 /* monitor's limit for one command line */

static const char usage_text[] =
"usage: ftvmctl SOCKET [--json] [--timeout SECONDS] COMMAND [ARG...]\n"
"       ftvmctl SOCKET migrate -d -k URI --wait\n"
"       ftvmctl SOCKET --shell[=PREFIX] COMMAND [ARG...]\n"
"       ftvmctl SOCKET --events [--until STATE|EVENT[,...]] [--timeout SECONDS]\n"
"       ftvmctl --states\n"
"\n"
"Runs one command on the ftvm monitor listening on the unix socket SOCKET\n"
"(ftvm --monitor unix:SOCKET) and prints the answer: the text form, or with\n"
"--json the one JSON line. The command's words are joined by single spaces.\n"
"\n"
"  --json             use the monitor's JSON mode\n"
"  --timeout SECONDS  give up after this long in all (default 30; decimals ok;\n"
"                     with --wait none)\n"
"  --wait             after migrate: follow the sync (a bar on a terminal,\n"
"                     plain lines when piped) until protected (exit 0) or\n"
"                     protection fails (exit 1, with the reason)\n"
"  --shell[=PREFIX]   print the answer's top-level members as shell\n"
"                     assignments, PREFIX (default FTVM_) + the key in capitals:\n"
"                     FTVM_STATE='protected'; nested objects and arrays are left out\n"
"  --events           follow the monitor's events: the current `info migrate` first\n"
"                     (as a SNAPSHOT line), then one JSON line per event, until\n"
"                     the VMM ends (exit 0), or --timeout (exit 2)\n"
"  --until LIST       with --events: exit 0 at the first line whose state, or\n"
"                     event name (capitals), is in LIST (comma-separated);\n"
"                     exit 1 if the VMM ends first\n"
"  --states           list the protection states (name, role, meaning)\n"
"  -h, --help         this text\n"
"\n"
"Exit status: 0 success, 1 the command failed (error answer),\n"
"2 usage error or the monitor could not be reached.\n";

/* Connection state: the socket, the overall deadline, and what has been
 * received but not yet consumed. */
struct conn {
	int fd;
	struct timespec deadline; /* CLOCK_MONOTONIC */
	char *buf;
	size_t len, cap;
	bool eof;
};

static int64_t ms_left(const struct conn *c)
{
	struct timespec now;
	int64_t ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (int64_t)(c->deadline.tv_sec - now.tv_sec) * 1000 +
	     (c->deadline.tv_nsec - now.tv_nsec) / 1000000;
	return ms > 0 ? ms : 0;
}

static int wait_fd(struct conn *c, short events)
{
	struct pollfd pfd = { .fd = c->fd, .events = events };
	int64_t left;
	int r;

	for (;;) {
		left = ms_left(c);
		if (left == 0)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static int conn_open(struct conn *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t sl;
	int err = 0;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return -errno;
	if (connect(c->fd, (struct sockaddr *)&sa, sl) == 0)
		return 0;
	/* A unix socket whose backlog is full answers EAGAIN rather than
	 * EINPROGRESS; retry until the deadline instead of failing at once,
	 * since a busy monitor is not an unreachable one. */
	while (errno == EAGAIN || errno == EINPROGRESS) {
		socklen_t el = sizeof(err);

		if (errno == EINPROGRESS) {
			int r = wait_fd(c, POLLOUT);

			if (r < 0)
				return r;
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
				return -errno;
			return err ? -err : 0;
		}
		if (ms_left(c) == 0)
			return -ETIMEDOUT;
		usleep(10000);
		if (connect(c->fd, (struct sockaddr *)&sa, sl) == 0)
			return 0;
	}
	return -errno;
}

static int conn_send(struct conn *c, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL);

		if (n < 0) {
			int r;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			r = wait_fd(c, POLLOUT);
			if (r < 0)
				return r;
			continue;
		}
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read more bytes into the buffer. 0 on progress or EOF (c->eof set),
 * negative errno on failure or timeout. */
static int conn_fill(struct conn *c)
{
	ssize_t n;
	int r;

	if (c->len + 4096 + 1 > c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 8192;
		char *p = realloc(c->buf, nc);

		if (!p)
			return -ENOMEM;
		c->buf = p;
		c->cap = nc;
	}
	for (;;) {
		n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
		if (n > 0) {
			c->len += (size_t)n;
			c->buf[c->len] = '\0';
			return 0;
		}
		if (n == 0) {
			c->eof = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		/* A peer that closed after answering `quit` may reset the
		 * connection instead of a clean EOF. */
		if (errno == ECONNRESET) {
			c->eof = true;
			return 0;
		}
		if (errno != EAGAIN)
			return -errno;
		r = wait_fd(c, POLLIN);
		if (r < 0)
			return r;
	}
}

static void conn_consume(struct conn *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
	if (c->buf)
		c->buf[c->len] = '\0';
}

/* Wait for one full line; *line_len excludes the '\n'. -EPIPE if the peer
 * closed first (whatever partial line there is stays in the buffer). */
static int conn_read_line(struct conn *c, size_t *line_len)
{
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		int r;

		if (nl) {
			*line_len = (size_t)(nl - c->buf);
			return 0;
		}
		if (c->eof)
			return -EPIPE;
		r = conn_fill(c);
		if (r < 0)
			return r;
	}
}

/* Wait until the buffer holds an answer terminated by the prompt: the
 * prompt either alone (empty answer) or right after a '\n'. The prompt has
 * no newline, so "ends with the prompt" is the only way to see it; after
 * it the monitor sends nothing until our next line, so nothing can follow
 * it in the buffer. *answer_len is the length before the prompt. */
static int conn_read_until_prompt(struct conn *c, size_t *answer_len)
{
	for (;;) {
		int r;

		if (c->len >= PROMPT_LEN &&
		    !memcmp(c->buf + c->len - PROMPT_LEN, PROMPT, PROMPT_LEN) &&
		    (c->len == PROMPT_LEN || c->buf[c->len - PROMPT_LEN - 1] == '\n')) {
			*answer_len = c->len - PROMPT_LEN;
			return 0;
		}
		if (c->eof)
			return -EPIPE;
		r = conn_fill(c);
		if (r < 0)
			return r;
	}
}

static int fail_io(const char *sock, const char *what, int err)
{
	if (err == -ETIMEDOUT)
		fprintf(stderr, "ftvmctl: %s: timed out %s\n", sock, what);
	else if (err == -EPIPE)
		fprintf(stderr, "ftvmctl: %s: monitor closed the connection %s\n",
			sock, what);
	else
		fprintf(stderr, "ftvmctl: %s: %s: %s\n", sock, what, strerror(-err));
	return EXIT_UNREACHABLE;
}

/* The first member name of a JSON object line, to tell {"return":...}
 * from {"error":...} without a JSON library: both are produced by our own
 * monitor, and only the first key decides. Whitespace is tolerated. */
static const char *json_first_key(const char *s, size_t len, size_t *klen)
{
	size_t i = 0, start;

	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
		i++;
	if (i >= len || s[i++] != '{')
		return NULL;
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i >= len || s[i++] != '"')
		return NULL;
	start = i;
	while (i < len && s[i] != '"')
		i++;
	if (i >= len)
		return NULL;
	*klen = i - start;
	return s + start;
}

static bool key_is(const char *k, size_t kl, const char *word)
{
	return k && kl == strlen(word) && !memcmp(k, word, kl);
}

/* Is this command the one that makes the monitor go away? */
static bool is_quit(const char *cmd)
{
	return !strcmp(cmd, "quit");
}

/* With --wait the progress lines are the answer: the command's own
 * (successful) answer is not printed. */
static bool quiet;

static int run_text(struct conn *c, const char *sock, const char *cmd,
		    const char *line, size_t line_len)
{
	size_t n;
	int r;

	r = conn_send(c, line, line_len);
	if (r < 0)
		return is_quit(cmd) ? EXIT_OK : fail_io(sock, "sending the command", r);
	r = conn_read_until_prompt(c, &n);
	if (r == -EPIPE) {
		/* Whatever arrived before the close is the answer. */
		fwrite(c->buf, 1, c->len, stdout);
		if (c->len >= 7 && !memcmp(c->buf, "error: ", 7))
			return EXIT_CMD_FAILED;
		if (is_quit(cmd))
			return EXIT_OK;
		return fail_io(sock, "before answering", r);
	}
	if (r < 0)
		return fail_io(sock, "waiting for the answer", r);
	bool failed = n >= 7 && !memcmp(c->buf, "error: ", 7);
	if (!quiet || failed)
		fwrite(c->buf, 1, n, failed && quiet ? stderr : stdout);
	return failed ? EXIT_CMD_FAILED : EXIT_OK;
}

static int run_json(struct conn *c, const char *sock, const char *cmd,
		    const char *line, size_t line_len)
{
	const char *k;
	size_t n, kl = 0;
	int r;

	r = conn_send(c, "json\n", 5);
	if (r < 0)
		return fail_io(sock, "switching to JSON mode", r);
	r = conn_read_line(c, &n);
	if (r < 0)
		return fail_io(sock, "switching to JSON mode", r);
	k = json_first_key(c->buf, n, &kl);
	if (!key_is(k, kl, "return")) {
		fprintf(stderr, "ftvmctl: %s: 'json' was answered '%.*s'\n", sock,
			(int)n, c->buf);
		return EXIT_UNREACHABLE;
	}
	conn_consume(c, n + 1);

	r = conn_send(c, line, line_len);
	if (r < 0)
		return is_quit(cmd) ? EXIT_OK : fail_io(sock, "sending the command", r);
	r = conn_read_line(c, &n);
	if (r == -EPIPE && is_quit(cmd)) {
		/* Closed without (or with an unterminated) answer: quit did
		 * its job. Pass on what came. */
		if (c->len)
			printf("%.*s\n", (int)c->len, c->buf);
		return EXIT_OK;
	}
	if (r < 0)
		return fail_io(sock, "waiting for the answer", r);
	k = json_first_key(c->buf, n, &kl);
	if (!quiet || !key_is(k, kl, "return"))
		fprintf(quiet ? stderr : stdout, "%.*s\n", (int)n, c->buf);
	if (key_is(k, kl, "return"))
		return EXIT_OK;
	if (key_is(k, kl, "error"))
		return EXIT_CMD_FAILED;
	fprintf(stderr, "ftvmctl: %s: answer is not a JSON return or error object\n",
		sock);
	return EXIT_UNREACHABLE;
}

/* ---- migrate ... --wait: follow the sync until protected ---------------- */

/* The number after "KEY": in one of our monitor's JSON lines (no JSON
 * library: the monitor writes these lines itself, keys are unique). */
static bool json_num(const char *line, const char *key, double *out)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(line, pat);
	if (!p)
		return false;
	char *end;
	*out = strtod(p + strlen(pat), &end);
	return end != p + strlen(pat);
}

/* The string after "KEY": (escapes left as they are; our values are plain). */
static void json_str(const char *line, const char *key, char *buf, size_t len)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	const char *p = strstr(line, pat);
	buf[0] = '\0';
	if (!p)
		return;
	p += strlen(pat);
	size_t n = 0;
	while (p[n] && p[n] != '"' && n + 1 < len)
		n++;
	memcpy(buf, p, n);
	buf[n] = '\0';
}

static void human_bytes(double b, char *buf, size_t len)
{
	if (b >= (double)(1u << 30))
		snprintf(buf, len, "%.1f GiB", b / (double)(1u << 30));
	else
		snprintf(buf, len, "%.0f MiB", b / (double)(1u << 20));
}

/*
 * After `migrate`: asks `info migrate` every 200 ms until the primary is
 * protected (exit 0) or protection failed (exit 1, with the reason). On
 * a terminal one line is redrawn as a bar; piped, a plain line is printed
 * at each 10 % step and at every change of state.
 */
static int wait_protected(struct conn *c, const char *sock, bool in_json)
{
	bool tty = isatty(STDOUT_FILENO);
	char state[32], last_state[32] = "", err[256];
	int last_step = -1;
	size_t n;
	int r;

	if (!in_json) {
		conn_consume(c, c->len);
		if ((r = conn_send(c, "json\n", 5)) < 0 || (r = conn_read_line(c, &n)) < 0)
			return fail_io(sock, "switching to JSON mode", r);
		conn_consume(c, n + 1);
	} else {
		conn_consume(c, c->len);
	}
	for (;;) {
		if ((r = conn_send(c, "info migrate\n", 13)) < 0 || (r = conn_read_line(c, &n)) < 0)
			return fail_io(sock, "asking info migrate", r);
		c->buf[n] = '\0';
		double pct = 0, left = 0, rate = 0, eta = 0, ms = 0;
		json_str(c->buf, "state", state, sizeof(state));
		json_num(c->buf, "sync_percent", &pct);
		json_num(c->buf, "sync_remaining_bytes", &left);
		json_num(c->buf, "sync_gib_per_s", &rate);
		json_num(c->buf, "sync_eta_ms", &eta);
		json_num(c->buf, "sync_ms", &ms);
		json_str(c->buf, "last_error", err, sizeof(err));
		conn_consume(c, n + 1);

		bool done = !strcmp(state, "protected");
		bool failed = strcmp(state, "setup") && strcmp(state, "syncing") && !done;
		if (done)
			pct = 100;
		char lb[32];
		human_bytes(left, lb, sizeof(lb));
		if (tty) {
			char bar[41];
			int fill = (int)(pct * 40 / 100);
			for (int i = 0; i < 40; i++)
				bar[i] = i < fill ? '#' : '.';
			bar[40] = '\0';
			printf("\r%-9s [%s] %3.0f%%  %s left  %.2f GiB/s  ETA %.0f s   ", state, bar, pct, lb,
			       rate, eta / 1000);
			if (done || failed)
				printf("\n");
		} else if (strcmp(state, last_state) || (int)pct / 10 != last_step || done) {
			printf("%s %.0f%% %s left %.2f GiB/s eta %.0f s\n", state, pct, lb, rate, eta / 1000);
		}
		fflush(stdout);
		snprintf(last_state, sizeof(last_state), "%s", state);
		last_step = (int)pct / 10;
		if (done) {
			if (ms < 1000)
				printf("protected: synced in %.0f ms\n", ms);
			else
				printf("protected: synced in %.2f s\n", ms / 1000);
			return EXIT_OK;
		}
		if (failed) {
			fprintf(stderr, "ftvmctl: protection did not start: state %s%s%s\n", state,
				err[0] ? ": " : "", err);
			return EXIT_CMD_FAILED;
		}
		if (ms_left(c) == 0)
			return fail_io(sock, "waiting for protected", -ETIMEDOUT);
		usleep(200000);
	}
}

/* ---- the state table -------------------------------------------------- */

struct state_name {
	const char *name, *role, *what;
};
#define FT_STATE_ROW(e, name, role, what) { name, role, what },
static const struct state_name state_table[] = { FT_STATES(FT_STATE_ROW) };
#undef FT_STATE_ROW
#define NR_STATES (sizeof(state_table) / sizeof(state_table[0]))

static bool state_known(const char *name, size_t len)
{
	for (size_t i = 0; i < NR_STATES; i++)
		if (strlen(state_table[i].name) == len && !memcmp(state_table[i].name, name, len))
			return true;
	return false;
}

static int print_states(void)
{
	for (size_t i = 0; i < NR_STATES; i++)
		printf("%-14s %-10s %s\n", state_table[i].name, state_table[i].role, state_table[i].what);
	return EXIT_OK;
}

/* ---- --shell: the answer as shell assignments ---------------------------- */

static void put_utf8(char **o, unsigned cp)
{
	char *p = *o;
	if (cp < 0x80) {
		*p++ = (char)cp;
	} else if (cp < 0x800) {
		*p++ = (char)(0xc0 | cp >> 6);
		*p++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*p++ = (char)(0xe0 | cp >> 12);
		*p++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*p++ = (char)(0x80 | (cp & 0x3f));
	}
	*o = p;
}

/* A JSON string at *p (after its opening quote) decoded into out (room for
 * its length + 1: decoding never grows it); *p moves past the closing
 * quote. -1 on a malformed string. (\u escapes of surrogates are written as
 * U+FFFD: our monitor never writes them.) */
static int json_string(const char **p, char *out)
{
	const char *s = *p;
	while (*s && *s != '"') {
		if (*s != '\\') {
			*out++ = *s++;
			continue;
		}
		s++;
		switch (*s) {
		case '"': case '\\': case '/': *out++ = *s; break;
		case 'b': *out++ = '\b'; break;
		case 'f': *out++ = '\f'; break;
		case 'n': *out++ = '\n'; break;
		case 'r': *out++ = '\r'; break;
		case 't': *out++ = '\t'; break;
		case 'u': {
			unsigned cp = 0;
			for (int i = 1; i <= 4; i++) {
				char c = s[i];
				int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
					c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
				if (v < 0)
					return -1;
				cp = cp << 4 | (unsigned)v;
			}
			put_utf8(&out, cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : cp);
			s += 4;
			break;
		}
		default: return -1;
		}
		s++;
	}
	if (*s != '"')
		return -1;
	*out = '\0';
	*p = s + 1;
	return 0;
}

/* Skips the JSON object or array at *p (strings inside may hold brackets). */
static int json_skip(const char **p)
{
	const char *s = *p;
	int depth = 0;
	for (;;) {
		if (!*s)
			return -1;
		if (*s == '"') {
			s++;
			while (*s && *s != '"')
				s += *s == '\\' && s[1] ? 2 : 1;
			if (!*s)
				return -1;
		} else if (*s == '{' || *s == '[') {
			depth++;
		} else if (*s == '}' || *s == ']') {
			if (--depth == 0) {
				*p = s + 1;
				return 0;
			}
		}
		s++;
	}
}

static void shell_quote(const char *v)
{
	putchar('\'');
	for (; *v; v++) {
		if (*v == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*v);
	}
	putchar('\'');
}

/* {"return":{...}}: each member that is a string, number, true/false or
 * null as PREFIXKEY='value' (null: empty); keys upper-cased, anything but
 * [A-Za-z0-9_] becomes '_'. -1 if the line is not such an object. */
static int print_shell(const char *line, const char *prefix)
{
	const char *p = strstr(line, "{\"return\":{");
	size_t cap = strlen(line) + 1;
	char *key = malloc(cap), *val = malloc(cap);
	int ret = -1;

	if (!p || !key || !val)
		goto out;
	p += 11;
	while (*p == ' ')
		p++;
	while (*p && *p != '}') {
		if (*p != '"')
			goto out;
		p++;
		if (json_string(&p, key) < 0 || *p++ != ':')
			goto out;
		const char *v = p;
		if (*v == '"') {
			v++;
			if (json_string(&v, val) < 0)
				goto out;
		} else if (*v == '{' || *v == '[') {
			if (json_skip(&v) < 0)
				goto out;
			val[0] = '\0';
			key[0] = '\0';	/* left out */
		} else {
			size_t n = strcspn(v, ",}");
			memcpy(val, v, n);
			val[n] = '\0';
			if (!strcmp(val, "null"))
				val[0] = '\0';
			v += n;
		}
		if (key[0]) {
			fputs(prefix, stdout);
			for (char *k = key; *k; k++)
				putchar(*k >= 'a' && *k <= 'z' ? *k - 'a' + 'A' :
					(*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ? *k : '_');
			putchar('=');
			shell_quote(val);
			putchar('\n');
			if (!strcmp(key, "state") && !state_known(val, strlen(val)))
				fprintf(stderr, "ftvmctl: warning: state '%s' is not in this ftvmctl's "
					"table (ftvmctl --states): is it from another version?\n", val);
		}
		p = v;
		if (*p == ',')
			p++;
	}
	ret = *p == '}' ? 0 : -1;
out:
	free(key);
	free(val);
	return ret;
}

/* ---- --events ------------------------------------------------------------ */

/* Is the state (data.state) or the event name of this line in the list? */
static bool until_matches(const char *line, const char *list)
{
	char name[64], state[64];
	json_str(line, "event", name, sizeof(name));
	json_str(line, "state", state, sizeof(state));
	for (const char *w = list; *w;) {
		size_t n = strcspn(w, ",");
		if ((n && strlen(name) == n && !memcmp(name, w, n)) ||
		    (n && strlen(state) == n && !memcmp(state, w, n)))
			return true;
		w += n + (w[n] == ',');
	}
	return false;
}

/* Prints a line; with an until-list, 1 when it matched (stop), else 0. */
static int event_line(const char *line, size_t n, const char *until)
{
	printf("%.*s\n", (int)n, line);
	fflush(stdout);
	if (!until)
		return 0;
	char *copy = strndup(line, n);
	int hit = copy && until_matches(copy, until);
	free(copy);
	return hit;
}

static int follow_events(struct conn *c, const char *sock, const char *until)
{
	size_t n, kl = 0;
	const char *k;
	int r;

	if ((r = conn_send(c, "json\nevents\n", 12)) < 0)
		return fail_io(sock, "asking for events", r);
	for (int answers = 0; answers < 2;) {
		if ((r = conn_read_line(c, &n)) < 0)
			return fail_io(sock, "asking for events", r);
		k = json_first_key(c->buf, n, &kl);
		if (!key_is(k, kl, "return")) {
			fprintf(stderr, "ftvmctl: %s: events refused: %.*s\n", sock, (int)n, c->buf);
			return EXIT_CMD_FAILED;
		}
		answers++;
		conn_consume(c, n + 1);
	}
	/* Subscribed: the state now, then every change after it. */
	if ((r = conn_send(c, "info migrate\n", 13)) < 0)
		return fail_io(sock, "asking info migrate", r);
	bool snapshot = false;
	for (;;) {
		r = conn_read_line(c, &n);
		if (r == -EPIPE) {
			fprintf(stderr, "ftvmctl: %s: the VMM closed its monitor (it ended)\n", sock);
			return until ? EXIT_CMD_FAILED : EXIT_OK;
		}
		if (r < 0)
			return fail_io(sock, until ? "waiting for the state" : "following events", r);
		k = json_first_key(c->buf, n, &kl);
		int stop = 0;
		if (!snapshot && key_is(k, kl, "return")) {
			/* {"return":{...}} -> {"event":"SNAPSHOT","data":{...}} */
			snapshot = true;
			const char *obj = memchr(c->buf, ':', n);
			size_t len = n - (size_t)(obj + 1 - c->buf);
			char *line = malloc(len + 32);
			if (!line)
				return EXIT_UNREACHABLE;
			int m = snprintf(line, len + 32, "{\"event\":\"SNAPSHOT\",\"data\":%.*s", (int)len, obj + 1);
			stop = event_line(line, (size_t)m, until);
			free(line);
		} else if (key_is(k, kl, "event")) {
			stop = event_line(c->buf, n, until);
		}
		conn_consume(c, n + 1);
		if (stop)
			return EXIT_OK;
	}
}

static int parse_timeout(const char *s, struct timespec *out)
{
	struct timespec now;
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 86400 * 365.0)
		return -EINVAL;
	clock_gettime(CLOCK_MONOTONIC, &now);
	out->tv_sec = now.tv_sec + (time_t)v;
	out->tv_nsec = now.tv_nsec + (long)((v - (double)(time_t)v) * 1e9);
	if (out->tv_nsec >= 1000000000L) {
		out->tv_sec++;
		out->tv_nsec -= 1000000000L;
	}
	return 0;
}

static int usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "ftvmctl: ");
	fprintf(stderr, msg, arg);
	fprintf(stderr, "\nTry 'ftvmctl --help'.\n");
	return EXIT_UNREACHABLE;
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *timeout = NULL;
	struct conn c = { .fd = -1 };
	bool json = false, wait = false, events = false;
	const char *shell = NULL, *until = NULL;
	char *line = NULL;
	size_t line_len = 0, n;
	int i, r, ret;

	/* SOCKET comes first, but accept options before it too; options end
	 * at the command, whose arguments pass through untouched (a monitor
	 * argument may well start with "--"). */
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_text, stdout);
			return EXIT_OK;
		} else if (!strcmp(a, "--json")) {
			json = true;
		} else if (!strcmp(a, "--wait")) {
			wait = true;
		} else if (!strcmp(a, "--states")) {
			return print_states();
		} else if (!strcmp(a, "--events")) {
			events = true;
		} else if (!strcmp(a, "--until")) {
			if (++i == argc)
				return usage_error("%s", "--until needs a list of states or events");
			until = argv[i];
		} else if (!strcmp(a, "--shell")) {
			shell = "FTVM_";
		} else if (!strncmp(a, "--shell=", 8)) {
			shell = a + 8;
		} else if (!strcmp(a, "--timeout")) {
			if (++i == argc)
				return usage_error("%s", "--timeout needs SECONDS");
			timeout = argv[i];
		} else if (!strncmp(a, "--timeout=", 10)) {
			timeout = a + 10;
		} else if (!strcmp(a, "--")) {
			i++;
			if (!sock && i < argc)
				sock = argv[i++];
			break;
		} else if (a[0] == '-' && a[1] != '\0') {
			return usage_error("unknown option '%s'", a);
		} else if (!sock) {
			sock = a;
		} else {
			break;
		}
	}
	if (!sock)
		return usage_error("%s", "no SOCKET given");
	if (until && !events)
		return usage_error("%s", "--until goes with --events");
	if (until) {
		/* a state must be one of the table's: a typo would wait forever */
		for (const char *w = until; *w;) {
			size_t n = strcspn(w, ",");
			bool event = n && w[0] >= 'A' && w[0] <= 'Z';
			if (!n || (!event && !state_known(w, n)))
				return usage_error("--until: '%s' holds a name that is neither a state "
						   "(ftvmctl --states) nor an EVENT", until);
			w += n + (w[n] == ',');
		}
	}
	for (const char *q = shell; q && *q; q++)
		if (!((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_'))
			return usage_error("--shell=%s: a prefix of letters, digits and '_'", shell);
	if (events && (i < argc || shell || wait))
		return usage_error("%s", "--events takes no COMMAND (and no --shell or --wait)");
	if (!events && i >= argc)
		return usage_error("%s", "no COMMAND given");
	/* `migrate ... --wait`: the last word is ours, not the monitor's. */
	if (!strcmp(argv[i], "migrate") && argc - i > 1 && !strcmp(argv[argc - 1], "--wait")) {
		wait = true;
		argc--;
	}
	if (wait && strcmp(argv[i], "migrate"))
		return usage_error("%s", "--wait goes with migrate");
	/* A sync may take longer than a command: --wait has no deadline of
	 * its own unless one is given. */
	if (!timeout)
		timeout = wait || events ? "31536000" : "30";
	if (parse_timeout(timeout, &c.deadline) < 0)
		return usage_error("--timeout: '%s' is not a positive number of seconds",
				   timeout);

	/* Join the command words; a newline inside would smuggle in a second
	 * command, so refuse it. */
	if (events)
		i = argc;	/* no command words */
	for (int j = i; j < argc; j++)
		line_len += strlen(argv[j]) + 1;
	if (line_len > LINE_MAX_BYTES + 1)
		return usage_error("%s", "command line longer than 4095 bytes");
	line = malloc(line_len + 1);
	if (!line)
		return EXIT_UNREACHABLE;
	line[0] = '\0';
	for (int j = i; j < argc; j++) {
		if (strpbrk(argv[j], "\r\n")) {
			free(line);
			return usage_error("%s", "command words must not contain newlines");
		}
		if (j > i)
			strcat(line, " ");
		strcat(line, argv[j]);
	}
	strcat(line, "\n");

	r = conn_open(&c, sock);
	if (r < 0) {
		fprintf(stderr, "ftvmctl: cannot connect to %s: %s\n", sock,
			r == -ETIMEDOUT ? "timed out" : strerror(-r));
		ret = EXIT_UNREACHABLE;
		goto out;
	}

	/* Greeting, then the prompt (also in JSON mode: we only switch
	 * after it, with the "json" command). */
	r = conn_read_line(&c, &n);
	if (r < 0) {
		ret = fail_io(sock, "before the greeting", r);
		goto out;
	}
	if (n < strlen(GREETING) || memcmp(c.buf, GREETING, strlen(GREETING))) {
		fprintf(stderr, "ftvmctl: %s: not an ftvm monitor (greeting '%.*s')\n",
			sock, (int)(n > 80 ? 80 : n), c.buf);
		ret = EXIT_UNREACHABLE;
		goto out;
	}
	conn_consume(&c, n + 1);
	r = conn_read_until_prompt(&c, &n);
	if (r < 0) {
		ret = fail_io(sock, "waiting for the prompt", r);
		goto out;
	}
	conn_consume(&c, c.len);

	if (events) {
		ret = follow_events(&c, sock, until);
		goto out;
	}
	quiet = wait || shell;
	ret = json || shell ? run_json(&c, sock, argv[i], line, strlen(line)) :
			      run_text(&c, sock, argv[i], line, strlen(line));
	if (ret == EXIT_OK && shell && print_shell(c.buf, shell) < 0) {
		fprintf(stderr, "ftvmctl: %s: the answer is not a JSON object with members\n", sock);
		ret = EXIT_UNREACHABLE;
	}
	if (ret == EXIT_OK && wait)
		ret = wait_protected(&c, sock, json);
out:
	fflush(stdout);
	if (c.fd >= 0)
		close(c.fd);
	free(c.buf);
	free(line);
	return ret;
}
