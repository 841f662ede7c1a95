/*
 * TLS 1.3 on a TCP connection (GnuTLS), mutually authenticated:
 *
 *   psk:FILE   a pre-shared key (hex, in a file only its owner may read),
 *              with an (EC)DHE exchange: psk_dhe_ke, never psk_ke, so a key
 *              that leaks later does not decrypt recorded traffic;
 *   x509:DIR   DIR/ca-cert.pem, DIR/host-cert.pem, DIR/host-key.pem: each
 *              side presents its certificate and checks the other's against
 *              the CA and against the peer's address (the host connected
 *              to; the address a connection came from), or the peer= name.
 *
 * Threads: the transport's rule (any number of senders, serialised by the
 * send lock; one receiver) maps onto GnuTLS's "one thread sends, another
 * receives". Nothing received ever makes us send: the server sends no
 * session tickets, and a key update is sent by each side for its own
 * direction only (GNUTLS_KU_PEER is never asked), from the sending thread.
 *
 * Key use is bounded (RFC 8446, 5.5: AES-GCM at most 2^24.5 full records
 * per key): after `rekey_records` records the sender updates its key.
 *
 * Where the kernel has TLS (and can update TLS 1.3 keys), the records are
 * its work once the handshake is done: ktls.c.
 *
 * Reads honour the transport's inactivity timeout: the socket is read with
 * MSG_DONTWAIT, and an empty socket is polled unless GnuTLS holds
 * decrypted bytes already.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "xport_internal.h"

#define TLS_PSK_USER "ftvm"
#define TLS_PSK_MIN_BYTES 16
#define TLS_PSK_MAX_BYTES 64
#define TLS_STAGE 65536		/* plaintext handed to GnuTLS per call */
/* 2^24 records, under AES-GCM's 2^24.5 (RFC 8446, 5.5). */
#define TLS_REKEY_RECORDS (1ull << 24)
#define TLS_RECORD 16384u

/* AES-GCM first (AES-NI on x86 hosts of both vendors), ChaCha20 last. */
#define PRIO_CIPHERS ":-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"
#define PRIO_PSK "NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+ECDHE-PSK:+DHE-PSK" PRIO_CIPHERS
#define PRIO_X509 "NORMAL:-VERS-ALL:+VERS-TLS1.3" PRIO_CIPHERS

struct xport_tls {
	bool psk;
	uint8_t key[TLS_PSK_MAX_BYTES];
	size_t key_len;
	gnutls_psk_server_credentials_t psk_srv;
	gnutls_psk_client_credentials_t psk_cli;
	gnutls_certificate_credentials_t x509;
	char peer_name[256];	/* x509: the name the peer's certificate must carry ("" = any the CA signed, or the host connected to) */
	uint64_t rekey_records;
	bool ktls;		/* ktls=auto (the default) and this kernel can (ktls__probe) */
	char offload[200];	/* where records are encrypted, and why there */
	char desc[300];
};

struct tls_conn {
	gnutls_session_t s;
	int fd;
	const struct xport_tls *creds;
	/* Sending side, under the transport's send lock. */
	uint64_t records;	/* since the last key update */
	uint64_t rekey_records;
	uint64_t last_rekey_ns;
	bool corked;		/* between tls_conn__cork and __uncork: no key update */
	_Atomic uint64_t rekeys;
	/* The kernel's TLS, once the handshake is done (ktls.c); NULL: here. */
	struct ktls *k;
	/* For the kernel: the traffic secrets (GnuTLS's keylog hook) and,
	 * during the handshake, reads that never go past the record GnuTLS
	 * is reading, so that nothing it buffered is lost when the kernel
	 * takes the socket over. */
	bool server, framed;
	uint8_t secret_tx[KTLS_SECRET_MAX], secret_rx[KTLS_SECRET_MAX];
	size_t secret_len;
	uint8_t rec_hdr[5];
	size_t rec_hdr_got, rec_left;
	uint8_t stage[TLS_STAGE];
};

/* ---- credentials ------------------------------------------------------------ */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int load_psk(struct xport_tls *t, const char *path, char *err, size_t errlen)
{
	char text[2 * TLS_PSK_MAX_BYTES + 64];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0) {
		int ret = -errno;
		xport__seterr(err, errlen, "psk:%s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		xport__seterr(err, errlen, "psk:%s: not a regular file", path);
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		close(fd);
		xport__seterr(err, errlen, "psk:%s: mode %04o: others may read the key; it must be 0600 "
			      "(chmod 600 %s)", path, (unsigned)(st.st_mode & 07777), path);
		return -EPERM;
	}
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0) {
		xport__seterr(err, errlen, "psk:%s: %s", path, strerror(errno));
		return -EIO;
	}
	text[n] = '\0';
	size_t digits = 0;
	int hi = -1;
	for (ssize_t i = 0; i < n; i++) {
		int v = hexval((unsigned char)text[i]);
		if (v < 0) {
			if (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')
				continue;
			xport__seterr(err, errlen, "psk:%s: not a hex key (byte %zd)", path, i);
			return -EINVAL;
		}
		if (digits / 2 >= TLS_PSK_MAX_BYTES) {
			xport__seterr(err, errlen, "psk:%s: longer than %d bytes", path, TLS_PSK_MAX_BYTES);
			return -EINVAL;
		}
		if (hi < 0) {
			hi = v;
		} else {
			t->key[digits / 2] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
		digits++;
	}
	if (hi >= 0 || digits / 2 < TLS_PSK_MIN_BYTES) {
		xport__seterr(err, errlen, "psk:%s: %zu hex digits; a key is %d to %d bytes (e.g. "
			      "`head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'`)", path, digits,
			      TLS_PSK_MIN_BYTES, TLS_PSK_MAX_BYTES);
		return -EINVAL;
	}
	t->key_len = digits / 2;
	return 0;
}

static int psk_server_key(gnutls_session_t s, const char *user, gnutls_datum_t *key)
{
	struct tls_conn *c = gnutls_session_get_ptr(s);
	(void)user;	/* one key per link: the identity carries nothing */
	key->data = gnutls_malloc(c->creds->key_len);
	if (!key->data)
		return -1;
	memcpy(key->data, c->creds->key, c->creds->key_len);
	key->size = (unsigned)c->creds->key_len;
	return 0;
}

static int load_x509(struct xport_tls *t, const char *dir, char *err, size_t errlen)
{
	char ca[4096], cert[4096], key[4096];
	int r;

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	snprintf(cert, sizeof(cert), "%s/host-cert.pem", dir);
	snprintf(key, sizeof(key), "%s/host-key.pem", dir);
	struct stat st;
	if (stat(key, &st) == 0 && (st.st_mode & 077)) {
		xport__seterr(err, errlen, "x509:%s: host-key.pem has mode %04o; it must be 0600", dir,
			      (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	if ((r = gnutls_certificate_allocate_credentials(&t->x509)) < 0)
		goto fail;
	r = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
	if (r <= 0) {
		xport__seterr(err, errlen, "x509:%s: ca-cert.pem: %s", dir,
			      r == 0 ? "no certificate in it" : gnutls_strerror(r));
		return -EINVAL;
	}
	r = gnutls_certificate_set_x509_key_file(t->x509, cert, key, GNUTLS_X509_FMT_PEM);
	if (r < 0) {
		xport__seterr(err, errlen, "x509:%s: host-cert.pem / host-key.pem: %s", dir, gnutls_strerror(r));
		return -EINVAL;
	}
	return 0;
fail:
	xport__seterr(err, errlen, "x509:%s: %s", dir, gnutls_strerror(r));
	return -ENOMEM;
}

int xport_tls__load(const char *spec, struct xport_tls **out, char *err, size_t errlen)
{
	struct xport_tls *t = calloc(1, sizeof(*t));
	char path[4096];
	int ret;

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->rekey_records = TLS_REKEY_RECORDS;
	/* "psk:FILE" or "x509:DIR[,peer=NAME]" */
	const char *colon = strchr(spec, ':');
	if (!colon || !colon[1]) {
		xport__seterr(err, errlen, "--tls-creds %s: expected psk:FILE or x509:DIR", spec);
		free(t);
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "%s", colon + 1);
	bool peer_opt = false, ktls = true;
	char *opt = strchr(path, ',');
	if (opt)
		*opt++ = '\0';
	while (opt && *opt) {
		char *next = strchr(opt, ',');
		if (next)
			*next++ = '\0';
		if (!strncmp(opt, "peer=", 5) && opt[5]) {
			snprintf(t->peer_name, sizeof(t->peer_name), "%s", opt + 5);
			peer_opt = true;
		} else if (!strcmp(opt, "ktls=off") || !strcmp(opt, "ktls=auto")) {
			ktls = !strcmp(opt, "ktls=auto");
		} else {
			xport__seterr(err, errlen, "--tls-creds %s: unknown option %s (peer=NAME, ktls=auto|off)",
				      spec, opt);
			free(t);
			return -EINVAL;
		}
		opt = next;
	}
	if (ktls) {
		char why[160];
		t->ktls = ktls__probe(why, sizeof(why)) == 0;
		snprintf(t->offload, sizeof(t->offload), "%s: %s", t->ktls ? "kernel" : "user space", why);
	} else {
		snprintf(t->offload, sizeof(t->offload), "user space: ktls=off");
	}
	if (strncmp(spec, "psk:", 4) == 0 && !peer_opt) {
		t->psk = true;
		ret = load_psk(t, path, err, errlen);
		if (!ret && (gnutls_psk_allocate_server_credentials(&t->psk_srv) < 0 ||
			     gnutls_psk_allocate_client_credentials(&t->psk_cli) < 0))
			ret = -ENOMEM;
		if (!ret) {
			gnutls_psk_set_server_credentials_function(t->psk_srv, psk_server_key);
			gnutls_datum_t k = { t->key, (unsigned)t->key_len };
			if (gnutls_psk_set_client_credentials(t->psk_cli, TLS_PSK_USER, &k,
							      GNUTLS_PSK_KEY_RAW) < 0)
				ret = -EINVAL;
		}
		snprintf(t->desc, sizeof(t->desc), "psk");
	} else if (strncmp(spec, "x509:", 5) == 0) {
		ret = load_x509(t, path, err, errlen);
		snprintf(t->desc, sizeof(t->desc), "x509%s%s", t->peer_name[0] ? " peer=" : "", t->peer_name);
	} else {
		xport__seterr(err, errlen, "--tls-creds %s: expected psk:FILE or x509:DIR[,peer=NAME]", spec);
		ret = -EINVAL;
	}
	if (ret) {
		xport_tls__free(t);
		return ret;
	}
	*out = t;
	return 0;
}

void xport_tls__free(struct xport_tls *t)
{
	if (!t)
		return;
	if (t->psk_srv)
		gnutls_psk_free_server_credentials(t->psk_srv);
	if (t->psk_cli)
		gnutls_psk_free_client_credentials(t->psk_cli);
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	memset(t->key, 0, sizeof(t->key));
	free(t);
}

const char *xport_tls__describe(const struct xport_tls *t)
{
	return t ? t->desc : "none";
}

const char *xport_tls__offload(const struct xport_tls *t)
{
	return t ? t->offload : "none";
}

void xport_tls__set_rekey_records(struct xport_tls *t, uint64_t n)
{
	t->rekey_records = n ? n : TLS_REKEY_RECORDS;
}

/* ---- the socket under GnuTLS ---------------------------------------------------- */

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *data, size_t len)
{
	struct tls_conn *c = p;
	ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
	if (n < 0)
		gnutls_transport_set_errno(c->s, errno);
	return n;
}

/*
 * Framed (during a handshake that may hand over to the kernel): a read
 * stops at the end of the TLS record being read, its 5-byte header first.
 */
static ssize_t tls_pull(gnutls_transport_ptr_t p, void *data, size_t len)
{
	struct tls_conn *c = p;
	if (c->framed) {
		size_t most = c->rec_left ? c->rec_left : sizeof(c->rec_hdr) - c->rec_hdr_got;
		len = len < most ? len : most;
	}
	ssize_t n = recv(c->fd, data, len, MSG_DONTWAIT);
	if (n < 0)
		gnutls_transport_set_errno(c->s, errno == EWOULDBLOCK ? EAGAIN : errno);
	if (n > 0 && c->framed) {
		if (c->rec_left) {
			c->rec_left -= (size_t)n;
		} else {
			memcpy(c->rec_hdr + c->rec_hdr_got, data, (size_t)n);
			c->rec_hdr_got += (size_t)n;
			if (c->rec_hdr_got == sizeof(c->rec_hdr)) {
				c->rec_left = (size_t)c->rec_hdr[3] << 8 | c->rec_hdr[4];
				c->rec_hdr_got = 0;
			}
		}
	}
	return n;
}

/* GnuTLS's keylog hook: the application traffic secrets, for the kernel. */
static int keep_secret(gnutls_session_t s, const char *label, const gnutls_datum_t *secret)
{
	struct tls_conn *c = gnutls_session_get_ptr(s);
	bool client = !strcmp(label, "CLIENT_TRAFFIC_SECRET_0");
	if ((!client && strcmp(label, "SERVER_TRAFFIC_SECRET_0")) || secret->size > KTLS_SECRET_MAX)
		return 0;
	memcpy(client == c->server ? c->secret_rx : c->secret_tx, secret->data, secret->size);
	c->secret_len = secret->size;
	return 0;
}

/* After the handshake: the kernel's TLS where it can; 0 or -errno (the connection is unusable). */
static int offload(struct tls_conn *c, char *err, size_t errlen)
{
	char why[256];
	int r = -ENOTSUP;
	if (gnutls_record_check_pending(c->s) || c->rec_left || c->rec_hdr_got)
		snprintf(why, sizeof(why), "kTLS: GnuTLS already holds received bytes");
	else
		r = ktls__start(c->fd, c->s, c->secret_tx, c->secret_rx, c->secret_len, c->rekey_records,
				&c->k, why, sizeof(why));
	gnutls_memset(c->secret_tx, 0, sizeof(c->secret_tx));
	gnutls_memset(c->secret_rx, 0, sizeof(c->secret_rx));
	if (r == -ENOTSUP) {
		fprintf(stderr, "ftvm: tls: %s; TLS stays in user space on this connection\n", why);
		return 0;
	}
	if (r)
		xport__seterr(err, errlen, "%s", why);
	return r;
}

static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
	struct tls_conn *c = p;
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	int r = poll(&pfd, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
	return r < 0 ? -1 : r;
}

/* Waits for the socket to be ready for events; 0, -ETIMEDOUT or -errno. */
static int wait_fd(struct tls_conn *c, short events, uint64_t deadline)
{
	struct pollfd pfd = { .fd = c->fd, .events = events };
	int r = poll(&pfd, 1, xport__ms_left(deadline));
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0 && errno != EINTR)
		return -errno;
	return 0;
}

/* What went wrong in a handshake, in words for the log. */
static void describe_failure(struct tls_conn *c, int r, char *err, size_t errlen)
{
	if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		gnutls_datum_t out = { 0 };
		unsigned status = gnutls_session_get_verify_cert_status(c->s);
		if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
			xport__seterr(err, errlen, "authentication failed: %s", (char *)out.data);
			gnutls_free(out.data);
			return;
		}
	}
	if (r == GNUTLS_E_FATAL_ALERT_RECEIVED || r == GNUTLS_E_WARNING_ALERT_RECEIVED) {
		xport__seterr(err, errlen, "authentication failed: the peer refused (%s)",
			      gnutls_alert_get_name(gnutls_alert_get(c->s)));
		return;
	}
	xport__seterr(err, errlen, "authentication failed: %s", gnutls_strerror(r));
}

void tls_conn__free(struct tls_conn *c)
{
	if (!c)
		return;
	if (c->s)
		gnutls_deinit(c->s);
	ktls__free(c->k);
	gnutls_memset(c, 0, sizeof(*c));
	free(c);
}

int tls_conn__handshake(int fd, const struct xport_tls *t, bool server, const char *peer_name,
			int timeout_ms, struct tls_conn **out, char *err, size_t errlen)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	const char *pos = NULL;
	int r;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->fd = fd;
	c->creds = t;
	c->server = server;
	c->framed = true;	/* always: then every handshake runs the framed reads */
	c->rekey_records = t->rekey_records;
	c->last_rekey_ns = xport__now_ns();
	r = gnutls_init(&c->s, server ? GNUTLS_SERVER | GNUTLS_NO_TICKETS : GNUTLS_CLIENT);
	if (r < 0)
		goto fail;
	gnutls_session_set_ptr(c->s, c);
	r = gnutls_priority_set_direct(c->s, t->psk ? PRIO_PSK : PRIO_X509, &pos);
	if (r < 0)
		goto fail;
	if (t->psk) {
		r = server ? gnutls_credentials_set(c->s, GNUTLS_CRD_PSK, t->psk_srv)
			   : gnutls_credentials_set(c->s, GNUTLS_CRD_PSK, t->psk_cli);
	} else {
		r = gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, t->x509);
		if (r >= 0 && server)
			gnutls_certificate_server_set_request(c->s, GNUTLS_CERT_REQUIRE);
		if (r >= 0) {
			/* The name the peer's certificate must carry: peer= if
			 * given; else the peer's address (connecting: the host we
			 * connected to; accepting: the address it came from). */
			const char *name = t->peer_name[0] ? t->peer_name : peer_name;
			gnutls_session_set_verify_cert(c->s, name && *name ? name : NULL, 0);
		}
	}
	if (r < 0)
		goto fail;
	if (t->ktls)
		gnutls_session_set_keylog_function(c->s, keep_secret);
	gnutls_transport_set_ptr(c->s, c);
	gnutls_transport_set_push_function(c->s, tls_push);
	gnutls_transport_set_pull_function(c->s, tls_pull);
	gnutls_transport_set_pull_timeout_function(c->s, tls_pull_timeout);
	gnutls_handshake_set_timeout(c->s, timeout_ms > 0 ? (unsigned)timeout_ms : GNUTLS_INDEFINITE_TIMEOUT);

	uint64_t deadline = xport__deadline(timeout_ms);
	for (;;) {
		r = gnutls_handshake(c->s);
		if (r >= 0)
			break;
		if (r == GNUTLS_E_PUSH_ERROR || r == GNUTLS_E_PULL_ERROR ||
		    r == GNUTLS_E_PREMATURE_TERMINATION) {
			xport__seterr(err, errlen, "TLS handshake: the peer closed the connection");
			tls_conn__free(c);
			return -EPIPE;
		}
		if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) {
			describe_failure(c, r, err, errlen);
			/* The peer learns no more than a TLS alert. */
			gnutls_alert_send_appropriate(c->s, r);
			tls_conn__free(c);
			return -EACCES;
		}
		int w = wait_fd(c, gnutls_record_get_direction(c->s) ? POLLOUT : POLLIN, deadline);
		if (w) {
			xport__seterr(err, errlen, "TLS handshake: %s",
				      w == -ETIMEDOUT ? "no answer in time" : strerror(-w));
			tls_conn__free(c);
			return w;
		}
	}
	if (gnutls_protocol_get_version(c->s) != GNUTLS_TLS1_3) {
		xport__seterr(err, errlen, "authentication failed: the peer does not speak TLS 1.3");
		tls_conn__free(c);
		return -EACCES;
	}
	c->framed = false;
	if (t->ktls && (r = offload(c, err, errlen))) {
		tls_conn__free(c);
		return r;
	}
	*out = c;
	return 0;
fail:
	xport__seterr(err, errlen, "TLS setup: %s", gnutls_strerror(r));
	tls_conn__free(c);
	return -EINVAL;
}

const char *tls_conn__cipher(struct tls_conn *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s%s", gnutls_protocol_get_name(gnutls_protocol_get_version(c->s)),
		 gnutls_cipher_get_name(gnutls_cipher_get(c->s)), c->k ? " (kTLS)" : "");
	return buf;
}

uint64_t tls_conn__rekeys(struct tls_conn *c)
{
	if (c->k)
		return ktls__rekeys(c->k);
	return atomic_load(&c->rekeys);
}

/*
 * Updates the sending key once rekey_records records went out under it.
 * GnuTLS refuses more than 8 key updates a second from its peer
 * (KEY_UPDATES_PER_WINDOW): never more than 4 here. Only a lowered test
 * limit comes near; 2^24 records take minutes at any speed. Not inside a
 * batch: the batch's records leave first (tls_conn__uncork calls this).
 */
static int maybe_rekey(struct tls_conn *c)
{
	if (c->corked || c->records < c->rekey_records ||
	    xport__now_ns() - c->last_rekey_ns < 250000000ull)
		return 0;
	int r;
	do
		r = gnutls_session_key_update(c->s, 0);
	while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
	if (r < 0)
		return -ECONNRESET;
	c->records = 0;
	c->last_rekey_ns = xport__now_ns();
	atomic_fetch_add(&c->rekeys, 1);
	return 0;
}

static int send_all(struct tls_conn *c, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = gnutls_record_send(c->s, p, len);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n < 0)
			return n == GNUTLS_E_PUSH_ERROR ? -EPIPE : -ECONNRESET;
		c->records += ((size_t)n + TLS_RECORD - 1) / TLS_RECORD;
		p += n;
		len -= (size_t)n;
	}
	return maybe_rekey(c);
}

void tls_conn__cork(struct tls_conn *c)
{
	if (c->k)
		return;	/* the kernel makes its records as the bytes come */
	gnutls_record_cork(c->s);
	c->corked = true;	/* a key update waits for the batch to leave */
}

int tls_conn__uncork(struct tls_conn *c)
{
	if (c->k)
		return 0;
	c->corked = false;
	for (;;) {
		int r = gnutls_record_uncork(c->s, GNUTLS_RECORD_WAIT);
		if (r >= 0)
			return maybe_rekey(c);
		if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
			return -EPIPE;
	}
}

/* All bytes of iov, as records of up to 16 KiB (gathered 64 KiB at a time). */
int tls_conn__writev(struct tls_conn *c, const struct iovec *iov, int iovcnt)
{
	size_t staged = 0;
	int ret = 0;

	if (c->k)
		return ktls__writev(c->k, iov, iovcnt);
	for (int i = 0; i < iovcnt && !ret; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;
		while (left && !ret) {
			if (!staged && left >= TLS_STAGE) {
				/* Large and aligned to nothing staged: straight through. */
				size_t n = left - left % TLS_STAGE;
				ret = send_all(c, p, n);
				p += n;
				left -= n;
				continue;
			}
			size_t n = TLS_STAGE - staged < left ? TLS_STAGE - staged : left;
			memcpy(c->stage + staged, p, n);
			staged += n;
			p += n;
			left -= n;
			if (staged == TLS_STAGE) {
				ret = send_all(c, c->stage, staged);
				staged = 0;
			}
		}
	}
	if (!ret && staged)
		ret = send_all(c, c->stage, staged);
	return ret;
}

int tls_conn__read(struct tls_conn *c, struct xport *x, void *buf, size_t len, int timeout_ms)
{
	uint8_t *p = buf;
	size_t got = 0;
	uint64_t deadline = xport__deadline(timeout_ms);

	if (c->k)
		return ktls__read(c->k, x, buf, len, timeout_ms);
	while (got < len) {
		ssize_t n = gnutls_record_recv(c->s, p + got, len - got);
		if (n > 0) {
			got += (size_t)n;
			xport__note_rx(x, (size_t)n);
			deadline = xport__deadline(timeout_ms);
			continue;
		}
		if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION)
			return -EPIPE;
		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n != GNUTLS_E_AGAIN) {
			return n == GNUTLS_E_DECRYPTION_FAILED ? -EBADMSG : -ECONNRESET;
		}
		if (gnutls_record_check_pending(c->s))
			continue;
		int w = wait_fd(c, POLLIN, deadline);
		if (w)
			return w;
	}
	return 0;
}
