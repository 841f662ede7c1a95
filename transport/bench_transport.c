/*
 * Not a test: numbers for transport/ on this machine.
 *
 *   page codec   encode/decode MB/s and ratio on zero, text-like, random
 *                and mixed guest pages (64 MiB each)
 *   tcp          loopback throughput of xport__send of 4 MiB messages
 *                (and the same over a socketpair), and the round-trip time
 *                of a small message (what an ACK costs)
 *
 * Usage: bench_transport [MiB_per_case]     (default 64)
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "transport/transport.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void page_random(uint8_t *p, uint64_t *s)
{
	for (size_t i = 0; i < 4096; i += 8) {
		uint64_t v = rnd(s);

		memcpy(p + i, &v, 8);
	}
}

/* Text-like: words and numbers, like a page of logs or source. */
static void page_text(uint8_t *p, uint64_t *s)
{
	static const char *const words[] = {
		"static ", "int ", "return ", "if (", "} else {\n", "\t",
		"struct ", "->", "error", "count", "0x", "= ", ";\n", "for ",
		"buffer", "length ", "HTTP/1.1 200 OK\r\n", "Content-Length: ",
	};
	size_t i = 0;

	while (i < 4096) {
		uint64_t r = rnd(s);
		const char *w = words[r % (sizeof(words) / sizeof(words[0]))];
		char num[24];

		if ((r >> 20) % 5 == 0) {
			snprintf(num, sizeof(num), "%u ", (unsigned)(r >> 40));
			w = num;
		}
		for (; *w && i < 4096; w++)
			p[i++] = (uint8_t)*w;
	}
}

enum kind { ZERO, TEXT, RANDOM, MIXED };

static void make(uint8_t *buf, size_t len, enum kind k)
{
	uint64_t s = 88172645463325252ull;

	memset(buf, 0, len);
	for (size_t off = 0; off < len; off += 4096) {
		enum kind pk = k;

		if (k == MIXED) { /* 60% zero, 25% text, 15% random pages */
			unsigned r = (unsigned)(rnd(&s) % 100);

			pk = r < 60 ? ZERO : r < 85 ? TEXT : RANDOM;
		}
		if (pk == TEXT)
			page_text(buf + off, &s);
		else if (pk == RANDOM)
			page_random(buf + off, &s);
	}
}

static void bench_codec(size_t mib)
{
	static const char *const names[] = { "zero pages", "text pages",
					     "random pages",
					     "mixed 60/25/15 z/t/r" };
	size_t len = mib << 20;
	uint8_t *buf = malloc(len), *out = malloc(len);
	struct sbuf enc;

	if (!buf || !out)
		exit(1);
	sbuf__init(&enc);
	printf("page codec (LZ4 64 KiB blocks), %zu MiB per case\n", mib);
	printf("  %-22s %10s %12s %12s\n", "input", "ratio", "encode MB/s",
	       "decode MB/s");
	for (int k = ZERO; k <= MIXED; k++) {
		double t0, te, td;
		char err[256];
		int reps = 3;

		make(buf, len, (enum kind)k);
		te = 1e9;
		td = 1e9;
		for (int r = 0; r < reps; r++) {
			sbuf__reset(&enc);
			t0 = now_s();
			if (page_codec__encode(buf, len, &enc))
				exit(1);
			if (now_s() - t0 < te)
				te = now_s() - t0;
			t0 = now_s();
			if (page_codec__decode(enc.data, enc.len, out, len,
					       err, sizeof(err))) {
				fprintf(stderr, "decode: %s\n", err);
				exit(1);
			}
			if (now_s() - t0 < td)
				td = now_s() - t0;
		}
		if (memcmp(buf, out, len))
			exit(1);
		printf("  %-22s %9.2fx %12.0f %12.0f\n", names[k],
		       (double)len / (double)enc.len,
		       (double)len / te / 1e6, (double)len / td / 1e6);
	}
	/* The same mixed pages, one encode call per 4 KiB page (what a caller
	 * that encodes page by page gets): blocks are then 4 KiB. */
	{
		double t0, te = 1e9, td = 1e9;

		make(buf, len, MIXED);
		for (int r = 0; r < 3; r++) {
			size_t pos = 0;

			sbuf__reset(&enc);
			t0 = now_s();
			for (size_t off = 0; off < len; off += 4096)
				if (page_codec__encode(buf + off, 4096, &enc))
					exit(1);
			if (now_s() - t0 < te)
				te = now_s() - t0;
			t0 = now_s();
			for (size_t off = 0; off < len; off += 4096) {
				uint32_t stored;

				memcpy(&stored, enc.data + pos + 4, 4);
				if (page_codec__decode(enc.data + pos,
						       PAGE_CODEC_BLOCK_HDR +
							       stored,
						       out + off, 4096, NULL,
						       0))
					exit(1);
				pos += PAGE_CODEC_BLOCK_HDR + stored;
			}
			if (now_s() - t0 < td)
				td = now_s() - t0;
		}
		if (memcmp(buf, out, len))
			exit(1);
		printf("  %-22s %9.2fx %12.0f %12.0f\n", "mixed, per 4K page",
		       (double)len / (double)enc.len, (double)len / te / 1e6,
		       (double)len / td / 1e6);
	}
	sbuf__free(&enc);
	free(buf);
	free(out);
}

struct rx_arg {
	struct xport *x;
	int count;
	int rc;
};

static void *rx_thread(void *arg)
{
	struct rx_arg *a = arg;
	struct xport_msg m;
	char err[256];

	xport_msg__init(&m);
	for (int i = 0; i < a->count && !a->rc; i++)
		a->rc = xport__recv(a->x, &m, 10000, err, sizeof(err));
	if (a->rc)
		fprintf(stderr, "recv: %s\n", err);
	xport_msg__free(&m);
	return NULL;
}

static void throughput(struct xport *tx, struct xport *rx, const char *what)
{
	const size_t msg = 4u << 20;
	const int count = 256;	/* 1 GiB */
	uint8_t *buf = malloc(msg);
	struct rx_arg a = { .x = rx, .count = count };
	pthread_t t;
	double t0, dt;

	if (!buf)
		exit(1);
	make(buf, msg, RANDOM);
	pthread_create(&t, NULL, rx_thread, &a);
	t0 = now_s();
	for (int i = 0; i < count; i++)
		if (xport__send_buf(tx, 1, 0, (uint64_t)i, buf, msg))
			exit(1);
	pthread_join(t, NULL);
	dt = now_s() - t0;
	printf("  %-30s %8.0f MB/s  (%d x 4 MiB in %.2f s, crc32c both "
	       "ends)\n", what, (double)msg * count / dt / 1e6, count, dt);
	free(buf);
}

static void *echo_thread(void *arg)
{
	struct rx_arg *a = arg;
	struct xport_msg m;
	char err[256];

	xport_msg__init(&m);
	for (int i = 0; i < a->count && !a->rc; i++) {
		a->rc = xport__recv(a->x, &m, 10000, err, sizeof(err));
		if (!a->rc)
			a->rc = xport__send_buf(a->x, 2, 0, m.epoch,
						m.payload.data, m.payload.len);
	}
	xport_msg__free(&m);
	return NULL;
}

static void rtt(struct xport *a, struct xport *b, const char *what)
{
	const int count = 20000;
	struct rx_arg e = { .x = b, .count = count };
	struct xport_msg m;
	char err[256], ping[64] = "ack";
	pthread_t t;
	double t0, dt;

	xport_msg__init(&m);
	pthread_create(&t, NULL, echo_thread, &e);
	t0 = now_s();
	for (int i = 0; i < count; i++)
		if (xport__send_buf(a, 1, 0, (uint64_t)i, ping, sizeof(ping)) ||
		    xport__recv(a, &m, 10000, err, sizeof(err)))
			exit(1);
	dt = now_s() - t0;
	pthread_join(t, NULL);
	printf("  %-30s %8.1f us round trip (64-byte message and reply)\n",
	       what, dt / count * 1e6);
	xport_msg__free(&m);
}

struct dialer {
	const char *uri;
	struct xport *x;
};

static void *dial(void *arg)
{
	struct dialer *d = arg;
	char err[256];

	if (xport__connect(d->uri, 5000, &d->x, err, sizeof(err))) {
		fprintf(stderr, "connect: %s\n", err);
		exit(1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
	struct xport_listener *l;
	struct xport *s, *c;
	struct dialer d;
	char err[256], uri[64];
	pthread_t t;
	int sv[2];

	bench_codec(mib ? mib : 64);

	printf("transport\n");
	if (xport__listen("tcp:127.0.0.1:0", &l, err, sizeof(err))) {
		fprintf(stderr, "listen: %s\n", err);
		return 1;
	}
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", xport__listener_port(l));
	d.uri = uri;
	pthread_create(&t, NULL, dial, &d);
	if (xport__accept(l, 5000, &s, err, sizeof(err))) {
		fprintf(stderr, "accept: %s\n", err);
		return 1;
	}
	pthread_join(t, NULL);
	c = d.x;
	xport__listener_close(l);
	throughput(c, s, "tcp loopback, 4 MiB messages");
	rtt(c, s, "tcp loopback");
	xport__close(c);
	xport__close(s);

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) ||
	    xport__from_fd(sv[0], "a", &c) || xport__from_fd(sv[1], "b", &s))
		return 1;
	throughput(c, s, "unix socketpair, 4 MiB msgs");
	rtt(c, s, "unix socketpair");
	xport__close(c);
	xport__close(s);
	return 0;
}
