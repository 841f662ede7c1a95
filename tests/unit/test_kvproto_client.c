/* Unit test: kvclient's retry and answer-matching rules, against a scripted
 * UDP server thread on 127.0.0.1 (tools/kvclient/kvclient.c). Exits 77
 * (CTest skip) if no loopback UDP socket can be made. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the root CMakeLists defines it too */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tools/kvclient/kvclient.h"

static int failures;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                            \
			failures++;                                          \
		}                                                            \
	} while (0)

/* One scripted server: the thread runs `script` on the bound socket. */
struct server {
	int fd, other_fd; /* other_fd: a second port, to send "foreign" answers */
	struct sockaddr_in addr;
	void (*script)(struct server *s);
	int requests;     /* datagrams the script received */
};

struct req {
	char text[KVPROTO_DGRAM_MAX];
	char op[8], reqid[KVPROTO_REQID_MAX + 1];
	struct sockaddr_in from;
};

/* Receive one request within timeout_ms; 0 ok, -1 timeout. */
static int srv_recv(struct server *s, struct req *r, int timeout_ms)
{
	struct pollfd p = { .fd = s->fd, .events = POLLIN };
	socklen_t fl = sizeof(r->from);
	ssize_t n;

	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	n = recvfrom(s->fd, r->text, sizeof(r->text) - 1, 0,
		     (struct sockaddr *)&r->from, &fl);
	if (n < 0)
		return -1;
	r->text[n] = '\0';
	r->op[0] = r->reqid[0] = '\0';
	sscanf(r->text, "%7s %32s", r->op, r->reqid);
	s->requests++;
	return 0;
}

static void srv_send(int fd, const struct req *r, const char *fmt, ...)
{
	char buf[KVPROTO_DGRAM_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sendto(fd, buf, (size_t)n, 0, (const struct sockaddr *)&r->from,
	       sizeof(r->from));
}

static void *srv_thread(void *arg)
{
	struct server *s = arg;

	s->script(s);
	return NULL;
}

static void run(struct server *s, void (*script)(struct server *))
{
	s->script = script;
	s->requests = 0;
}

static void script_answer(struct server *s)
{
	struct req r;

	if (srv_recv(s, &r, 2000) < 0)
		return;
	if (!strcmp(r.op, "PUT"))
		srv_send(s->fd, &r, "OK %s\n", r.reqid);
	else if (!strcmp(r.op, "GET"))
		srv_send(s->fd, &r, "VAL %s v1", r.reqid);
	else if (!strcmp(r.op, "TIME"))
		srv_send(s->fd, &r, "TIME %s 100 200", r.reqid);
	else if (!strcmp(r.op, "STAT"))
		srv_send(s->fd, &r, "STAT %s entries=1 puts=2 gets=3 dirtied=4 tsc=5 ns=6 ap_tsc=7 "
			 "ap_iterations=8 tsc_order_errors=0",
			 r.reqid);
	else
		srv_send(s->fd, &r, "ERR - bad_command");
}

static void script_drop_first(struct server *s)
{
	struct req r;

	if (srv_recv(s, &r, 2000) < 0 || srv_recv(s, &r, 2000) < 0)
		return;
	srv_send(s->fd, &r, "OK %s", r.reqid);
}

/* Before the real answer: an answer to the previous request (stale),
 * garbage, an unmatched ERR, and a correct answer from another port. */
static void script_noise(struct server *s)
{
	char nonce[16];
	unsigned long long seq;
	struct req r;

	if (srv_recv(s, &r, 2000) < 0)
		return;
	if (sscanf(r.reqid, "%15[0-9a-f].%llx.", nonce, &seq) == 2 && seq > 0)
		srv_send(s->fd, &r, "NONE %s.%llx.0", nonce, seq - 1);
	srv_send(s->fd, &r, "garbage!!");
	srv_send(s->fd, &r, "ERR - bad_command");
	srv_send(s->other_fd, &r, "VAL %s from_elsewhere", r.reqid);
	usleep(20000);
	srv_send(s->fd, &r, "VAL %s right", r.reqid);
}

/* Answer only the first attempt, and only after the retry was sent. */
static void script_late(struct server *s)
{
	struct req first, second;

	if (srv_recv(s, &first, 2000) < 0 || srv_recv(s, &second, 2000) < 0)
		return;
	srv_send(s->fd, &first, "OK %s", first.reqid);
}

static void script_silent(struct server *s)
{
	struct req r;

	while (srv_recv(s, &r, 600) == 0)
		;
}

static void script_wrong_kind(struct server *s)
{
	struct req r;

	if (srv_recv(s, &r, 2000) == 0)
		srv_send(s->fd, &r, "OK %s", r.reqid);
}

static void script_err(struct server *s)
{
	struct req r;

	if (srv_recv(s, &r, 2000) == 0)
		srv_send(s->fd, &r, "ERR %s disk_full", r.reqid);
}

static void script_raw(struct server *s)
{
	struct req r;

	if (srv_recv(s, &r, 2000) == 0)
		srv_send(s->fd, &r, "ERR - bad_command\n");
}

static pthread_t start(struct server *s, void (*script)(struct server *))
{
	pthread_t t;

	run(s, script);
	if (pthread_create(&t, NULL, srv_thread, s) != 0) {
		fprintf(stderr, "pthread_create failed\n");
		exit(1);
	}
	return t;
}

static int bind_loopback(struct sockaddr_in *addr)
{
	socklen_t l = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)addr, sizeof(*addr)) < 0 ||
	    getsockname(fd, (struct sockaddr *)addr, &l) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(void)
{
	struct kvclient_opts o = { .timeout_ms = 50, .max_timeout_ms = 200,
				   .deadline_ms = 2000 };
	char reason[KVPROTO_REASON_MAX + 1], value[KVPROTO_TOKEN_MAX + 1];
	struct sockaddr_in other;
	struct kvproto_stat st;
	struct server s;
	struct kvclient c;
	uint64_t tsc, ns, t0, t1;
	pthread_t t;
	int found, r;

	s.fd = bind_loopback(&s.addr);
	s.other_fd = bind_loopback(&other);
	if (s.fd < 0 || s.other_fd < 0) {
		printf("test_kvproto_client: SKIP: no loopback UDP socket\n");
		return 77;
	}
	o.server = s.addr;
	CHECK(kvclient__open(&c, &o) == 0);

	/* Plain answers for every op. */
	t = start(&s, script_answer);
	CHECK(kvclient__put(&c, "k", "v", reason) == 0);
	pthread_join(t, NULL);
	t = start(&s, script_answer);
	CHECK(kvclient__get(&c, "k", &found, value, reason) == 0 && found &&
	      !strcmp(value, "v1"));
	pthread_join(t, NULL);
	t = start(&s, script_answer);
	CHECK(kvclient__time(&c, &tsc, &ns, reason) == 0 && tsc == 100 && ns == 200);
	pthread_join(t, NULL);
	t = start(&s, script_answer);
	CHECK(kvclient__stat(&c, &st, reason) == 0 && st.entries == 1 && st.ns == 6);
	pthread_join(t, NULL);
	CHECK(c.stats.retries == 0 && c.stats.requests == 4);

	/* A lost first attempt is retried. */
	t = start(&s, script_drop_first);
	CHECK(kvclient__put(&c, "k", "v", reason) == 0);
	pthread_join(t, NULL);
	CHECK(c.stats.retries == 1 && c.last_attempts == 2);

	/* Stale, malformed, unmatched and foreign datagrams are skipped. */
	t = start(&s, script_noise);
	CHECK(kvclient__get(&c, "k", &found, value, reason) == 0 && found &&
	      !strcmp(value, "right"));
	pthread_join(t, NULL);
	CHECK(c.stats.stale_answers == 1);
	CHECK(c.stats.malformed == 1);
	CHECK(c.stats.unmatched == 1);
	CHECK(c.stats.foreign == 1);
	CHECK(c.stats.retries == 1); /* no retry needed for this one */

	/* The drop_first retry's leftover: none; but an answer to attempt 0
	 * arriving after attempt 1 was sent is still accepted. */
	t = start(&s, script_late);
	CHECK(kvclient__put(&c, "k", "v", reason) == 0);
	pthread_join(t, NULL);
	CHECK(c.stats.late_answers == 1);

	/* Silence: give up at the deadline, with backed-off attempts:
	 * sends at 0, 50, 150, 350, 550, ..., 1950 ms -> 12 attempts. */
	t = start(&s, script_silent);
	t0 = kvclient__now_us();
	r = kvclient__put(&c, "k", "v", reason);
	t1 = kvclient__now_us();
	pthread_join(t, NULL);
	CHECK(r == -ETIMEDOUT);
	CHECK(t1 - t0 >= 2000000 && t1 - t0 < 2300000);
	CHECK(s.requests == 12);
	CHECK(c.stats.gave_up == 1);

	/* An answer of the wrong kind is a protocol error, not a retry. */
	t = start(&s, script_wrong_kind);
	CHECK(kvclient__get(&c, "k", &found, value, reason) == -EPROTO);
	pthread_join(t, NULL);

	t = start(&s, script_err);
	reason[0] = '\0';
	CHECK(kvclient__put(&c, "k", "v", reason) == -EREMOTEIO &&
	      !strcmp(reason, "disk_full"));
	pthread_join(t, NULL);

	/* Invalid arguments fail before anything is sent. */
	CHECK(kvclient__put(&c, "bad key", "v", reason) == -EINVAL);

	/* raw returns the first datagram verbatim. */
	{
		char ans[256];
		size_t len = 0;

		t = start(&s, script_raw);
		CHECK(kvclient__raw(&c, "HELLO", 5, ans, sizeof(ans), &len) == 0);
		pthread_join(t, NULL);
		CHECK(len == 18 && !strcmp(ans, "ERR - bad_command\n"));
	}

	{
		struct sockaddr_in a;

		CHECK(kvclient__parse_addr("10.0.0.10:7777", &a) == 0 &&
		      ntohs(a.sin_port) == 7777);
		CHECK(kvclient__parse_addr("10.0.0.10", &a) == -EINVAL);
		CHECK(kvclient__parse_addr("10.0.0.10:0", &a) == -EINVAL);
		CHECK(kvclient__parse_addr("10.0.0.10:65536", &a) == -EINVAL);
		CHECK(kvclient__parse_addr("10.0.0.10:+1", &a) == -EINVAL);
		CHECK(kvclient__parse_addr("host:1", &a) == -EINVAL);
		CHECK(kvclient__parse_addr(":1", &a) == -EINVAL);
	}

	kvclient__close(&c);
	close(s.fd);
	close(s.other_fd);
	if (failures) {
		fprintf(stderr, "test_kvproto_client: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_kvproto_client: ok\n");
	return 0;
}
