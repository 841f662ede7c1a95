/*
 * transport/: framing and the TCP backend, over socketpairs (where the test
 * plays a hostile or broken peer by writing raw bytes) and real loopback
 * TCP.  Round trips of many sizes with iov gather, two concurrent senders,
 * short writes and EINTR, every single-byte corruption, every truncation,
 * another protocol version, an oversized or lying length, timeouts that
 * leave the connection usable, shutdown from another thread, and the error
 * messages a user would read.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transport/transport.h"

#include "tests/unit/check.h"

/* Fatal: the rest of a test cannot run without it. */
#define REQUIRE(cond, ...)                                                   \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: REQUIRE(%s) failed: ",       \
				__FILE__, __LINE__, #cond);                  \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
			exit(1);                                             \
		}                                                            \
	} while (0)

enum { T_HELLO, T_BEGIN, T_PAGES, T_STATE, T_COMMIT, T_COUNT };
static const char *const type_names[T_COUNT] = {
	[T_HELLO] = "HELLO", [T_BEGIN] = "BEGIN", [T_PAGES] = "PAGES",
	[T_STATE] = "STATE", [T_COMMIT] = "COMMIT",
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Deterministic content: byte i of a message tagged `tag`. */
static uint8_t pat(uint64_t tag, size_t i)
{
	uint64_t v = (tag + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0x2545F491u);

	return (uint8_t)(v >> 29 ^ i ^ i >> 11);
}

static void fill(uint8_t *p, size_t n, uint64_t tag)
{
	for (size_t i = 0; i < n; i++)
		p[i] = pat(tag, i);
}

/* Index of the first wrong byte, or n. */
static size_t first_bad(const uint8_t *p, size_t n, uint64_t tag)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pat(tag, i))
			return i;
	return n;
}

/* Two connected transports over a socketpair. */
static void xpair(struct xport **a, struct xport **b)
{
	int sv[2];

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0,
		"socketpair: %s", strerror(errno));
	REQUIRE(xport__from_fd(sv[0], "peer-a", a) == 0, "from_fd");
	REQUIRE(xport__from_fd(sv[1], "peer-b", b) == 0, "from_fd");
	xport__set_type_names(*a, type_names, T_COUNT);
	xport__set_type_names(*b, type_names, T_COUNT);
}

/* A receiving transport and the raw fd of its peer, for injection. */
static struct xport *xraw(int *raw)
{
	struct xport *x;
	int sv[2];

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0,
		"socketpair: %s", strerror(errno));
	REQUIRE(xport__from_fd(sv[0], "injector", &x) == 0, "from_fd");
	xport__set_type_names(x, type_names, T_COUNT);
	*raw = sv[1];
	return x;
}

static void write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t k = write(fd, b, n);

		REQUIRE(k > 0 || errno == EINTR, "write: %s", strerror(errno));
		if (k > 0) {
			b += k;
			n -= (size_t)k;
		}
	}
}

/* A whole framed message as bytes. */
static size_t frame(uint8_t *out, uint16_t type, uint64_t epoch,
		    const uint8_t *payload, uint32_t len)
{
	xport__encode_header(out, type, 0, epoch, len, crc32c(0, payload, len));
	memcpy(out + XPORT_HEADER_SIZE, payload, len);
	return XPORT_HEADER_SIZE + len;
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

static const size_t sizes[] = {
	0, 1, 2, 31, 32, 33, 255, 4095, 4096, 4097, 65535, 65536, 65537,
	262143, 262144, 262145, (1u << 20) + 7, (3u << 20) + 5, 8u << 20,
};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

struct sender {
	struct xport *x;
	int pieces;		/* iovecs per message (gather) */
	uint64_t tag0;
	int rc;
};

/* Sends every size, each split into `pieces` iovecs of uneven length. */
static void *send_sizes(void *arg)
{
	struct sender *s = arg;
	struct iovec *iov = calloc((size_t)s->pieces, sizeof(*iov));
	uint8_t *buf = malloc(8u << 20);

	REQUIRE(iov && buf, "oom");
	s->rc = 0;
	for (size_t k = 0; k < NSIZES && !s->rc; k++) {
		size_t n = sizes[k], off = 0;
		int cnt = 0;

		fill(buf, n, s->tag0 + k);
		/* Uneven pieces, some empty: the gather must not care. */
		for (int i = 0; i < s->pieces; i++) {
			size_t len = i == s->pieces - 1 ?
					     n - off :
					     (n - off) / (size_t)(2 + i % 3);

			iov[cnt].iov_base = buf + off;
			iov[cnt].iov_len = len;
			cnt++;
			off += len;
		}
		s->rc = xport__send(s->x, T_PAGES, (uint32_t)k, s->tag0 + k,
				    iov, cnt);
	}
	free(iov);
	free(buf);
	return NULL;
}

/* Returns false after a failure (the caller then unblocks its sender). */
static bool recv_sizes(struct xport *rx, uint64_t tag0, const char *what)
{
	bool ok = true;
	struct xport_msg m;
	char err[256] = "";

	xport_msg__init(&m);
	for (size_t k = 0; k < NSIZES; k++) {
		int rc = xport__recv(rx, &m, 10000, err, sizeof(err));

		CHECK_RC(rc, 0, err);
		if (rc) {
			ok = false;
			break;
		}
		CHECK(m.type == T_PAGES && m.flags == k && m.epoch == tag0 + k,
		      "%s: header fields type %u flags %u epoch %lu", what,
		      m.type, m.flags, (unsigned long)m.epoch);
		CHECK(m.payload.len == sizes[k], "%s: len %zu want %zu", what,
		      m.payload.len, sizes[k]);
		if (m.payload.len == sizes[k])
			CHECK(first_bad(m.payload.data, sizes[k], tag0 + k) ==
				      sizes[k],
			      "%s: size %zu: payload differs at %zu", what,
			      sizes[k],
			      first_bad(m.payload.data, sizes[k], tag0 + k));
	}
	xport_msg__free(&m);
	return ok;
}

static void roundtrip(struct xport *tx, struct xport *rx, int pieces,
		      const char *what)
{
	struct sender s = { .x = tx, .pieces = pieces, .tag0 = 1000 };
	pthread_t t;
	uint64_t rx_before = xport__bytes_received(rx);
	uint64_t tx_before = xport__bytes_sent(tx);
	uint64_t stamp = xport__last_rx_ns(rx);
	uint64_t want = 0;

	pthread_create(&t, NULL, send_sizes, &s);
	if (!recv_sizes(rx, s.tag0, what))
		xport__shutdown(tx);	/* a broken stream must not hang us */
	pthread_join(t, NULL);
	CHECK(s.rc == 0, "%s: send: %s", what, strerror(-s.rc));
	for (size_t k = 0; k < NSIZES; k++)
		want += XPORT_HEADER_SIZE + sizes[k];
	CHECK(xport__bytes_sent(tx) - tx_before == want,
	      "%s: bytes_sent %lu want %lu", what,
	      (unsigned long)(xport__bytes_sent(tx) - tx_before),
	      (unsigned long)want);
	CHECK(xport__bytes_received(rx) - rx_before == want,
	      "%s: bytes_received %lu want %lu", what,
	      (unsigned long)(xport__bytes_received(rx) - rx_before),
	      (unsigned long)want);
	CHECK(xport__last_rx_ns(rx) > stamp, "%s: last_rx_ns not advanced",
	      what);
}

static void test_roundtrip_socketpair(void)
{
	struct xport *a, *b;

	xpair(&a, &b);
	roundtrip(a, b, 1, "socketpair 1 iov");
	roundtrip(b, a, 5, "socketpair 5 iov, reverse");
	roundtrip(a, b, 40, "socketpair 40 iov (heap iov array)");
	roundtrip(a, b, 200, "socketpair 200 iov (> one sendmsg window)");
	xport__close(a);
	xport__close(b);
}

/* send_buf, and a message with no iov at all. */
static void test_send_buf(void)
{
	struct xport *a, *b;
	struct xport_msg m;
	char err[256] = "";
	int rc;

	xpair(&a, &b);
	xport_msg__init(&m);
	CHECK(xport__send_buf(a, T_HELLO, 7, 1, "hello", 5) == 0, "send_buf");
	CHECK(xport__send(a, T_COMMIT, 0, 2, NULL, 0) == 0, "send no iov");
	rc = xport__recv(b, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	CHECK(m.type == T_HELLO && m.flags == 7 && m.epoch == 1 &&
		      m.payload.len == 5 && !memcmp(m.payload.data, "hello", 5),
	      "hello message wrong");
	rc = xport__recv(b, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	CHECK(m.type == T_COMMIT && m.epoch == 2 && m.payload.len == 0,
	      "empty message wrong");
	CHECK(!strcmp(xport__peer(a), "peer-a") &&
		      !strcmp(xport__scheme(a), "tcp"),
	      "peer '%s' scheme '%s'", xport__peer(a), xport__scheme(a));
	CHECK(xport__poll_fd(a) >= 0, "poll_fd");
	xport_msg__free(&m);
	xport__close(a);
	xport__close(b);
}

/* ------------------------------------------------------------------------
 * Concurrent senders never interleave
 * ------------------------------------------------------------------------ */

#define CONC_MSGS 300

struct conc {
	struct xport *x;
	uint16_t id;
	int rc;
};

static void *conc_send(void *arg)
{
	struct conc *c = arg;
	uint8_t *buf = malloc(300u << 10);

	REQUIRE(buf, "oom");
	for (uint32_t seq = 0; seq < CONC_MSGS && !c->rc; seq++) {
		/* Sizes from tiny to several socket buffers' worth, so one
		 * sender's message is often cut into many sendmsg calls
		 * while the other waits on the lock. */
		size_t n = (size_t)(seq * 7919u + c->id * 104729u) %
			   (300u << 10);
		uint64_t tag = (uint64_t)c->id << 32 | seq;
		struct iovec iov[3];

		fill(buf, n, tag);
		iov[0] = (struct iovec){ buf, n / 3 };
		iov[1] = (struct iovec){ buf + n / 3, n / 3 };
		iov[2] = (struct iovec){ buf + 2 * (n / 3), n - 2 * (n / 3) };
		c->rc = xport__send(c->x, c->id, seq, tag, iov, 3);
	}
	free(buf);
	return NULL;
}

static void test_concurrent_senders(void)
{
	struct xport *a, *b;
	struct conc c[2] = { { .id = 1 }, { .id = 2 } };
	pthread_t t[2];
	uint32_t next[3] = { 0, 0, 0 };
	struct xport_msg m;
	char err[256] = "";

	xpair(&a, &b);
	xport_msg__init(&m);
	for (int i = 0; i < 2; i++) {
		c[i].x = a;
		pthread_create(&t[i], NULL, conc_send, &c[i]);
	}
	for (int k = 0; k < 2 * CONC_MSGS; k++) {
		int rc = xport__recv(b, &m, 10000, err, sizeof(err));

		CHECK_RC(rc, 0, err);
		CHECK(rc || m.type == 1 || m.type == 2, "type %u", m.type);
		if (rc || (m.type != 1 && m.type != 2)) {
			xport__shutdown(a);	/* unblock the senders */
			break;
		}
		CHECK(m.flags == next[m.type], "sender %u: seq %u, want %u",
		      m.type, m.flags, next[m.type]);
		CHECK(m.epoch == ((uint64_t)m.type << 32 | m.flags),
		      "epoch/tag mismatch");
		CHECK(first_bad(m.payload.data, m.payload.len, m.epoch) ==
			      m.payload.len,
		      "sender %u seq %u: payload mixed at byte %zu", m.type,
		      m.flags,
		      first_bad(m.payload.data, m.payload.len, m.epoch));
		next[m.type] = m.flags + 1;
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		CHECK(c[i].rc == 0, "sender %d: %s", i, strerror(-c[i].rc));
	}
	CHECK(next[1] == CONC_MSGS && next[2] == CONC_MSGS,
	      "received %u and %u", next[1], next[2]);
	xport_msg__free(&m);
	xport__close(a);
	xport__close(b);
}

/* ------------------------------------------------------------------------
 * Short writes and EINTR: a sender bombarded with signals
 * ------------------------------------------------------------------------ */

static atomic_int signals_seen;

static void on_sigusr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&signals_seen, 1);
}

struct bomb {
	pthread_t target;
	atomic_bool stop;
};

static void *bomb_thread(void *arg)
{
	struct bomb *b = arg;

	while (!atomic_load(&b->stop)) {
		pthread_kill(b->target, SIGUSR1);
		usleep(200);
	}
	return NULL;
}

static void *send_big(void *arg)
{
	struct sender *s = arg;
	uint8_t *buf = malloc(8u << 20);

	REQUIRE(buf, "oom");
	s->rc = 0;
	for (int k = 0; k < 6 && !s->rc; k++) {
		fill(buf, 8u << 20, s->tag0 + (uint64_t)k);
		s->rc = xport__send_buf(s->x, T_PAGES, 0, s->tag0 + (uint64_t)k,
					buf, 8u << 20);
	}
	free(buf);
	return NULL;
}

static void test_signals_short_writes(void)
{
	/* No SA_RESTART: sendmsg returns a short count or EINTR, which the
	 * writev loop must absorb. */
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	struct xport *a, *b;
	struct sender s = { .tag0 = 77 };
	struct bomb bomb;
	pthread_t tsend, tbomb;
	struct xport_msg m;
	char err[256] = "";

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	xpair(&a, &b);
	xport_msg__init(&m);
	s.x = a;
	atomic_store(&signals_seen, 0);
	atomic_init(&bomb.stop, false);
	pthread_create(&tsend, NULL, send_big, &s);
	bomb.target = tsend;
	pthread_create(&tbomb, NULL, bomb_thread, &bomb);
	for (int k = 0; k < 6; k++) {
		int rc;

		usleep(20000);	/* let the sender block on a full buffer */
		rc = xport__recv(b, &m, 10000, err, sizeof(err));
		CHECK_RC(rc, 0, err);
		if (rc) {
			xport__shutdown(a);
			break;
		}
		CHECK(m.payload.len == 8u << 20 &&
			      first_bad(m.payload.data, m.payload.len,
					s.tag0 + (uint64_t)k) == m.payload.len,
		      "message %d damaged by signals", k);
	}
	pthread_join(tsend, NULL);
	atomic_store(&bomb.stop, true);
	pthread_join(tbomb, NULL);
	CHECK(s.rc == 0, "send under signals: %s", strerror(-s.rc));
	CHECK(atomic_load(&signals_seen) > 10, "only %d signals delivered",
	      atomic_load(&signals_seen));
	printf("  signals during 48 MiB of sends: %d\n",
	       atomic_load(&signals_seen));
	signal(SIGUSR1, SIG_DFL);
	xport_msg__free(&m);
	xport__close(a);
	xport__close(b);
}

/* ------------------------------------------------------------------------
 * Refusals
 * ------------------------------------------------------------------------ */

static void test_every_byte_flip(void)
{
	uint8_t payload[40], good[XPORT_HEADER_SIZE + sizeof(payload)];
	size_t n;
	int refused = 0, tried = 0;
	struct xport_msg m;

	fill(payload, sizeof(payload), 5);
	n = frame(good, T_PAGES, 17, payload, sizeof(payload));
	xport_msg__init(&m);
	for (size_t pos = 0; pos < n; pos++) {
		static const uint8_t flips[] = { 0x01, 0x80, 0xFF, 0x5A };

		for (size_t f = 0; f < sizeof(flips); f++) {
			uint8_t bad[sizeof(good)];
			char err[256] = "", err2[256] = "";
			int raw, rc;
			struct xport *x = xraw(&raw);

			memcpy(bad, good, n);
			bad[pos] ^= flips[f];
			write_all(raw, bad, n);
			/* A flipped length must not leave recv waiting for
			 * bytes that never come: close, as a peer would. */
			close(raw);
			rc = xport__recv(x, &m, 2000, err, sizeof(err));
			tried++;
			refused += rc == -EBADMSG;
			CHECK(rc == -EBADMSG && err[0],
			      "flip 0x%02x at byte %zu: rc %d err \"%s\"",
			      flips[f], pos, rc, err);
			if (pos >= XPORT_HEADER_SIZE)
				CHECK(!strcmp(err, "message 'PAGES' epoch 17: "
						   "payload checksum mismatch"),
				      "payload flip at %zu: \"%s\"", pos, err);
			else if (pos >= 4)
				CHECK(strstr(err, "header checksum mismatch"),
				      "header flip at %zu: \"%s\"", pos, err);
			else
				CHECK(strstr(err, "bad magic"),
				      "magic flip at %zu: \"%s\"", pos, err);
			/* Unusable afterwards, with the same story. */
			rc = xport__recv(x, &m, 0, err2, sizeof(err2));
			CHECK(rc == -EBADMSG && !strcmp(err, err2),
			      "second recv after corruption: %d \"%s\"", rc,
			      err2);
			CHECK(m.payload.len == 0,
			      "corrupt payload handed out");
			xport__close(x);
		}
	}
	printf("  byte flips refused: %d of %d\n", refused, tried);
	xport_msg__free(&m);
}

static void test_every_truncation(void)
{
	uint8_t payload[40], good[XPORT_HEADER_SIZE + sizeof(payload)];
	struct xport_msg m;
	size_t n;

	fill(payload, sizeof(payload), 6);
	n = frame(good, T_PAGES, 17, payload, sizeof(payload));
	xport_msg__init(&m);
	for (size_t cut = 0; cut < n; cut++) {
		char err[256] = "", want[256];
		int raw, rc;
		struct xport *x = xraw(&raw);

		write_all(raw, good, cut);
		close(raw);
		rc = xport__recv(x, &m, 2000, err, sizeof(err));
		if (cut == 0) {
			/* Nothing of a message: a clean close. */
			CHECK_RC(rc, -EPIPE, err);
			CHECK(!strcmp(err, "injector closed the connection"),
			      "clean close: \"%s\"", err);
		} else if (cut < XPORT_HEADER_SIZE) {
			CHECK_RC(rc, -EBADMSG, err);
			snprintf(want, sizeof(want),
				 "stream truncated: connection closed after "
				 "%zu of 32 header bytes", cut);
			CHECK(!strcmp(err, want), "cut %zu: \"%s\"", cut, err);
		} else {
			CHECK_RC(rc, -EBADMSG, err);
			snprintf(want, sizeof(want),
				 "stream truncated: message 'PAGES' epoch 17: "
				 "header says 40 payload bytes, connection "
				 "closed after %zu", cut - XPORT_HEADER_SIZE);
			CHECK(!strcmp(err, want), "cut %zu: \"%s\"", cut, err);
		}
		xport__close(x);
	}
	xport_msg__free(&m);
}

static void test_close_between_messages(void)
{
	struct xport *a, *b;
	struct xport_msg m;
	char err[256] = "";
	int rc;

	xpair(&a, &b);
	xport_msg__init(&m);
	CHECK(xport__send_buf(a, T_BEGIN, 0, 3, "x", 1) == 0, "send");
	CHECK(xport__send_buf(a, T_COMMIT, 0, 3, "yy", 2) == 0, "send");
	xport__close(a);
	rc = xport__recv(b, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	rc = xport__recv(b, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	CHECK(m.type == T_COMMIT && m.payload.len == 2, "second message");
	rc = xport__recv(b, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, -EPIPE, err);
	CHECK(!strcmp(err, "peer-b closed the connection"), "\"%s\"", err);
	rc = xport__recv(b, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, -EPIPE, err);
	/* Sending into a closed peer fails, and keeps failing. */
	rc = xport__send_buf(b, T_BEGIN, 0, 4, "z", 1);
	CHECK(rc == -EPIPE || rc == -ECONNRESET, "send to closed: %d", rc);
	CHECK(xport__send_buf(b, T_BEGIN, 0, 4, "z", 1) == rc, "not sticky");
	xport_msg__free(&m);
	xport__close(b);
}

static void test_other_version(void)
{
	uint8_t hdr[XPORT_HEADER_SIZE];
	uint32_t crc;
	char err[256] = "";
	struct xport_msg m;
	int raw, rc;
	struct xport *x = xraw(&raw);

	xport_msg__init(&m);
	xport__encode_header(hdr, T_HELLO, 0, 0, 0, crc32c(0, "", 0));
	hdr[4] = 2;	/* version 2, with a header crc that matches */
	crc = crc32c(0, hdr, 28);
	memcpy(hdr + 28, &crc, 4);	/* little-endian host */
	write_all(raw, hdr, sizeof(hdr));
	rc = xport__recv(x, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, -EPROTO, err);
	CHECK(!strcmp(err, "peer speaks replication protocol version 2, this "
			   "ftvm speaks 1"),
	      "\"%s\"", err);
	rc = xport__recv(x, &m, 0, err, sizeof(err));
	CHECK_RC(rc, -EPROTO, err);
	close(raw);
	xport__close(x);
	xport_msg__free(&m);
}

/* Bytes the allocator has handed out (heap + mmapped chunks). */
static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

static void test_length_limits(void)
{
	uint8_t hdr[XPORT_HEADER_SIZE], some[1000];
	char err[256] = "";
	struct xport_msg m;
	uint64_t t0;
	int raw, rc;
	struct xport *x = xraw(&raw);

	xport_msg__init(&m);
	/* Over the protocol limit: refused on the header alone, at once. */
	xport__encode_header(hdr, T_PAGES, 0, 9, XPORT_MAX_PAYLOAD + 1, 0);
	write_all(raw, hdr, sizeof(hdr));
	t0 = now_ms();
	rc = xport__recv(x, &m, 5000, err, sizeof(err));
	CHECK_RC(rc, -EBADMSG, err);
	CHECK(now_ms() - t0 < 1000, "waited for a payload it should refuse");
	CHECK(!strcmp(err, "message 'PAGES' epoch 9: payload of 268435457 "
			   "bytes exceeds the limit of 268435456"),
	      "\"%s\"", err);
	CHECK(m.payload.data == NULL && m.payload.cap == 0,
	      "allocated for a refused message");
	close(raw);
	xport__close(x);

	/* A per-connection limit. */
	x = xraw(&raw);
	CHECK(xport__set_max_payload(x, 1u << 20) == 0, "set_max_payload");
	CHECK(xport__set_max_payload(x, XPORT_MAX_PAYLOAD + 1) == -EINVAL,
	      "limit above the protocol's accepted");
	xport__encode_header(hdr, T_STATE, 0, 10, (1u << 20) + 1, 0);
	write_all(raw, hdr, sizeof(hdr));
	rc = xport__recv(x, &m, 5000, err, sizeof(err));
	CHECK_RC(rc, -EBADMSG, err);
	CHECK(strstr(err, "exceeds the limit of 1048576"), "\"%s\"", err);
	close(raw);
	xport__close(x);

	/*
	 * A header that claims 200 MiB (allowed) followed by 1000 bytes: the
	 * receiver must hold about what arrived, not what was promised.
	 */
	x = xraw(&raw);
	{
		size_t before = heap_in_use(), grew;

		fill(some, sizeof(some), 1);
		xport__encode_header(hdr, T_PAGES, 0, 11, 200u << 20, 0);
		write_all(raw, hdr, sizeof(hdr));
		write_all(raw, some, sizeof(some));
		rc = xport__recv(x, &m, 100, err, sizeof(err));
		CHECK_RC(rc, -ETIMEDOUT, err);
		grew = heap_in_use() - before;
#if defined(__SANITIZE_ADDRESS__)
		(void)grew; /* ASan's allocator does not report mallinfo */
#else
		CHECK(grew < (2u << 20),
		      "holding %zu bytes for 1000 received", grew);
#endif
		CHECK(strstr(err, "1000 of 209715200 payload bytes so far"),
		      "\"%s\"", err);
	}
	close(raw);
	rc = xport__recv(x, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, -EBADMSG, err);
	CHECK(strstr(err, "stream truncated") &&
		      strstr(err, "connection closed after 1000"),
	      "\"%s\"", err);
	xport__close(x);

	/* And the sender refuses to build one. */
	{
		struct xport *a, *b;
		struct iovec v[2] = { { some, XPORT_MAX_PAYLOAD },
				      { some, 1 } };

		xpair(&a, &b);
		CHECK(xport__send(a, T_PAGES, 0, 1, v, 2) == -EMSGSIZE,
		      "oversized send accepted");
		CHECK(xport__send(a, T_PAGES, 0, 1, NULL, 1) == -EINVAL,
		      "NULL iov accepted");
		/* Refused before anything was written: still usable. */
		CHECK(xport__send_buf(a, T_BEGIN, 0, 1, "ok", 2) == 0,
		      "send after refused send");
		rc = xport__recv(b, &m, 1000, err, sizeof(err));
		CHECK_RC(rc, 0, err);
		xport__close(a);
		xport__close(b);
	}
	xport_msg__free(&m);
}

/* ------------------------------------------------------------------------
 * Timeouts and shutdown
 * ------------------------------------------------------------------------ */

static void test_recv_timeout(void)
{
	uint8_t payload[5000], f[XPORT_HEADER_SIZE + sizeof(payload)];
	struct xport_msg m;
	char err[256] = "";
	uint64_t t0, dt;
	size_t n;
	int raw, rc;
	struct xport *x = xraw(&raw);

	xport_msg__init(&m);
	t0 = now_ms();
	rc = xport__recv(x, &m, 150, err, sizeof(err));
	dt = now_ms() - t0;
	CHECK_RC(rc, -ETIMEDOUT, err);
	CHECK(dt >= 140 && dt < 2000, "timeout took %lu ms", (unsigned long)dt);
	CHECK(!strcmp(err, "no message from injector within 150 ms"), "\"%s\"",
	      err);
	rc = xport__recv(x, &m, 0, err, sizeof(err));
	CHECK_RC(rc, -ETIMEDOUT, err);

	/* Still usable: a whole message after the timeout. */
	fill(payload, sizeof(payload), 42);
	n = frame(f, T_STATE, 5, payload, sizeof(payload));
	write_all(raw, f, n);
	rc = xport__recv(x, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	CHECK(m.type == T_STATE && m.payload.len == sizeof(payload) &&
		      !memcmp(m.payload.data, payload, sizeof(payload)),
	      "message after timeout");

	/* Timeouts in the middle of the header and of the payload resume
	 * where they stopped. */
	fill(payload, sizeof(payload), 43);
	n = frame(f, T_PAGES, 6, payload, sizeof(payload));
	write_all(raw, f, 10);
	rc = xport__recv(x, &m, 50, err, sizeof(err));
	CHECK_RC(rc, -ETIMEDOUT, err);
	write_all(raw, f + 10, 2000);
	rc = xport__recv(x, &m, 50, err, sizeof(err));
	CHECK_RC(rc, -ETIMEDOUT, err);
	CHECK(strstr(err, "message 'PAGES' epoch 6: no data from injector "
			  "for 50 ms (1978 of 5000 payload bytes so far)"),
	      "\"%s\"", err);
	write_all(raw, f + 2010, n - 2010);
	rc = xport__recv(x, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	CHECK(m.type == T_PAGES && m.epoch == 6 &&
		      m.payload.len == sizeof(payload) &&
		      !memcmp(m.payload.data, payload, sizeof(payload)),
	      "resumed message differs");
	close(raw);
	xport__close(x);
	xport_msg__free(&m);
}

struct blocked {
	struct xport *x;
	int rc;
	char err[256];
};

static void *recv_forever(void *arg)
{
	struct blocked *b = arg;
	struct xport_msg m;

	xport_msg__init(&m);
	b->rc = xport__recv(b->x, &m, -1, b->err, sizeof(b->err));
	xport_msg__free(&m);
	return NULL;
}

static void test_shutdown_wakes_reader(void)
{
	struct xport *a, *b;
	struct blocked bl = { .rc = 1 };
	pthread_t t;
	uint64_t t0;

	xpair(&a, &b);
	bl.x = b;
	pthread_create(&t, NULL, recv_forever, &bl);
	usleep(50000);
	t0 = now_ms();
	xport__shutdown(b);
	pthread_join(t, NULL);
	CHECK(now_ms() - t0 < 1000, "shutdown took %lu ms",
	      (unsigned long)(now_ms() - t0));
	CHECK_RC(bl.rc, -ESHUTDOWN, bl.err);
	CHECK(xport__send_buf(b, T_BEGIN, 0, 0, "x", 1) < 0,
	      "send after shutdown");
	xport__shutdown(b);	/* idempotent */
	xport__close(a);
	xport__close(b);
}

/* ------------------------------------------------------------------------
 * Real TCP
 * ------------------------------------------------------------------------ */

struct dialer {
	char uri[128];
	struct xport *x;
	int rc;
	char err[256];
};

static void *dial(void *arg)
{
	struct dialer *d = arg;

	d->rc = xport__connect(d->uri, 5000, &d->x, d->err, sizeof(d->err));
	return NULL;
}

/* Connect to `connect_host`:port of a listener on `listen_uri`. */
static int tcp_pair(const char *listen_uri, const char *connect_host,
		    struct xport **srv, struct xport **cli)
{
	struct xport_listener *l;
	struct dialer d = { .rc = 1 };
	pthread_t t;
	char err[256] = "";
	int rc;

	rc = xport__listen(listen_uri, &l, err, sizeof(err));
	if (rc) {
		printf("  note: cannot listen on %s: %s\n", listen_uri, err);
		return rc;
	}
	CHECK(xport__listener_port(l) > 0, "port %d",
	      xport__listener_port(l));
	snprintf(d.uri, sizeof(d.uri), "tcp:%s:%d", connect_host,
		 xport__listener_port(l));
	pthread_create(&t, NULL, dial, &d);
	rc = xport__accept(l, 5000, srv, err, sizeof(err));
	pthread_join(t, NULL);
	xport__listener_close(l);
	CHECK_RC(rc, 0, err);
	CHECK_RC(d.rc, 0, d.err);
	if (rc || d.rc) {
		xport__close(rc ? NULL : *srv);
		xport__close(d.rc ? NULL : d.x);
		return rc ? rc : d.rc;
	}
	*cli = d.x;
	xport__set_type_names(*srv, type_names, T_COUNT);
	xport__set_type_names(*cli, type_names, T_COUNT);
	return 0;
}

static void test_tcp_loopback(void)
{
	struct xport *s, *c;
	char want[64];

	if (tcp_pair("tcp:127.0.0.1:0", "127.0.0.1", &s, &c) == 0) {
		/* Both ends name each other as ip:port. */
		CHECK(!strncmp(xport__peer(s), "127.0.0.1:", 10),
		      "server sees \"%s\"", xport__peer(s));
		CHECK(!strncmp(xport__peer(c), "127.0.0.1:", 10),
		      "client sees \"%s\"", xport__peer(c));
		roundtrip(c, s, 3, "tcp v4 client->server");
		roundtrip(s, c, 1, "tcp v4 server->client");
		xport__close(s);
		xport__close(c);
	}
	/* Listening on "any" (empty host or 0) takes IPv4 and IPv6. */
	if (tcp_pair("tcp::0", "127.0.0.1", &s, &c) == 0) {
		CHECK(!strncmp(xport__peer(s), "127.0.0.1:", 10),
		      "v4-mapped peer shown as \"%s\"", xport__peer(s));
		roundtrip(c, s, 2, "tcp any/v4");
		xport__close(s);
		xport__close(c);
	}
	if (tcp_pair("tcp:[::1]:0", "[::1]", &s, &c) == 0) {
		snprintf(want, sizeof(want), "[::1]:");
		CHECK(!strncmp(xport__peer(s), want, strlen(want)),
		      "v6 peer \"%s\"", xport__peer(s));
		roundtrip(c, s, 2, "tcp v6");
		xport__close(s);
		xport__close(c);
		if (tcp_pair("tcp:0:0", "[::1]", &s, &c) == 0) {
			roundtrip(c, s, 1, "tcp any/v6");
			xport__close(s);
			xport__close(c);
		}
	} else {
		printf("  note: no IPv6 loopback here, v6 cases skipped\n");
	}
	/* Concurrent senders over real TCP too. */
	if (tcp_pair("tcp:127.0.0.1:0", "localhost", &s, &c) == 0) {
		struct conc cc[2] = { { .x = c, .id = 1 },
				      { .x = c, .id = 2 } };
		pthread_t t[2];
		uint32_t next[3] = { 0 };
		struct xport_msg m;
		char err[256] = "";

		xport_msg__init(&m);
		for (int i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, conc_send, &cc[i]);
		for (int k = 0; k < 2 * CONC_MSGS; k++) {
			int rc = xport__recv(s, &m, 10000, err, sizeof(err));

			CHECK_RC(rc, 0, err);
			if (rc || (m.type != 1 && m.type != 2)) {
				xport__shutdown(c);
				break;
			}
			CHECK(m.flags == next[m.type] &&
				      first_bad(m.payload.data, m.payload.len,
						m.epoch) == m.payload.len,
			      "tcp concurrent: sender %u seq %u damaged",
			      m.type, m.flags);
			next[m.type] = m.flags + 1;
		}
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		CHECK(next[1] == CONC_MSGS && next[2] == CONC_MSGS,
		      "tcp concurrent: %u/%u", next[1], next[2]);
		xport_msg__free(&m);
		xport__close(s);
		xport__close(c);
	}
}

static void test_tcp_errors(void)
{
	struct xport_listener *l;
	struct xport *x = NULL;
	char err[256] = "", want[256], uri[64];
	uint64_t t0, dt;
	int rc, port;

	/* A port that was just free: refused, with a message that says so. */
	rc = xport__listen("tcp:127.0.0.1:0", &l, err, sizeof(err));
	REQUIRE(rc == 0, "listen: %s", err);
	port = xport__listener_port(l);

	/* accept with a timeout */
	t0 = now_ms();
	rc = xport__accept(l, 120, &x, err, sizeof(err));
	dt = now_ms() - t0;
	CHECK_RC(rc, -ETIMEDOUT, err);
	CHECK(dt >= 110 && dt < 2000, "accept timeout took %lu ms",
	      (unsigned long)dt);
	snprintf(want, sizeof(want), "no connection on tcp:127.0.0.1:%d "
		 "within 120 ms", port);
	CHECK(!strcmp(err, want), "\"%s\"", err);
	CHECK(x == NULL, "out set on failure");
	xport__listener_close(l);

	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port);
	rc = xport__connect(uri, 2000, &x, err, sizeof(err));
	CHECK_RC(rc, -ECONNREFUSED, err);
	snprintf(want, sizeof(want),
		 "cannot connect to 127.0.0.1:%d: Connection refused", port);
	CHECK(!strcmp(err, want), "\"%s\"", err);

	/* Names that resolve: the message shows the address tried. */
	snprintf(uri, sizeof(uri), "tcp:localhost:%d", port);
	rc = xport__connect(uri, 2000, &x, err, sizeof(err));
	CHECK_RC(rc, -ECONNREFUSED, err);
	CHECK(strstr(err, "cannot connect to localhost:") &&
		      strstr(err, "Connection refused"),
	      "\"%s\"", err);

	/* Malformed addresses. */
	{
		static const char *const bad[] = {
			"tcp:host-without-port", "tcp:1.2.3.4:99999",
			"tcp:1.2.3.4:", "tcp:::1:4444", "tcp:[::1]4444",
			"nosuch:1.2.3.4:1", "tcp-but-no-colon",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			err[0] = '\0';
			rc = xport__connect(bad[i], 100, &x, err, sizeof(err));
			CHECK(rc == -EINVAL && err[0],
			      "'%s': rc %d err \"%s\"", bad[i], rc, err);
		}
	}
	rc = xport__connect("tcp:no-such-host.invalid:1", 2000, &x, err,
			    sizeof(err));
	CHECK(rc < 0 && strstr(err, "cannot resolve"), "\"%s\"", err);

	/* Listening twice on one port fails clearly. */
	rc = xport__listen("tcp:127.0.0.1:0", &l, err, sizeof(err));
	REQUIRE(rc == 0, "listen: %s", err);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", xport__listener_port(l));
	{
		struct xport_listener *l2;

		rc = xport__listen(uri, &l2, err, sizeof(err));
		CHECK_RC(rc, -EADDRINUSE, err);
		CHECK(strstr(err, "Address already in use"), "\"%s\"", err);
	}
	xport__listener_close(l);
}

/* xport__inject_fault(): damage that really crosses the wire. */
static void test_inject_fault(void)
{
	static uint8_t buf[10000];
	struct iovec v[3] = { { buf, 3000 }, { buf + 3000, 4000 },
			      { buf + 7000, 3000 } };
	struct xport *a, *b;
	struct xport_msg m;
	char err[256] = "";
	int rc;

	fill(buf, sizeof(buf), 12);
	xport_msg__init(&m);

	xpair(&a, &b);
	xport__inject_fault(a, XPORT_FAULT_CORRUPT_NEXT);
	/* No payload: not the target. */
	CHECK(xport__send(a, T_BEGIN, 0, 30, NULL, 0) == 0, "send");
	CHECK(xport__send(a, T_PAGES, 0, 30, v, 3) == 0, "send corrupt");
	CHECK(xport__send(a, T_PAGES, 0, 31, v, 3) == 0, "send after");
	rc = xport__recv(b, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	rc = xport__recv(b, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, -EBADMSG, err);
	CHECK(!strcmp(err, "message 'PAGES' epoch 30: payload checksum "
			   "mismatch"), "\"%s\"", err);
	xport__close(a);
	xport__close(b);

	xpair(&a, &b);
	xport__inject_fault(a, XPORT_FAULT_TRUNCATE_NEXT);
	CHECK(xport__send(a, T_COMMIT, 0, 40, NULL, 0) == 0, "send");
	rc = xport__send(a, T_PAGES, 0, 41, v, 3);
	CHECK(rc == -EPIPE, "truncated send returned %d", rc);
	CHECK(xport__send(a, T_PAGES, 0, 42, v, 3) < 0, "send after cut");
	rc = xport__recv(b, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	rc = xport__recv(b, &m, 1000, err, sizeof(err));
	CHECK_RC(rc, -EBADMSG, err);
	CHECK(!strcmp(err, "stream truncated: message 'PAGES' epoch 41: "
			   "header says 10000 payload bytes, connection "
			   "closed after 5000"), "\"%s\"", err);
	xport__close(a);
	xport__close(b);
	xport_msg__free(&m);
}

int main(void)
{
	struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
		{ "roundtrip_socketpair", test_roundtrip_socketpair },
		{ "send_buf", test_send_buf },
		{ "concurrent_senders", test_concurrent_senders },
		{ "signals_short_writes", test_signals_short_writes },
		{ "every_byte_flip", test_every_byte_flip },
		{ "every_truncation", test_every_truncation },
		{ "close_between_messages", test_close_between_messages },
		{ "other_version", test_other_version },
		{ "length_limits", test_length_limits },
		{ "recv_timeout", test_recv_timeout },
		{ "shutdown_wakes_reader", test_shutdown_wakes_reader },
		{ "tcp_loopback", test_tcp_loopback },
		{ "tcp_errors", test_tcp_errors },
		{ "inject_fault", test_inject_fault },
	};

	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int before = failures;

		printf("%s\n", tests[i].name);
		tests[i].fn();
		if (failures != before)
			printf("  FAILED (%d checks)\n", failures - before);
	}
	if (failures) {
		printf("test_transport: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_transport: all passed\n");
	return 0;
}
