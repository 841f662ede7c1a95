/*
 * resp_proto.c - see resp_proto.h. The commands: PING, ECHO, SET, GET,
 * DEL, EXISTS, INCR, INCRBY, DECR, DECRBY, MSET, MGET, DBSIZE, FLUSHALL,
 * FLUSHDB, SELECT 0, CONFIG GET, INFO, COMMAND, QUIT. A write is answered
 * only after the store says it is durable (MSET's pairs and DEL's keys in
 * one batch each). SET's options are answered with an error.
 */
#include "workload/resp_proto.h"

#include <stdarg.h>

#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"

struct args {
	int n;
	const uint8_t *v[RESP_MAX_ARGS];
	size_t len[RESP_MAX_ARGS];
};

/* ---- answers ---------------------------------------------------------------- */

static void put(struct resp_out *o, const void *p, size_t n)
{
	if (n > o->cap - o->len)
		n = o->cap - o->len;	/* cannot happen with RESP_MIN_ROOM; never overflows */
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

/* A literal answer, its length counted by the compiler. */
#define lit(o, s) put((o), (s), sizeof(s) - 1)

static void putf(struct resp_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct resp_out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf((char *)o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
}

static void bulk(struct resp_out *o, const void *p, size_t n)
{
	putf(o, "$%zu\r\n", n);
	put(o, p, n);
	lit(o, "\r\n");
}

static enum resp_step error(struct resp_out *o, const char *msg)
{
	putf(o, "-ERR %s\r\n", msg);
	return RESP_ANSWERED;
}

/* ---- parsing ---------------------------------------------------------------- */

/* The CRLF-terminated line at in[at..len): its end (the '\r'), or -1 if
 * there is no whole line yet. */
static long line_end(const uint8_t *in, size_t len, size_t at)
{
	for (size_t i = at; i + 1 < len; i++)
		if (in[i] == '\r' && in[i + 1] == '\n')
			return (long)i;
	return -1;
}

/* A decimal in p[0..n) (optional '-'), within [min, max]; 0 or -EINVAL. */
static int number(const uint8_t *p, size_t n, long long min, long long max, long long *v)
{
	bool neg = n && p[0] == '-';
	size_t i = neg;
	unsigned long long x = 0;
	if (i == n || n - i > 19)
		return -EINVAL;
	for (; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EINVAL;
		x = x * 10 + (unsigned)(p[i] - '0');
	}
	if (x > 9223372036854775807ull + neg)
		return -EINVAL;
	long long s = neg ? (long long)(0 - x) : (long long)x;
	if (s < min || s > max)
		return -EINVAL;
	*v = s;
	return 0;
}

enum parse { P_OK, P_MORE, P_BAD };

/* *N\r\n then N times $L\r\n<L bytes>\r\n. */
static enum parse multibulk(const uint8_t *in, size_t len, size_t *used, struct args *a, const char **why)
{
	long e = line_end(in, len, 1);
	long long n, l;
	if (e < 0)
		return len > 32 ? (*why = "invalid multibulk length", P_BAD) : P_MORE;
	if (number(in + 1, (size_t)e - 1, 0, RESP_MAX_ARGS, &n)) {
		*why = "invalid multibulk length";
		return P_BAD;
	}
	size_t at = (size_t)e + 2;
	a->n = (int)n;
	for (int i = 0; i < a->n; i++) {
		if (at >= len)
			return P_MORE;
		if (in[at] != '$') {
			*why = "expected '$'";
			return P_BAD;
		}
		e = line_end(in, len, at + 1);
		if (e < 0)
			return len - at > 32 ? (*why = "invalid bulk length", P_BAD) : P_MORE;
		if (number(in + at + 1, (size_t)e - at - 1, 0, RESP_MAX_BULK, &l)) {
			*why = "invalid bulk length";
			return P_BAD;
		}
		at = (size_t)e + 2;
		if (len - at < (size_t)l + 2)
			return P_MORE;
		if (in[at + (size_t)l] != '\r' || in[at + (size_t)l + 1] != '\n') {
			*why = "bulk not followed by CRLF";
			return P_BAD;
		}
		a->v[i] = in + at;
		a->len[i] = (size_t)l;
		at += (size_t)l + 2;
	}
	*used = at;
	return P_OK;
}

/* A line of words split on spaces, ended by \n (a \r before it dropped). */
static enum parse inl(const uint8_t *in, size_t len, size_t *used, struct args *a, const char **why)
{
	size_t end = 0;
	while (end < len && in[end] != '\n')
		end++;
	if (end == len)
		return len > RESP_MAX_INLINE ? (*why = "too big inline request", P_BAD) : P_MORE;
	*used = end + 1;
	if (end && in[end - 1] == '\r')
		end--;
	a->n = 0;
	for (size_t i = 0; i < end;) {
		while (i < end && (in[i] == ' ' || in[i] == '\t'))
			i++;
		if (i == end)
			break;
		size_t s = i;
		while (i < end && in[i] != ' ' && in[i] != '\t')
			i++;
		if (a->n == RESP_MAX_ARGS) {
			*why = "too many arguments";
			return P_BAD;
		}
		a->v[a->n] = in + s;
		a->len[a->n++] = i - s;
	}
	return P_OK;
}

/* ---- commands ----------------------------------------------------------------- */

static bool is(const struct args *a, int i, const char *word)
{
	size_t n = strlen(word);
	if (a->len[i] != n)
		return false;
	for (size_t k = 0; k < n; k++) {
		uint8_t c = a->v[i][k];
		if ((c >= 'a' && c <= 'z' ? c - 32 : c) != (uint8_t)word[k])
			return false;
	}
	return true;
}

static enum resp_step arity(struct resp_out *o, const struct args *a)
{
	putf(o, "-ERR wrong number of arguments for '%.*s' command\r\n", (int)a->len[0], (const char *)a->v[0]);
	return RESP_ANSWERED;
}

static enum resp_step stored(struct resp_out *o, const char *why)
{
	if (!why)
		return RESP_ANSWERED;
	putf(o, "-ERR %s\r\n", why);	/* written nothing that was acknowledged */
	return RESP_ANSWERED;
}

/* INCR and friends: the value as a 64-bit integer plus by, written back. */
static enum resp_step incr(struct resp_out *o, const struct resp_store *st, const struct args *a, long long by)
{
	const char *val;
	size_t vl;
	long long v = 0;
	if (st->get((const char *)a->v[1], a->len[1], &val, &vl) == 0 &&
	    number((const uint8_t *)val, vl, -9223372036854775807ll - 1, 9223372036854775807ll, &v))
		return error(o, "value is not an integer or out of range");
	if ((by > 0 && v > 9223372036854775807ll - by) || (by < 0 && v < -9223372036854775807ll - 1 - by))
		return error(o, "increment or decrement would overflow");
	v += by;
	char buf[24];
	int n = snprintf(buf, sizeof(buf), "%lld", v);
	const char *why = st->set((const char *)a->v[1], a->len[1], buf, (size_t)n);
	if (why)
		return stored(o, why);
	putf(o, ":%lld\r\n", v);
	return RESP_ANSWERED;
}

static enum resp_step command(struct resp_out *o, const struct resp_store *st, const struct args *a)
{
	const char *val;
	size_t vl;
	long long n;

	if (is(a, 0, "PING")) {
		if (a->n > 2)
			return arity(o, a);
		if (a->n == 2)
			bulk(o, a->v[1], a->len[1]);
		else
			lit(o, "+PONG\r\n");
		return RESP_ANSWERED;
	}
	if (is(a, 0, "ECHO")) {
		if (a->n != 2)
			return arity(o, a);
		bulk(o, a->v[1], a->len[1]);
		return RESP_ANSWERED;
	}
	if (is(a, 0, "SET")) {
		if (a->n < 3)
			return arity(o, a);
		if (a->n > 3)
			return error(o, "SET options (EX, PX, NX, XX, KEEPTTL, GET) are not supported");
		const char *why = st->set((const char *)a->v[1], a->len[1], (const char *)a->v[2], a->len[2]);
		if (why)
			return stored(o, why);
		lit(o, "+OK\r\n");
		return RESP_ANSWERED;
	}
	if (is(a, 0, "GET")) {
		if (a->n != 2)
			return arity(o, a);
		if (st->get((const char *)a->v[1], a->len[1], &val, &vl) == 0)
			bulk(o, val, vl);
		else
			lit(o, "$-1\r\n");
		return RESP_ANSWERED;
	}
	if (is(a, 0, "EXISTS")) {
		if (a->n < 2)
			return arity(o, a);
		long long c = 0;
		for (int i = 1; i < a->n; i++)
			c += st->get((const char *)a->v[i], a->len[i], &val, &vl) == 0;
		putf(o, ":%lld\r\n", c);
		return RESP_ANSWERED;
	}
	if (is(a, 0, "INCR") || is(a, 0, "DECR")) {
		if (a->n != 2)
			return arity(o, a);
		return incr(o, st, a, is(a, 0, "INCR") ? 1 : -1);
	}
	if (is(a, 0, "INCRBY") || is(a, 0, "DECRBY")) {
		if (a->n != 3)
			return arity(o, a);
		if (number(a->v[2], a->len[2], -9223372036854775807ll, 9223372036854775807ll, &n))
			return error(o, "value is not an integer or out of range");
		return incr(o, st, a, is(a, 0, "INCRBY") ? n : -n);
	}
	if (is(a, 0, "MSET")) {
		if (a->n < 3 || a->n % 2 == 0)
			return arity(o, a);
		/* All pairs in one record batch: durable together, or none
		 * acknowledged (Redis's MSET is atomic too). */
		struct kvlog_entry e[KVLOG_BATCH_MAX];
		size_t n = (size_t)(a->n - 1) / 2;
		for (size_t i = 0; i < n; i++)
			e[i] = (struct kvlog_entry){ (const char *)a->v[1 + 2 * i], a->len[1 + 2 * i],
						     (const char *)a->v[2 + 2 * i], a->len[2 + 2 * i], KVLOG_PUT };
		const char *why = st->mset(n, e);
		if (why)
			return stored(o, why);
		lit(o, "+OK\r\n");
		return RESP_ANSWERED;
	}
	if (is(a, 0, "MGET")) {
		if (a->n < 2)
			return arity(o, a);
		putf(o, "*%d\r\n", a->n - 1);
		for (int i = 1; i < a->n; i++) {
			if (st->get((const char *)a->v[i], a->len[i], &val, &vl) == 0)
				bulk(o, val, vl);
			else
				lit(o, "$-1\r\n");
		}
		return RESP_ANSWERED;
	}
	if (is(a, 0, "DBSIZE")) {
		if (a->n != 1)
			return arity(o, a);
		putf(o, ":%llu\r\n", (unsigned long long)st->count());
		return RESP_ANSWERED;
	}
	if (is(a, 0, "SELECT")) {
		if (a->n != 2)
			return arity(o, a);
		if (number(a->v[1], a->len[1], 0, 0, &n))
			return error(o, "DB index is out of range (only 0)");
		lit(o, "+OK\r\n");
		return RESP_ANSWERED;
	}
	if (is(a, 0, "CONFIG")) {
		/* redis-benchmark asks for "save" and "appendonly" at start. */
		if (a->n != 3 || !is(a, 1, "GET"))
			return error(o, "only CONFIG GET <parameter> is supported");
		if (is(a, 2, "SAVE"))
			lit(o, "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
		else if (is(a, 2, "APPENDONLY"))
			lit(o, "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n");
		else
			lit(o, "*0\r\n");
		return RESP_ANSWERED;
	}
	if (is(a, 0, "INFO")) {
		char info[256];
		int l = snprintf(info, sizeof(info),
				 "# Server\r\nredis_version:7.0.0-ftvm\r\nredis_mode:standalone\r\n"
				 "ftvm_guest:kv\r\n# Keyspace\r\ndb0:keys=%llu,expires=0\r\n",
				 (unsigned long long)st->count());
		bulk(o, info, (size_t)l);
		return RESP_ANSWERED;
	}
	if (is(a, 0, "COMMAND")) {
		lit(o, "*0\r\n");	/* redis-cli does without the command table */
		return RESP_ANSWERED;
	}
	if (is(a, 0, "QUIT")) {
		lit(o, "+OK\r\n");
		return RESP_CLOSE;
	}
	if (is(a, 0, "DEL")) {
		if (a->n < 2)
			return arity(o, a);
		struct kvlog_entry e[RESP_MAX_ARGS - 1];
		size_t n = (size_t)(a->n - 1);
		for (size_t i = 0; i < n; i++)
			e[i] = (struct kvlog_entry){ (const char *)a->v[1 + i], a->len[1 + i], "", 0, KVLOG_DEL };
		uint64_t removed;
		const char *why = st->del(n, e, &removed);
		if (why)
			return stored(o, why);
		putf(o, ":%llu\r\n", (unsigned long long)removed);
		return RESP_ANSWERED;
	}
	if (is(a, 0, "FLUSHALL") || is(a, 0, "FLUSHDB")) {
		/* ASYNC and SYNC are the same here: done before the answer. */
		if (a->n > 2 || (a->n == 2 && !is(a, 1, "ASYNC") && !is(a, 1, "SYNC")))
			return error(o, "syntax error");
		const char *why = st->flushall();
		if (why)
			return stored(o, why);
		lit(o, "+OK\r\n");
		return RESP_ANSWERED;
	}
	putf(o, "-ERR unknown command '%.*s'\r\n", (int)(a->len[0] < 64 ? a->len[0] : 64),
	     (const char *)a->v[0]);
	return RESP_ANSWERED;
}

enum resp_step resp_step(const uint8_t *in, size_t len, size_t *used, struct resp_out *out,
			 const struct resp_store *st)
{
	struct args a;
	const char *why = NULL;
	enum parse p;

	*used = 0;
	if (!len)
		return RESP_NEED_MORE;
	p = in[0] == '*' ? multibulk(in, len, used, &a, &why) : inl(in, len, used, &a, &why);
	if (p == P_MORE)
		return RESP_NEED_MORE;
	if (p == P_BAD) {
		putf(out, "-ERR Protocol error: %s\r\n", why);
		*used = len;
		return RESP_CLOSE;
	}
	if (a.n == 0)
		return RESP_ANSWERED;	/* an empty line or *0: nothing to answer */
	return command(out, st, &a);
}
