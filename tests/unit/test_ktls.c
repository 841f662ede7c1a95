/*
 * transport/ktls.c, the kernel's TLS.
 *
 *   test_ktls         (runs everywhere) the record keys ktls.c gives the
 *                     kernel equal GnuTLS's own, for the first keys and for
 *                     each of several key updates, in both directions of a
 *                     real TLS 1.3 session, for every cipher the link allows;
 *   test_ktls kernel  (needs a kernel with kTLS and TLS 1.3 key updates)
 *                     a TCP connection over loopback with --tls-creds on
 *                     both ends runs in the kernel ("(kTLS)" in the cipher),
 *                     carries messages of every size both ways intact, and
 *                     updates its keys again and again under a lowered
 *                     limit. Without such a kernel: exit 77 (skipped) with
 *                     the probe's reason, never a pass.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "transport/xport_internal.h"

#include "tests/unit/check.h"

/* ---- keys ---------------------------------------------------------------- */

struct sess {
	gnutls_session_t s;
	bool server;
	uint8_t tx[KTLS_SECRET_MAX], rx[KTLS_SECRET_MAX];
	size_t len;
	int fd, rc;
};

static int keylog(gnutls_session_t s, const char *label, const gnutls_datum_t *secret)
{
	struct sess *x = gnutls_session_get_ptr(s);
	bool client = !strcmp(label, "CLIENT_TRAFFIC_SECRET_0");
	if (!client && strcmp(label, "SERVER_TRAFFIC_SECRET_0"))
		return 0;
	memcpy(client == x->server ? x->rx : x->tx, secret->data, secret->size);
	x->len = secret->size;
	return 0;
}

static void *do_handshake(void *arg)
{
	struct sess *x = arg;
	do
		x->rc = gnutls_handshake(x->s);
	while (x->rc == GNUTLS_E_AGAIN || x->rc == GNUTLS_E_INTERRUPTED);
	if (x->rc)
		shutdown(x->fd, SHUT_RDWR);	/* the other side must not wait */
	return NULL;
}

/* A throwaway self-signed certificate: the server authenticates with it
 * (any TLS 1.3 suite, SHA-384 ones too, which GnuTLS's PSKs cannot do). */
static gnutls_certificate_credentials_t server_cert(void)
{
	gnutls_x509_privkey_t key;
	gnutls_x509_crt_t crt;
	gnutls_certificate_credentials_t cred;
	time_t now = time(NULL);
	unsigned char serial = 1;

	gnutls_x509_privkey_init(&key);
	gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
	gnutls_x509_crt_init(&crt);
	gnutls_x509_crt_set_version(crt, 3);
	gnutls_x509_crt_set_serial(crt, &serial, 1);
	gnutls_x509_crt_set_activation_time(crt, now - 60);
	gnutls_x509_crt_set_expiration_time(crt, now + 3600);
	gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "ktls-test", 9);
	gnutls_x509_crt_set_key(crt, key);
	CHECK(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0) == 0, "signing the test certificate");
	gnutls_certificate_allocate_credentials(&cred);
	CHECK(gnutls_certificate_set_x509_key(cred, &crt, 1, key) >= 0, "the test certificate");
	gnutls_x509_crt_deinit(crt);
	gnutls_x509_privkey_deinit(key);
	return cred;
}

/* GnuTLS's key and IV for one direction, against ours from secret. */
static void same_keys(struct sess *x, unsigned read, const uint8_t *secret, const char *what, int gen)
{
	gnutls_datum_t iv, key;
	uint8_t seq[8], mykey[32], myiv[12];
	size_t kl = 0;
	gnutls_mac_algorithm_t hash = (gnutls_mac_algorithm_t)gnutls_prf_hash_get(x->s);
	int r = ktls__record_keys(hash, gnutls_cipher_get(x->s), secret, x->len, mykey, &kl, myiv);
	CHECK(r == 0, "%s gen %d: deriving: %d", what, gen, r);
	CHECK(gnutls_record_get_state(x->s, read, NULL, &iv, &key, seq) == 0, "%s: record state", what);
	CHECK(key.size == kl && !memcmp(key.data, mykey, kl), "%s gen %d: the key differs from GnuTLS's", what, gen);
	CHECK(iv.size == 12 && !memcmp(iv.data, myiv, 12), "%s gen %d: the IV differs from GnuTLS's", what, gen);
}

static void test_keys(const char *cipher)
{
	int sv[2];
	struct sess c = { .server = false }, s = { .server = true };
	gnutls_certificate_credentials_t sc = server_cert(), cc;
	char prio[200];

	gnutls_certificate_allocate_credentials(&cc);
	snprintf(prio, sizeof(prio), "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+%s", cipher);
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	gnutls_init(&c.s, GNUTLS_CLIENT);
	gnutls_init(&s.s, GNUTLS_SERVER | GNUTLS_NO_TICKETS);
	struct sess *both[2] = { &c, &s };
	for (int i = 0; i < 2; i++) {
		struct sess *x = both[i];
		x->fd = sv[i];
		gnutls_session_set_ptr(x->s, x);
		CHECK(gnutls_priority_set_direct(x->s, prio, NULL) == 0, "priority %s", prio);
		gnutls_credentials_set(x->s, GNUTLS_CRD_CERTIFICATE, x->server ? sc : cc);
		gnutls_session_set_keylog_function(x->s, keylog);
		gnutls_transport_set_int(x->s, sv[i]);
	}
	pthread_t th;
	pthread_create(&th, NULL, do_handshake, &s);
	do_handshake(&c);
	pthread_join(th, NULL);
	CHECK(c.rc == 0 && s.rc == 0, "%s: handshake %s / %s", cipher, gnutls_strerror(c.rc), gnutls_strerror(s.rc));
	if (c.rc || s.rc)
		return;
	CHECK(c.len && c.len == s.len && !memcmp(c.tx, s.rx, c.len) && !memcmp(c.rx, s.tx, c.len),
	      "%s: the two sides' secrets do not pair", cipher);
	gnutls_mac_algorithm_t hash = (gnutls_mac_algorithm_t)gnutls_prf_hash_get(c.s);
	for (int gen = 0; gen < 4; gen++) {
		same_keys(&c, 0, c.tx, "client tx", gen);
		same_keys(&c, 1, c.rx, "client rx", gen);
		same_keys(&s, 0, s.tx, "server tx", gen);
		same_keys(&s, 1, s.rx, "server rx", gen);
		/* Each side updates its sending key once: the other reads the
		 * KeyUpdate with the next record. */
		char buf[8];
		CHECK(gnutls_session_key_update(c.s, 0) == 0, "client key update");
		CHECK(gnutls_record_send(c.s, "ping", 4) == 4, "client send");
		ssize_t r1, r2;
		/* GnuTLS may return AGAIN once it handled the KeyUpdate. */
		do
			r1 = gnutls_record_recv(s.s, buf, sizeof(buf));
		while (r1 == GNUTLS_E_AGAIN);
		CHECK(r1 == 4, "server recv: %s", gnutls_strerror((int)r1));
		CHECK(gnutls_session_key_update(s.s, 0) == 0, "server key update");
		CHECK(gnutls_record_send(s.s, "pong", 4) == 4, "server send");
		do
			r2 = gnutls_record_recv(c.s, buf, sizeof(buf));
		while (r2 == GNUTLS_E_AGAIN);
		CHECK(r2 == 4, "client recv: %s", gnutls_strerror((int)r2));
		CHECK(ktls__next_secret(hash, c.tx, c.len) == 0 && ktls__next_secret(hash, c.rx, c.len) == 0 &&
		      ktls__next_secret(hash, s.tx, s.len) == 0 && ktls__next_secret(hash, s.rx, s.len) == 0,
		      "next secret");
	}
	printf("keys: %s (%s): the first keys and 4 key updates each way equal GnuTLS's\n", cipher,
	       gnutls_mac_get_name(hash));
	gnutls_deinit(c.s);
	gnutls_deinit(s.s);
	gnutls_certificate_free_credentials(cc);
	gnutls_certificate_free_credentials(sc);
	close(sv[0]);
	close(sv[1]);
}

/* ---- the kernel ---------------------------------------------------------- */

struct side {
	struct xport *x;
	const struct xport_tls *t;
	bool server;
	int rc;
	char err[256];
};

static void *start(void *arg)
{
	struct side *s = arg;
	s->rc = xport__start_tls(s->x, s->t, s->server, "127.0.0.1", 3000, s->err, sizeof(s->err));
	return NULL;
}

struct pump {
	struct xport *x;
	int count, rc;
};

static size_t size_of(int i)
{
	static const size_t sizes[] = { 0, 1, 13, 4096, 16383, 16384, 16385, 65536, 1 << 20 };
	return sizes[i % (int)(sizeof(sizes) / sizeof(sizes[0]))];
}

static void *pump(void *arg)
{
	struct pump *p = arg;
	uint8_t *buf = malloc(1 << 20);
	for (int i = 0; i < p->count && !p->rc; i++) {
		size_t n = size_of(i);
		for (size_t k = 0; k < n; k++)
			buf[k] = (uint8_t)(k * 7 + (size_t)i);
		p->rc = xport__send_buf(p->x, 1, 0, (uint64_t)i, buf, n);
	}
	free(buf);
	return NULL;
}

static int check_stream(struct xport *x, int count)
{
	struct xport_msg m;
	char err[256];
	int bad = 0;
	xport_msg__init(&m);
	for (int i = 0; i < count; i++) {
		int rc = xport__recv(x, &m, 5000, err, sizeof(err));
		if (rc) {
			CHECK(rc == 0, "message %d: %s", i, err);
			bad++;
			break;
		}
		size_t n = size_of(i);
		bool ok = m.epoch == (uint64_t)i && m.payload.len == n;
		for (size_t k = 0; ok && k < n; k++)
			ok = ((uint8_t *)m.payload.data)[k] == (uint8_t)(k * 7 + (size_t)i);
		bad += !ok;
	}
	xport_msg__free(&m);
	return bad;
}

static int test_kernel(void)
{
	char why[200], spec[300], err[256];
	if (ktls__probe(why, sizeof(why))) {
		printf("SKIP: the kernel's TLS cannot be tested here: %s\n", why);
		return 77;
	}
	printf("kernel: %s\n", why);
	/* mkstemp() template: this run's key file. */
	char keyfile[] = "/tmp/ftvm-ktls-XXXXXX";
	int kfd = mkstemp(keyfile);
	const char hex[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
	CHECK(kfd >= 0 && write(kfd, hex, sizeof(hex) - 1) == (ssize_t)sizeof(hex) - 1, "key file");
	close(kfd);
	struct xport_tls *t = NULL;
	snprintf(spec, sizeof(spec), "psk:%s", keyfile);
	CHECK(xport_tls__load(spec, &t, err, sizeof(err)) == 0, "%s", err);
	if (!t)
		return 1;
	xport_tls__set_rekey_records(t, 64);	/* 1 MiB a key */
	int l = socket(AF_INET, SOCK_STREAM, 0), a, b;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	bind(l, (struct sockaddr *)&sa, sizeof(sa));
	listen(l, 1);
	getsockname(l, (struct sockaddr *)&sa, &sl);
	a = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(a, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect");
	b = accept(l, NULL, NULL);
	close(l);
	struct side s = { .t = t, .server = true }, c = { .t = t, .server = false };
	xport__from_fd(b, NULL, &s.x);
	xport__from_fd(a, NULL, &c.x);
	pthread_t th;
	pthread_create(&th, NULL, start, &s);
	start(&c);
	pthread_join(th, NULL);
	CHECK(s.rc == 0 && c.rc == 0, "handshake: %s / %s", s.err, c.err);
	char cs[80];
	xport__cipher(c.x, cs, sizeof(cs));
	printf("cipher: %s\n", cs);
	CHECK(strstr(cs, "(kTLS)") != NULL, "the kernel can, but the connection is not in it: %s", cs);
	/* Both ways at once, a few hundred MiB: many key updates each way. */
	int count = 1800;
	struct pump pc = { c.x, count, 0 }, ps = { s.x, count, 0 };
	pthread_t t1, t2;
	pthread_create(&t1, NULL, pump, &pc);
	pthread_create(&t2, NULL, pump, &ps);
	int bad = check_stream(s.x, count) + check_stream(c.x, count);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	printf("kernel: %d messages each way, %d bad; key updates %llu / %llu\n", count, bad,
	       (unsigned long long)xport__rekeys(c.x), (unsigned long long)xport__rekeys(s.x));
	CHECK(pc.rc == 0 && ps.rc == 0 && bad == 0, "send %d/%d, %d bad", pc.rc, ps.rc, bad);
	CHECK(xport__rekeys(c.x) >= 1 && xport__rekeys(s.x) >= 1, "no key update in the kernel");
	xport__close(c.x);
	xport__close(s.x);
	xport_tls__free(t);
	unlink(keyfile);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "kernel"))
		return test_kernel();
	test_keys("AES-128-GCM");
	test_keys("AES-256-GCM");
	test_keys("CHACHA20-POLY1305");
	return failures ? 1 : 0;
}
