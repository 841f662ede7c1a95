/*
 * transport/tls.c: TLS 1.3 with a pre-shared key, over socketpairs (the
 * x509 mode is driven with real certificates by the integration tests).
 *   - the same key: both sides authenticate; messages of every size go both
 *     ways, two senders at once, and arrive intact; the cipher is TLS 1.3;
 *   - another key: both sides fail with "authentication failed", the
 *     accepting side without reading a message;
 *   - a plaintext peer (an ftvm without --tls-creds) meets a TLS side: both
 *     fail, neither hangs;
 *   - a lowered rekey limit: the sender updates its key again and again
 *     over a stream (at most 4 times a second: GnuTLS takes at most 8 from
 *     a peer) and the receiver reads every byte;
 *   - key files: too open a mode, not hex, too short: refused with the file
 *     named.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "transport/transport.h"

#include "tests/unit/check.h"

/* mkdtemp() template: the key files of this run go in a fresh directory. */
static char dir[] = "/tmp/ftvm-tls-XXXXXX";

static const char *key_file(const char *name, const char *text, mode_t mode)
{
	static char path[8][256];
	static int n;
	char *p = path[n++ % 8];
	snprintf(p, 256, "%s/%s", dir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		perror(p);
		exit(1);
	}
	close(fd);
	chmod(p, mode);
	return p;
}

static struct xport_tls *creds(const char *path)
{
	char spec[300], err[256] = "";
	struct xport_tls *t = NULL;
	snprintf(spec, sizeof(spec), "psk:%s", path);
	int rc = xport_tls__load(spec, &t, err, sizeof(err));
	CHECK(rc == 0, "loading %s: %s", spec, err);
	if (rc)
		exit(1);
	return t;
}

struct side {
	struct xport *x;
	const struct xport_tls *t;
	bool server;
	int rc;
	char err[256];
};

static void *handshake(void *arg)
{
	struct side *s = arg;
	s->rc = s->t ? xport__start_tls(s->x, s->t, s->server, "peer", 3000, s->err, sizeof(s->err)) : 0;
	return NULL;
}

/* Both ends at once; ta/tb NULL: that side stays plaintext and, if it is
 * the client, sends one plaintext message as an old ftvm would. */
static void pair(const struct xport_tls *ta, const struct xport_tls *tb, struct side *a, struct side *b)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		perror("socketpair");
		exit(1);
	}
	*a = (struct side){ .t = ta, .server = true };
	*b = (struct side){ .t = tb, .server = false };
	xport__from_fd(sv[0], "server", &a->x);
	xport__from_fd(sv[1], "client", &b->x);
	pthread_t th;
	pthread_create(&th, NULL, handshake, a);
	if (!tb)
		xport__send_buf(b->x, 1, 0, 0, "HELLO", 5);
	handshake(b);
	if (!tb) {
		/* A plaintext client waits for an answer it will not get. */
		struct xport_msg m;
		char err[256];
		xport_msg__init(&m);
		b->rc = xport__recv(b->x, &m, 3000, err, sizeof(err));
		xport_msg__free(&m);
	}
	pthread_join(th, NULL);
}

struct pump {
	struct xport *x;
	uint16_t type;
	size_t size;
	int count, rc;
};

static void *sender(void *arg)
{
	struct pump *p = arg;
	uint8_t *buf = malloc(p->size);
	for (int i = 0; i < p->count && !p->rc; i++) {
		for (size_t k = 0; k < p->size; k++)
			buf[k] = (uint8_t)(k * 31 + (size_t)i + p->type);
		p->rc = xport__send_buf(p->x, p->type, 0, (uint64_t)i, buf, p->size);
	}
	free(buf);
	return NULL;
}

/* Receives what two senders of types 1 and 2 sent, checking every byte. */
static int drain(struct xport *x, struct pump *p1, struct pump *p2)
{
	int next[3] = { 0, 0, 0 }, bad = 0;
	struct xport_msg m;
	char err[256];
	xport_msg__init(&m);
	for (int n = 0; n < p1->count + p2->count; n++) {
		int rc = xport__recv(x, &m, 5000, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "recv: %s\n", err);
			bad++;
			break;
		}
		struct pump *p = m.type == 1 ? p1 : p2;
		if (m.epoch != (uint64_t)next[m.type]++ || m.payload.len != p->size)
			bad++;
		for (size_t k = 0; k < m.payload.len && !bad; k++)
			if (m.payload.data[k] != (uint8_t)(k * 31 + m.epoch + m.type))
				bad++;
	}
	xport_msg__free(&m);
	return bad;
}

static void test_same_key(const struct xport_tls *t)
{
	struct side a, b;
	char c[64];
	pair(t, t, &a, &b);
	CHECK(a.rc == 0 && b.rc == 0, "handshake: server %d (%s), client %d (%s)", a.rc, a.err, b.rc, b.err);
	CHECK(strstr(xport__cipher(a.x, c, sizeof(c)), "TLS1.3") != NULL, "cipher %s", c);
	printf("same key: %s\n", xport__cipher(b.x, c, sizeof(c)));
	/* Sizes from empty to 4 MiB, two senders at once, each way. */
	size_t sizes[] = { 0, 1, 31, 4096, 16383, 16385, 65536, 65537, 1 << 20, 4 << 20 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct pump p1 = { b.x, 1, sizes[i], 3, 0 }, p2 = { b.x, 2, sizes[i], 3, 0 };
		pthread_t t1, t2;
		pthread_create(&t1, NULL, sender, &p1);
		pthread_create(&t2, NULL, sender, &p2);
		int bad = drain(a.x, &p1, &p2);
		pthread_join(t1, NULL);
		pthread_join(t2, NULL);
		CHECK(!bad && !p1.rc && !p2.rc, "%zu-byte messages: %d bad, send %d %d", sizes[i], bad, p1.rc, p2.rc);
		struct pump q1 = { a.x, 1, sizes[i], 2, 0 }, q2 = { a.x, 2, sizes[i], 0, 0 };
		pthread_create(&t1, NULL, sender, &q1);
		bad = drain(b.x, &q1, &q2);
		pthread_join(t1, NULL);
		CHECK(!bad && !q1.rc, "%zu-byte messages back: %d bad", sizes[i], bad);
	}
	/* The peer closing is a clean end, not corruption. */
	xport__close(b.x);
	struct xport_msg m;
	char err[256];
	xport_msg__init(&m);
	int rc = xport__recv(a.x, &m, 2000, err, sizeof(err));
	CHECK(rc == -EPIPE, "after the peer closed: %d (%s)", rc, err);
	xport_msg__free(&m);
	xport__close(a.x);
}

static void test_other_key(const struct xport_tls *t1, const struct xport_tls *t2)
{
	struct side a, b;
	pair(t1, t2, &a, &b);
	printf("another key: server: %s; client: %s\n", a.err, b.err);
	CHECK(!strstr(b.err, "timed out"), "the client was left waiting: %s", b.err);
	CHECK(a.rc == -EACCES && strstr(a.err, "authentication failed"), "server: %d %s", a.rc, a.err);
	CHECK(b.rc == -EACCES && strstr(b.err, "authentication failed"), "client: %d %s", b.rc, b.err);
	xport__close(a.x);
	xport__close(b.x);
}

static void test_plaintext_peer(const struct xport_tls *t)
{
	struct side a, b;
	pair(t, NULL, &a, &b);
	printf("plaintext client: server: %s; client rc %d\n", a.err, b.rc);
	CHECK(a.rc == -EACCES, "server took a plaintext peer: %d %s", a.rc, a.err);
	CHECK(b.rc != 0, "the plaintext client got a message");
	xport__close(a.x);
	xport__close(b.x);
	/* A TLS client against a plaintext server: it fails, it does not hang. */
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	struct xport *c;
	char err[256] = "";
	xport__from_fd(sv[1], "plain-server", &c);
	close(sv[0]);
	int rc = xport__start_tls(c, t, false, "peer", 2000, err, sizeof(err));
	CHECK(rc != 0, "a handshake with nobody succeeded");
	printf("TLS client, peer gone: %d %s\n", rc, err);
	xport__close(c);
}

struct timed_pump {
	struct xport *x;
	double seconds;
	int sent, rc;
};

static void *timed_sender(void *arg)
{
	struct timed_pump *p = arg;
	size_t size = 1 << 20;
	uint8_t *buf = malloc(size);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (size_t k = 0; k < size; k++)
			buf[k] = (uint8_t)(k * 31 + (size_t)p->sent + 1);
		p->rc = xport__send_buf(p->x, 1, 0, (uint64_t)p->sent, buf, size);
		p->sent++;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (!p->rc && (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 < p->seconds);
	xport__send_buf(p->x, 2, 0, 0, NULL, 0);	/* the end */
	free(buf);
	return NULL;
}

static void test_rekey(const char *keypath)
{
	struct xport_tls *t = creds(keypath);
	xport_tls__set_rekey_records(t, 8);	/* 128 KiB a key */
	struct side a, b;
	pair(t, t, &a, &b);
	CHECK(a.rc == 0 && b.rc == 0, "handshake: %s %s", a.err, b.err);
	struct timed_pump p = { b.x, 1.6, 0, 0 };
	pthread_t th;
	pthread_create(&th, NULL, timed_sender, &p);
	struct xport_msg m;
	char err[256] = "";
	int got = 0, bad = 0, rc;
	xport_msg__init(&m);
	while ((rc = xport__recv(a.x, &m, 5000, err, sizeof(err))) == 0 && m.type == 1) {
		if (m.epoch != (uint64_t)got || m.payload.len != 1u << 20)
			bad++;
		for (size_t k = 0; k < m.payload.len && !bad; k++)
			if (m.payload.data[k] != (uint8_t)(k * 31 + m.epoch + 1))
				bad++;
		got++;
	}
	pthread_join(th, NULL);
	uint64_t rekeys = xport__rekeys(b.x);
	printf("rekey every 8 records: %d MiB sent in 1.6 s, %llu key updates, %d MiB received, %d bad\n", p.sent,
	       (unsigned long long)rekeys, got, bad);
	CHECK(rc == 0 && !bad && !p.rc && got == p.sent, "the stream broke across key updates: rc %d (%s), "
	      "%d of %d received, %d bad, send %d", rc, err, got, p.sent, bad, p.rc);
	CHECK(rekeys >= 4, "only %llu key updates in 1.6 s", (unsigned long long)rekeys);

	/* Batches (a checkpoint's messages corked together) with key updates
	 * due between them: every message arrives, in order. */
	uint8_t *buf = malloc(65536);
	int sent = 0, recvd = 0;
	for (int batch = 0; batch < 12; batch++) {
		xport__batch_begin(b.x);
		for (int k = 0; k < 3; k++, sent++) {
			memset(buf, sent & 0xff, 65536);
			CHECK(xport__send_buf(b.x, 1, 0, (uint64_t)sent, buf, 65536) == 0, "batched send %d", sent);
		}
		CHECK(xport__batch_end(b.x) == 0, "batch %d did not leave", batch);
		for (; recvd < sent; recvd++) {
			rc = xport__recv(a.x, &m, 5000, err, sizeof(err));
			CHECK(rc == 0 && m.epoch == (uint64_t)recvd && m.payload.len == 65536 &&
			      m.payload.data[65535] == (uint8_t)(recvd & 0xff), "batched message %d: %d %s", recvd, rc,
			      err);
		}
		struct timespec pause = { 0, 120000000 };
		nanosleep(&pause, NULL);
	}
	free(buf);
	printf("12 batches of 3 messages across key updates: %llu updates in all, %d received\n",
	       (unsigned long long)xport__rekeys(b.x), recvd);
	CHECK(xport__rekeys(b.x) > rekeys, "no key update between the batches");
	xport_msg__free(&m);
	xport__close(a.x);
	xport__close(b.x);
	xport_tls__free(t);
}

static void test_key_files(void)
{
	struct xport_tls *t = NULL;
	char err[256], spec[300];
	const char *k = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
	struct {
		const char *name, *text;
		mode_t mode;
		const char *want;
	} bad[] = {
		{ "open.key", k, 0644, "must be 0600" },
		{ "nothex.key", "not a key at all, zz\n", 0600, "not a hex key" },
		{ "short.key", "0011223344\n", 0600, "hex digits" },
		{ "odd.key", "0011223344556677889900112233445\n", 0600, "hex digits" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(spec, sizeof(spec), "psk:%s", key_file(bad[i].name, bad[i].text, bad[i].mode));
		err[0] = '\0';
		int rc = xport_tls__load(spec, &t, err, sizeof(err));
		CHECK(rc < 0 && strstr(err, bad[i].want) && strstr(err, bad[i].name),
		      "%s: rc %d, err \"%s\" (want \"%s\")", bad[i].name, rc, err, bad[i].want);
	}
	int rc = xport_tls__load("psk:/nonexistent/key", &t, err, sizeof(err));
	CHECK(rc == -ENOENT && strstr(err, "/nonexistent/key"), "missing file: %d %s", rc, err);
	rc = xport_tls__load("kerberos:x", &t, err, sizeof(err));
	CHECK(rc == -EINVAL && strstr(err, "psk:FILE"), "unknown mode: %d %s", rc, err);
	/* Options: ktls=auto|off, peer= (x509 only); anything else is refused. */
	const char *good = key_file("good.key", k, 0600);
	snprintf(spec, sizeof(spec), "psk:%s,ktls=maybe", good);
	rc = xport_tls__load(spec, &t, err, sizeof(err));
	CHECK(rc == -EINVAL && strstr(err, "ktls=maybe"), "bad option: %d %s", rc, err);
	snprintf(spec, sizeof(spec), "psk:%s,ktls=off", good);
	rc = xport_tls__load(spec, &t, err, sizeof(err));
	CHECK(rc == 0 && strstr(xport_tls__offload(t), "ktls=off"), "ktls=off: %d %s", rc, err);
	xport_tls__free(t);
	t = NULL;
	snprintf(spec, sizeof(spec), "psk:%s,peer=host1", good);
	rc = xport_tls__load(spec, &t, err, sizeof(err));
	CHECK(rc == -EINVAL, "peer= with a PSK: %d", rc);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	const char *k1 = key_file("k1", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0600);
	const char *k2 = key_file("k2", "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n", 0600);
	struct xport_tls *t1 = creds(k1), *t2 = creds(k2);
	test_same_key(t1);
	test_other_key(t1, t2);
	test_plaintext_peer(t1);
	test_rekey(k1);
	test_key_files();
	xport_tls__free(t1);
	xport_tls__free(t2);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
	return failures ? 1 : 0;
}
