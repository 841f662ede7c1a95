/* kvclient: UDP client with per-attempt timeout, exponential backoff, a
 * total deadline and reqid matching. See kvclient.h for the contract. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the root CMakeLists defines it too */
#endif
#include "tools/kvclient/kvclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t kvclient__now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int kvclient__parse_addr(const char *s, struct sockaddr_in *out)
{
	char host[INET_ADDRSTRLEN];
	const char *colon = strrchr(s, ':');
	unsigned long port;
	char *end;
	size_t hl;

	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - s);
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port == 0 || port > 65535)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
		return -EINVAL;
	return 0;
}

int kvclient__open(struct kvclient *c, const struct kvclient_opts *opts)
{
	uint32_t nonce;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (opts->timeout_ms == 0 || opts->deadline_ms < opts->timeout_ms)
		return -EINVAL;
	c->opts = *opts;
	if (c->opts.max_timeout_ms == 0)
		c->opts.max_timeout_ms = opts->timeout_ms * 8;
	if (c->opts.max_timeout_ms < c->opts.timeout_ms)
		c->opts.max_timeout_ms = c->opts.timeout_ms;

	/* The nonce only has to differ between runs that may share a local
	 * port; a weak fallback is fine if getrandom is unavailable. */
	if (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce))
		nonce = (uint32_t)kvclient__now_us() ^ ((uint32_t)getpid() << 16);
	snprintf(c->nonce, sizeof(c->nonce), "%08" PRIx32, nonce);

	/* Not connect()ed: a connected UDP socket silently drops datagrams
	 * from any other source, and we want to count those (a guest that
	 * answers from the wrong port is a bug worth seeing). */
	c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	return 0;
}

void kvclient__close(struct kvclient *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Send errors that can happen while the path to the guest is being
 * rebuilt (failover, tap re-created, ARP not yet resolved): the attempt
 * counts as lost and the retry logic carries on. Anything else (EBADF,
 * EINVAL, ...) is a bug and ends the call. */
static bool kvclient__transient_send_error(int err)
{
	return err == ENETUNREACH || err == EHOSTUNREACH || err == ECONNREFUSED ||
	       err == ENOBUFS || err == EAGAIN || err == EPERM ||
	       err == EHOSTDOWN || err == ENETDOWN;
}

static int kvclient__send(struct kvclient *c, const void *buf, size_t len)
{
	ssize_t n = sendto(c->fd, buf, len, MSG_NOSIGNAL,
			   (const struct sockaddr *)&c->opts.server,
			   sizeof(c->opts.server));

	c->stats.attempts++;
	if (n == (ssize_t)len)
		return 0;
	if (n >= 0)
		return -EMSGSIZE;
	c->stats.send_errors++;
	return kvclient__transient_send_error(errno) ? 0 : -errno;
}

/* Wait until the socket is readable or the monotonic clock reaches
 * until_us. Returns 1 readable, 0 timeout, negative errno. */
static int kvclient__wait(struct kvclient *c, uint64_t until_us)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	uint64_t now = kvclient__now_us();
	struct timespec ts;
	int r;

	if (now >= until_us)
		return 0;
	ts.tv_sec = (time_t)((until_us - now) / 1000000u);
	ts.tv_nsec = (long)((until_us - now) % 1000000u) * 1000;
	r = ppoll(&pfd, 1, &ts, NULL);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	return r > 0;
}

/* Receive one datagram without blocking. Returns its length, -EAGAIN when
 * none is queued, or another negative errno. Datagrams from another
 * address are counted and reported as length -EXDEV so the caller skips
 * them. */
static ssize_t kvclient__recv(struct kvclient *c, char *buf, size_t size)
{
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	ssize_t n;

	n = recvfrom(c->fd, buf, size - 1, MSG_DONTWAIT | MSG_TRUNC,
		     (struct sockaddr *)&from, &fl);
	if (n < 0) {
		/* ICMP errors can surface here on some stacks; like a lost
		 * answer, they just mean "keep waiting, then retry". */
		if (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == ECONNREFUSED || errno == EINTR)
			return -EAGAIN;
		return -errno;
	}
	if (fl != sizeof(from) || from.sin_family != AF_INET ||
	    from.sin_addr.s_addr != c->opts.server.sin_addr.s_addr ||
	    from.sin_port != c->opts.server.sin_port) {
		c->stats.foreign++;
		return -EXDEV;
	}
	if ((size_t)n >= size) /* truncated: longer than any valid answer */
		n = (ssize_t)size - 1;
	buf[n] = '\0';
	return n;
}

static void kvclient__note_discarded(struct kvclient *c, const char *buf,
				     size_t len)
{
	size_t i, m = len < sizeof(c->last_discarded) - 1 ?
			      len : sizeof(c->last_discarded) - 1;

	/* Keep it printable: it ends up in an error message. */
	for (i = 0; i < m; i++) {
		char ch = buf[i];

		c->last_discarded[i] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
	}
	c->last_discarded[m] = '\0';
}

/* The wait for attempt k: timeout << k, capped. Computed by doubling so
 * a long retry series cannot overflow the shift. */
static uint64_t kvclient__attempt_wait_us(const struct kvclient *c,
					  unsigned attempt)
{
	uint64_t w = c->opts.timeout_ms, cap = c->opts.max_timeout_ms;

	while (attempt-- > 0 && w < cap)
		w *= 2;
	return (w < cap ? w : cap) * 1000u;
}

enum kvclient_match {
	KVCLIENT_MATCH_CURRENT, /* an attempt of the current request */
	KVCLIENT_MATCH_STALE,   /* one of our earlier requests */
	KVCLIENT_MATCH_OTHER,   /* not ours at all ("-", another nonce) */
};

/* reqid = "<nonce>.<seq hex>.<attempt decimal>". */
static enum kvclient_match kvclient__match(const struct kvclient *c,
					   const char *reqid, unsigned attempt,
					   unsigned *which)
{
	size_t nl = strlen(c->nonce);
	const char *p;
	char *end;
	unsigned long long seq;
	unsigned long att;

	if (strncmp(reqid, c->nonce, nl) != 0 || reqid[nl] != '.')
		return KVCLIENT_MATCH_OTHER;
	p = reqid + nl + 1;
	if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
		return KVCLIENT_MATCH_OTHER;
	errno = 0;
	seq = strtoull(p, &end, 16);
	if (errno || *end != '.' || end[1] < '0' || end[1] > '9')
		return KVCLIENT_MATCH_OTHER;
	if (seq < c->seq)
		return KVCLIENT_MATCH_STALE;
	if (seq > c->seq)
		return KVCLIENT_MATCH_OTHER; /* never sent: not an answer to us */
	att = strtoul(end + 1, &end, 10);
	if (errno || *end || att > attempt)
		return KVCLIENT_MATCH_OTHER;
	*which = (unsigned)att;
	return KVCLIENT_MATCH_CURRENT;
}

int kvclient__call(struct kvclient *c, enum kvproto_op op, const char *key,
		   const char *value, struct kvproto_answer *ans)
{
	char req[KVPROTO_DGRAM_MAX], buf[KVPROTO_DGRAM_MAX];
	char reqid[KVPROTO_REQID_MAX + 1];
	uint64_t start, deadline;
	unsigned attempt;
	size_t len;
	int r;

	/* Validate once up front so a bad key fails fast, not after retries. */
	r = kvproto__format_request(req, sizeof(req), &len, op, "x", key, value);
	if (r < 0)
		return r;

	c->seq++;
	c->stats.requests++;
	start = kvclient__now_us();
	deadline = start + (uint64_t)c->opts.deadline_ms * 1000u;

	for (attempt = 0;; attempt++) {
		uint64_t now = kvclient__now_us(), until;

		if (attempt > 0 && now >= deadline)
			break;
		snprintf(reqid, sizeof(reqid), "%s.%" PRIx64 ".%u", c->nonce,
			 c->seq, attempt);
		r = kvproto__format_request(req, sizeof(req), &len, op, reqid,
					    key, value);
		if (r < 0)
			return r;
		if (attempt > 0)
			c->stats.retries++;
		r = kvclient__send(c, req, len);
		if (r < 0)
			return r;
		until = now + kvclient__attempt_wait_us(c, attempt);
		if (until > deadline)
			until = deadline;

		for (;;) {
			unsigned which = 0;
			ssize_t n;

			r = kvclient__wait(c, until);
			if (r < 0)
				return r;
			if (r == 0)
				break; /* this attempt timed out */
			/* Drain everything queued before waiting again. */
			while ((n = kvclient__recv(c, buf, sizeof(buf))) != -EAGAIN) {
				if (n == -EXDEV)
					continue;
				if (n < 0)
					return (int)n;
				if (kvproto__parse_answer(buf, (size_t)n, ans) < 0) {
					c->stats.malformed++;
					kvclient__note_discarded(c, buf, (size_t)n);
					continue;
				}
				switch (kvclient__match(c, ans->reqid, attempt,
							&which)) {
				case KVCLIENT_MATCH_STALE:
					c->stats.stale_answers++;
					continue;
				case KVCLIENT_MATCH_OTHER:
					c->stats.unmatched++;
					kvclient__note_discarded(c, buf, (size_t)n);
					continue;
				case KVCLIENT_MATCH_CURRENT:
					break;
				}
				if (which < attempt)
					c->stats.late_answers++;
				c->last_latency_us = kvclient__now_us() - start;
				c->last_attempts = attempt + 1;
				return kvproto__answer_fits(op, ans->kind) ?
					       0 : -EPROTO;
			}
		}
	}
	c->stats.gave_up++;
	c->last_attempts = attempt;
	return -ETIMEDOUT;
}

int kvclient__raw(struct kvclient *c, const char *text, size_t text_len,
		  char *answer, size_t size, size_t *len)
{
	uint64_t start = kvclient__now_us();
	uint64_t deadline = start + (uint64_t)c->opts.deadline_ms * 1000u;
	unsigned attempt;
	int r;

	if (size < 2)
		return -EINVAL;
	c->stats.requests++;
	for (attempt = 0;; attempt++) {
		uint64_t now = kvclient__now_us(), until;

		if (attempt > 0 && now >= deadline)
			break;
		if (attempt > 0)
			c->stats.retries++;
		r = kvclient__send(c, text, text_len);
		if (r < 0)
			return r;
		until = now + kvclient__attempt_wait_us(c, attempt);
		if (until > deadline)
			until = deadline;
		for (;;) {
			ssize_t n;

			r = kvclient__wait(c, until);
			if (r < 0)
				return r;
			if (r == 0)
				break;
			n = kvclient__recv(c, answer, size);
			if (n == -EAGAIN || n == -EXDEV)
				continue;
			if (n < 0)
				return (int)n;
			*len = (size_t)n;
			c->last_latency_us = kvclient__now_us() - start;
			c->last_attempts = attempt + 1;
			return 0;
		}
	}
	c->stats.gave_up++;
	c->last_attempts = attempt;
	return -ETIMEDOUT;
}

static int kvclient__check_err(const struct kvproto_answer *ans, char *reason)
{
	if (ans->kind != KVPROTO_ANS_ERR)
		return 0;
	if (reason)
		snprintf(reason, KVPROTO_REASON_MAX + 1, "%s", ans->reason);
	return -EREMOTEIO;
}

int kvclient__put(struct kvclient *c, const char *key, const char *value,
		  char *reason)
{
	struct kvproto_answer ans;
	int r = kvclient__call(c, KVPROTO_PUT, key, value, &ans);

	return r < 0 ? r : kvclient__check_err(&ans, reason);
}

int kvclient__get(struct kvclient *c, const char *key, int *found,
		  char *value, char *reason)
{
	struct kvproto_answer ans;
	int r = kvclient__call(c, KVPROTO_GET, key, NULL, &ans);

	if (r < 0)
		return r;
	r = kvclient__check_err(&ans, reason);
	if (r < 0)
		return r;
	*found = ans.kind == KVPROTO_ANS_VAL;
	if (*found)
		memcpy(value, ans.value, sizeof(ans.value));
	return 0;
}

int kvclient__time(struct kvclient *c, uint64_t *tsc, uint64_t *ns,
		   char *reason)
{
	struct kvproto_answer ans;
	int r = kvclient__call(c, KVPROTO_TIME, NULL, NULL, &ans);

	if (r < 0)
		return r;
	r = kvclient__check_err(&ans, reason);
	if (r < 0)
		return r;
	*tsc = ans.tsc;
	*ns = ans.ns;
	return 0;
}

int kvclient__stat(struct kvclient *c, struct kvproto_stat *st, char *reason)
{
	struct kvproto_answer ans;
	int r = kvclient__call(c, KVPROTO_STAT, NULL, NULL, &ans);

	if (r < 0)
		return r;
	r = kvclient__check_err(&ans, reason);
	if (r < 0)
		return r;
	*st = ans.stat;
	return 0;
}
