/*
 * The generic half of transport/: framing, integrity checks and the
 * bookkeeping every backend shares.  Backends only move bytes.
 *
 * Receiving is a small resumable state machine (struct xport_rx): header
 * bytes, then payload bytes, each accounted as they land.  That is what lets
 * an inactivity timeout return to the caller in the middle of a message and
 * the next call carry on, instead of either blocking a heartbeat loop for the
 * length of a large checkpoint or losing framing.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xport_internal.h"

/* Payload is read in slices this big so its crc is computed while the
 * bytes are still in cache, and memory grows only as data arrives. */
#define RX_SLICE (256u << 10)
/* iovecs up to this count are framed on the stack. */
#define SEND_STACK_IOV 16

static const struct xport_ops *const backends[] = {
	&xport_tcp_ops,
#ifdef FTVM_HAVE_RDMA
	&xport_rdma_ops,
#endif
};

void xport__seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------------
 * Helpers shared with the backends
 * ------------------------------------------------------------------------ */

uint64_t xport__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t xport__deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return 0;
	return xport__now_ns() + (uint64_t)timeout_ms * 1000000u;
}

int xport__ms_left(uint64_t deadline_ns)
{
	uint64_t now;
	uint64_t ms;

	if (!deadline_ns)
		return -1;
	now = xport__now_ns();
	if (now >= deadline_ns)
		return 0;
	/* Round up: poll(…, 0) for a deadline 0.3 ms away would spin. */
	ms = (deadline_ns - now + 999999u) / 1000000u;
	return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

int xport__base_init(struct xport *x, const struct xport_ops *ops,
		     const char *peer)
{
	int rc;

	x->ops = ops;
	snprintf(x->peer, sizeof(x->peer), "%s", peer ? peer : "?");
	rc = pthread_mutex_init(&x->send_lock, NULL);
	if (rc)
		return -rc;
	x->send_err = 0;
	memset(&x->rx, 0, sizeof(x->rx));
	sbuf__init(&x->rx.payload);
	sbuf__init(&x->batch);
	x->rx_err = 0;
	x->rx_errmsg[0] = '\0';
	x->max_payload = XPORT_MAX_PAYLOAD;
	x->type_names = NULL;
	x->ntype_names = 0;
	atomic_init(&x->last_rx_ns, xport__now_ns());
	atomic_init(&x->last_tx_ns, xport__now_ns());
	atomic_init(&x->bytes_sent, 0);
	atomic_init(&x->bytes_received, 0);
	atomic_init(&x->shut, false);
	atomic_init(&x->fault, XPORT_FAULT_NONE);
	return 0;
}

void xport__note_rx(struct xport *x, size_t n)
{
	if (!n)
		return;
	atomic_fetch_add_explicit(&x->bytes_received, n, memory_order_relaxed);
	atomic_store_explicit(&x->last_rx_ns, xport__now_ns(),
			      memory_order_relaxed);
}

int xport__split_hostport(const char *addr, char *host, size_t hostlen,
			  char *port, size_t portlen, char *err, size_t errlen)
{
	const char *colon, *h = addr;
	size_t hl;
	char *end;
	unsigned long pn;

	if (addr[0] == '[') {
		const char *rb = strchr(addr, ']');

		if (!rb || rb[1] != ':') {
			xport__seterr(err, errlen,
			       "bad address '%s': expected [IPV6]:PORT", addr);
			return -EINVAL;
		}
		h = addr + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon) {
			xport__seterr(err, errlen,
			       "bad address '%s': expected HOST:PORT", addr);
			return -EINVAL;
		}
		hl = (size_t)(colon - addr);
		if (memchr(addr, ':', hl)) {
			xport__seterr(err, errlen,
			       "bad address '%s': put an IPv6 address in "
			       "brackets, e.g. [::1]:4444", addr);
			return -EINVAL;
		}
	}
	if (hl >= hostlen) {
		xport__seterr(err, errlen, "bad address '%s': host name too long",
		       addr);
		return -EINVAL;
	}
	errno = 0;
	pn = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || pn > 65535 ||
	    strlen(colon + 1) >= portlen) {
		xport__seterr(err, errlen, "bad address '%s': port must be 0..65535",
		       addr);
		return -EINVAL;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (!strcmp(host, "0"))
		host[0] = '\0';
	snprintf(port, portlen, "%lu", pn);
	return 0;
}

void xport__format_sockaddr(const struct sockaddr *sa, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(buf, len, "%s:%u", a, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 =
			(const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], a,
				  sizeof(a));
			snprintf(buf, len, "%s:%u", a, ntohs(s6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
			snprintf(buf, len, "[%s]:%u", a, ntohs(s6->sin6_port));
		}
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(buf, len, "unix");
	} else {
		snprintf(buf, len, "family-%d", sa->sa_family);
	}
}

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------ */

static const struct xport_ops *find_backend(const char *uri, const char **rest,
					    char *err, size_t errlen)
{
	const char *colon = strchr(uri, ':');
	size_t n;

	if (!colon) {
		xport__seterr(err, errlen,
		       "bad address '%s': expected tcp:HOST:PORT or "
		       "rdma:HOST:PORT", uri);
		return NULL;
	}
	n = (size_t)(colon - uri);
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		if (strlen(backends[i]->scheme) == n &&
		    !strncmp(backends[i]->scheme, uri, n)) {
			*rest = colon + 1;
			return backends[i];
		}
	}
	if (n == 4 && !strncmp(uri, "rdma", 4))
		xport__seterr(err, errlen,
		       "'%s': this ftvm was built without RDMA support "
		       "(librdmacm/libibverbs not found at build time)", uri);
	else
		xport__seterr(err, errlen,
		       "bad address '%s': unknown transport '%.*s' (tcp, "
		       "rdma)", uri, (int)n, uri);
	return NULL;
}

int xport__listen(const char *uri, struct xport_listener **out, char *err,
		  size_t errlen)
{
	const struct xport_ops *ops;
	const char *rest;

	*out = NULL;
	ops = find_backend(uri, &rest, err, errlen);
	if (!ops)
		return strncmp(uri, "rdma:", 5) ? -EINVAL : -EPROTONOSUPPORT;
	return ops->listen(rest, out, err, errlen);
}

int xport__accept(struct xport_listener *l, int timeout_ms,
		  struct xport **out, char *err, size_t errlen)
{
	*out = NULL;
	return l->ops->accept(l, timeout_ms, out, err, errlen);
}

int xport__connect(const char *uri, int timeout_ms, struct xport **out,
		   char *err, size_t errlen)
{
	const struct xport_ops *ops;
	const char *rest;

	*out = NULL;
	ops = find_backend(uri, &rest, err, errlen);
	if (!ops)
		return strncmp(uri, "rdma:", 5) ? -EINVAL : -EPROTONOSUPPORT;
	return ops->connect(rest, timeout_ms, out, err, errlen);
}

void xport__listener_close(struct xport_listener *l)
{
	if (l)
		l->ops->listener_close(l);
}

int xport__listener_port(struct xport_listener *l)
{
	return l->port;
}

const char *xport__listener_addr(struct xport_listener *l)
{
	return l->addr;
}

int xport__poll_fd(struct xport *x)
{
	return x->ops->poll_fd(x);
}

uint64_t xport__last_tx_ns(struct xport *x)
{
	return atomic_load_explicit(&x->last_tx_ns, memory_order_relaxed);
}

uint64_t xport__last_rx_ns(struct xport *x)
{
	return atomic_load_explicit(&x->last_rx_ns, memory_order_relaxed);
}

uint64_t xport__bytes_sent(struct xport *x)
{
	return atomic_load_explicit(&x->bytes_sent, memory_order_relaxed);
}

uint64_t xport__bytes_received(struct xport *x)
{
	return atomic_load_explicit(&x->bytes_received, memory_order_relaxed);
}

int xport__start_tls(struct xport *x, const struct xport_tls *t, bool server, const char *peer_name,
		     int timeout_ms, char *err, size_t errlen)
{
	if (x->ops != &xport_tcp_ops) {
		xport__seterr(err, errlen, "TLS runs over tcp: links only, not %s", x->ops->scheme);
		return -EOPNOTSUPP;
	}
	return tcp__start_tls(x, t, server, peer_name, timeout_ms, err, errlen);
}

const char *xport__cipher(struct xport *x, char *buf, size_t len)
{
	struct tls_conn *c = x->ops == &xport_tcp_ops ? tcp__tls(x) : NULL;
	if (!c) {
		snprintf(buf, len, "none");
		return buf;
	}
	return tls_conn__cipher(c, buf, len);
}

void xport__batch_begin(struct xport *x)
{
	if (x->ops != &xport_tcp_ops)
		return;
	struct tls_conn *c = tcp__tls(x);
	pthread_mutex_lock(&x->send_lock);
	if (c)
		tls_conn__cork(c);
	else
		x->batching = true;
	pthread_mutex_unlock(&x->send_lock);
}

/* What the batch holds, written ahead of iov (NULL: alone). Under send_lock. */
static int batch_flush(struct xport *x, const struct iovec *iov, int iovcnt, struct iovec *with)
{
	if (!x->batch.len)
		return iov ? x->ops->writev(x, iov, iovcnt) : 0;
	with[0] = (struct iovec){ x->batch.data, x->batch.len };
	if (iov)
		memcpy(with + 1, iov, sizeof(*iov) * (size_t)iovcnt);
	int rc = x->ops->writev(x, with, iov ? iovcnt + 1 : 1);
	sbuf__reset(&x->batch);
	return rc;
}

int xport__batch_end(struct xport *x)
{
	if (x->ops != &xport_tcp_ops)
		return 0;
	struct tls_conn *c = tcp__tls(x);
	pthread_mutex_lock(&x->send_lock);
	int ret = x->send_err;
	int r;
	if (c) {
		r = tls_conn__uncork(c);
	} else {
		struct iovec one[1];
		x->batching = false;
		r = ret ? 0 : batch_flush(x, NULL, 0, one);
		sbuf__reset(&x->batch);
	}
	if (r && !ret)
		ret = x->send_err = r;
	if (!ret)
		atomic_store(&x->last_tx_ns, xport__now_ns());
	pthread_mutex_unlock(&x->send_lock);
	return ret;
}

uint64_t xport__rekeys(struct xport *x)
{
	struct tls_conn *c = x->ops == &xport_tcp_ops ? tcp__tls(x) : NULL;
	return c ? tls_conn__rekeys(c) : 0;
}

void xport__shutdown(struct xport *x)
{
	/* The flag first: a reader woken by the backend must see it, so it
	 * reports -ESHUTDOWN rather than "peer closed". */
	atomic_store(&x->shut, true);
	x->ops->shutdown(x);
}

void xport__close(struct xport *x)
{
	if (!x)
		return;
	pthread_mutex_destroy(&x->send_lock);
	sbuf__free(&x->rx.payload);
	sbuf__free(&x->batch);
	x->ops->close(x);
}

const char *xport__peer(struct xport *x)
{
	return x->peer;
}

const char *xport__scheme(struct xport *x)
{
	return x->ops->scheme;
}

void xport__set_type_names(struct xport *x, const char *const *names,
			   unsigned n)
{
	x->type_names = names;
	x->ntype_names = names ? n : 0;
}

int xport__set_max_payload(struct xport *x, uint32_t max)
{
	if (max > XPORT_MAX_PAYLOAD)
		return -EINVAL;
	x->max_payload = max;
	return 0;
}

void xport_msg__init(struct xport_msg *m)
{
	m->type = 0;
	m->flags = 0;
	m->epoch = 0;
	sbuf__init(&m->payload);
}

void xport_msg__free(struct xport_msg *m)
{
	sbuf__free(&m->payload);
	xport_msg__init(m);
}

/* ------------------------------------------------------------------------
 * Framing
 * ------------------------------------------------------------------------ */

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

void xport__encode_header(uint8_t out[XPORT_HEADER_SIZE], uint16_t type,
			  uint32_t flags, uint64_t epoch, uint32_t payload_len,
			  uint32_t payload_crc)
{
	put_le32(out + 0, XPORT_MAGIC);
	put_le16(out + 4, XPORT_PROTO_VERSION);
	put_le16(out + 6, type);
	put_le64(out + 8, epoch);
	put_le32(out + 16, payload_len);
	put_le32(out + 20, payload_crc);
	put_le32(out + 24, flags);
	put_le32(out + 28, crc32c(0, out, 28));
}

void xport__inject_fault(struct xport *x, enum xport_fault f)
{
	atomic_store(&x->fault, (int)f);
}

/*
 * The damage xport__inject_fault() asked for, done to a real message on the
 * real wire so the receiver's checks are what is exercised.  Called with the
 * send lock held, instead of the plain writev.
 */
static int send_faulty(struct xport *x, int fault, uint8_t *hdr,
		       struct iovec *v, int cnt, uint64_t total)
{
	uint64_t keep = total / 2;	/* payload bytes that get through */
	int rc;

	if (fault == XPORT_FAULT_CORRUPT_NEXT) {
		/* Wrong payload crc, header crc recomputed: only the payload
		 * check can catch it. */
		uint32_t bad = (uint32_t)hdr[20] | (uint32_t)hdr[21] << 8 |
			       (uint32_t)hdr[22] << 16 |
			       (uint32_t)hdr[23] << 24;

		bad ^= 0xA5A5A5A5u;
		for (int i = 0; i < 4; i++)
			hdr[20 + i] = (uint8_t)(bad >> (8 * i));
		bad = crc32c(0, hdr, 28);
		for (int i = 0; i < 4; i++)
			hdr[28 + i] = (uint8_t)(bad >> (8 * i));
		return x->ops->writev(x, v, cnt);
	}
	/* TRUNCATE_NEXT: header and half the payload, then shut down. */
	for (int i = 1; i < cnt; i++) {
		if (v[i].iov_len >= keep) {
			v[i].iov_len = keep;
			cnt = i + 1;
			break;
		}
		keep -= v[i].iov_len;
	}
	rc = x->ops->writev(x, v, cnt);
	atomic_store(&x->shut, true);
	x->ops->shutdown(x);
	return rc < 0 ? rc : -EPIPE;
}

/* A batched message up to this size is copied into the batch. */
#define BATCH_COPY_MAX (64u << 10)

int xport__send(struct xport *x, uint16_t type, uint32_t flags,
		uint64_t epoch, const struct iovec *iov, int iovcnt)
{
	struct iovec stack_iov[SEND_STACK_IOV + 1], *v = stack_iov;
	uint8_t hdr[XPORT_HEADER_SIZE];
	uint64_t total = 0;
	uint32_t crc = 0;
	int rc, fault = XPORT_FAULT_NONE;

	if (iovcnt < 0 || (iovcnt > 0 && !iov) || iovcnt >= INT32_MAX)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > XPORT_MAX_PAYLOAD)
		return -EMSGSIZE;
	/* Checksum outside the lock: concurrent senders only serialise on
	 * the wire, not on the CPU work. */
	for (int i = 0; i < iovcnt; i++)
		crc = crc32c(crc, iov[i].iov_base, iov[i].iov_len);
	xport__encode_header(hdr, type, flags, epoch, (uint32_t)total, crc);

	if (iovcnt > SEND_STACK_IOV) {
		v = malloc(sizeof(*v) * ((size_t)iovcnt + 1));
		if (!v)
			return -ENOMEM;
	}
	v[0].iov_base = hdr;
	v[0].iov_len = sizeof(hdr);
	if (iovcnt)
		memcpy(v + 1, iov, sizeof(*v) * (size_t)iovcnt);

	pthread_mutex_lock(&x->send_lock);
	/* Faults apply to the next message that has a payload to damage. */
	if (total && atomic_load_explicit(&x->fault, memory_order_relaxed))
		fault = atomic_exchange(&x->fault, XPORT_FAULT_NONE);
	if (x->send_err) {
		rc = x->send_err;
	} else if (atomic_load(&x->shut)) {
		rc = -ESHUTDOWN;
	} else {
		if (x->batching && fault == XPORT_FAULT_NONE && total <= BATCH_COPY_MAX) {
			/* Gathered: it leaves with the batch (or a big message). */
			rc = 0;
			for (int i = 0; i <= iovcnt && !rc; i++)
				rc = sbuf__append(&x->batch, v[i].iov_base, v[i].iov_len);
		} else if (x->batching) {
			/* Too big to copy: the batch so far and this message in one write. */
			struct iovec *w = malloc(sizeof(*w) * ((size_t)iovcnt + 2));
			rc = !w ? -ENOMEM
			     : fault != XPORT_FAULT_NONE ? batch_flush(x, NULL, 0, w)
							: batch_flush(x, v, iovcnt + 1, w);
			if (!rc && fault != XPORT_FAULT_NONE)
				rc = send_faulty(x, fault, hdr, v, iovcnt + 1, total);
			free(w);
		} else if (fault != XPORT_FAULT_NONE) {
			rc = send_faulty(x, fault, hdr, v, iovcnt + 1, total);
		} else {
			rc = x->ops->writev(x, v, iovcnt + 1);
		}
		if (rc < 0)
			x->send_err = rc; /* maybe cut mid-message: no retry */
		else {
			atomic_fetch_add_explicit(&x->bytes_sent,
						  sizeof(hdr) + total,
						  memory_order_relaxed);
			atomic_store_explicit(&x->last_tx_ns, xport__now_ns(),
					      memory_order_relaxed);
		}
	}
	pthread_mutex_unlock(&x->send_lock);

	if (v != stack_iov)
		free(v);
	return rc < 0 ? rc : 0;
}

int xport__send_buf(struct xport *x, uint16_t type, uint32_t flags,
		    uint64_t epoch, const void *p, size_t len)
{
	struct iovec v = { .iov_base = (void *)p, .iov_len = len };

	return xport__send(x, type, flags, epoch, &v, len ? 1 : 0);
}

/* "message 'PAGES' epoch 17" */
static void describe(const struct xport *x, char *buf, size_t len)
{
	const struct xport_rx *r = &x->rx;

	if (r->type < x->ntype_names && x->type_names[r->type])
		snprintf(buf, len, "message '%s' epoch %" PRIu64,
			 x->type_names[r->type], r->epoch);
	else
		snprintf(buf, len, "message type %u epoch %" PRIu64, r->type,
			 r->epoch);
}

/* Record a fatal receive error: this call and every later one return it. */
static int rx_fail(struct xport *x, int rc, char *err, size_t errlen,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int rx_fail(struct xport *x, int rc, char *err, size_t errlen,
		   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->rx_errmsg, sizeof(x->rx_errmsg), fmt, ap);
	va_end(ap);
	x->rx_err = rc;
	xport__seterr(err, errlen, "%s", x->rx_errmsg);
	/* Drop the partial message now: a dead connection holds no memory. */
	sbuf__free(&x->rx.payload);
	return rc;
}

/*
 * One backend read, with the number of bytes it stored before failing
 * (taken from the byte counter, which only this thread advances).
 */
static int rx_read(struct xport *x, void *buf, size_t len, int timeout_ms,
		   size_t *got)
{
	uint64_t before = xport__bytes_received(x);
	int rc = x->ops->read(x, buf, len, timeout_ms);

	*got = (size_t)(xport__bytes_received(x) - before);
	if (rc == 0 && *got != len) /* a backend that forgot to account */
		*got = len;
	return rc;
}

/* Errors other than timeout and clean close, while reading. */
static int rx_link_error(struct xport *x, int rc, char *err, size_t errlen)
{
	if (atomic_load(&x->shut))
		return rx_fail(x, -ESHUTDOWN, err, errlen,
			       "connection to %s was shut down", x->peer);
	return rx_fail(x, rc, err, errlen, "receive from %s failed: %s",
		       x->peer, strerror(-rc));
}

static int rx_header(struct xport *x, int timeout_ms, char *err,
		     size_t errlen)
{
	struct xport_rx *r = &x->rx;
	char what[96];
	uint32_t magic, version;
	size_t got;
	int rc;

	while (r->hdr_got < XPORT_HEADER_SIZE) {
		rc = rx_read(x, r->hdr + r->hdr_got,
			     XPORT_HEADER_SIZE - r->hdr_got, timeout_ms, &got);
		r->hdr_got += got;
		if (rc == -ETIMEDOUT) {
			xport__seterr(err, errlen, "no message from %s within %d ms",
			       x->peer, timeout_ms);
			return rc;
		}
		if (rc == -EPIPE && atomic_load(&x->shut))
			return rx_link_error(x, rc, err, errlen);
		if (rc == -EPIPE && !atomic_load(&x->shut))
			atomic_store(&x->peer_closed, true);
		if (rc == -EPIPE && r->hdr_got == 0)
			return rx_fail(x, -EPIPE, err, errlen,
				       "%s closed the connection", x->peer);
		if (rc == -EPIPE)
			return rx_fail(x, -EBADMSG, err, errlen,
				       "stream truncated: connection closed "
				       "after %zu of %u header bytes",
				       r->hdr_got, XPORT_HEADER_SIZE);
		if (rc < 0)
			return rx_link_error(x, rc, err, errlen);
	}

	magic = get_le32(r->hdr);
	if (magic != XPORT_MAGIC)
		return rx_fail(x, -EBADMSG, err, errlen,
			       "not an ftvm replication stream from %s (bad "
			       "magic 0x%08x)", x->peer, magic);
	if (get_le32(r->hdr + 28) != crc32c(0, r->hdr, 28))
		return rx_fail(x, -EBADMSG, err, errlen,
			       "message header from %s is corrupt (header "
			       "checksum mismatch)", x->peer);
	version = get_le16(r->hdr + 4);
	if (version != XPORT_PROTO_VERSION)
		return rx_fail(x, -EPROTO, err, errlen,
			       "peer speaks replication protocol version %u, "
			       "this ftvm speaks %u", version,
			       XPORT_PROTO_VERSION);
	r->type = get_le16(r->hdr + 6);
	r->epoch = get_le64(r->hdr + 8);
	r->len = get_le32(r->hdr + 16);
	r->want_crc = get_le32(r->hdr + 20);
	r->flags = get_le32(r->hdr + 24);
	r->crc = 0;
	sbuf__reset(&r->payload);
	if (r->len > x->max_payload) {
		describe(x, what, sizeof(what));
		return rx_fail(x, -EBADMSG, err, errlen,
			       "%s: payload of %u bytes exceeds the limit of "
			       "%u", what, r->len, x->max_payload);
	}
	r->hdr_ok = true;
	return 0;
}

static int rx_payload(struct xport *x, int timeout_ms, char *err,
		      size_t errlen)
{
	struct xport_rx *r = &x->rx;
	struct sbuf *p = &r->payload;
	char what[96];
	size_t got;
	int rc;

	while (p->len < r->len) {
		size_t n = r->len - p->len;

		if (n > RX_SLICE)
			n = RX_SLICE;
		/* Grows as bytes arrive (sbuf doubles): a lying header costs
		 * nothing until its bytes come. */
		if (p->cap - p->len < n) {
			rc = sbuf__reserve(p, n);
			if (rc)
				return rx_fail(x, rc, err, errlen,
					       "out of memory receiving %u "
					       "bytes", r->len);
		}
		rc = rx_read(x, p->data + p->len, n, timeout_ms, &got);
		r->crc = crc32c(r->crc, p->data + p->len, got);
		p->len += got;
		if (rc == -ETIMEDOUT) {
			describe(x, what, sizeof(what));
			xport__seterr(err, errlen,
			       "%s: no data from %s for %d ms (%zu of %u "
			       "payload bytes so far)", what, x->peer,
			       timeout_ms, p->len, r->len);
			return rc;
		}
		if (rc == -EPIPE && !atomic_load(&x->shut)) {
			atomic_store(&x->peer_closed, true);
			describe(x, what, sizeof(what));
			return rx_fail(x, -EBADMSG, err, errlen,
				       "stream truncated: %s: header says %u "
				       "payload bytes, connection closed "
				       "after %zu", what, r->len, p->len);
		}
		if (rc < 0)
			return rx_link_error(x, rc, err, errlen);
	}
	if (r->crc != r->want_crc) {
		describe(x, what, sizeof(what));
		return rx_fail(x, -EBADMSG, err, errlen,
			       "%s: payload checksum mismatch", what);
	}
	return 0;
}

int xport__recv(struct xport *x, struct xport_msg *m, int timeout_ms,
		char *err, size_t errlen)
{
	struct xport_rx *r = &x->rx;
	struct sbuf spare;
	int rc;

	if (x->rx_err) {
		xport__seterr(err, errlen, "%s", x->rx_errmsg);
		return x->rx_err;
	}
	if (atomic_load(&x->shut))
		return rx_link_error(x, -ESHUTDOWN, err, errlen);

	if (!r->hdr_ok) {
		rc = rx_header(x, timeout_ms, err, errlen);
		if (rc)
			return rc;
	}
	rc = rx_payload(x, timeout_ms, err, errlen);
	if (rc)
		return rc;

	m->type = r->type;
	m->flags = r->flags;
	m->epoch = r->epoch;
	/* Hand the filled buffer over and keep the caller's old one for the
	 * next message: a caller that reuses its msg never reallocates. */
	spare = m->payload;
	m->payload = r->payload;
	r->payload = spare;
	sbuf__reset(&r->payload);
	r->hdr_got = 0;
	r->hdr_ok = false;
	return 0;
}

bool xport__peer_closed(struct xport *x)
{
	return atomic_load(&x->peer_closed);
}
