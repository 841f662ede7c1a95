/*
 * TCP backend: plain stream sockets, IPv4 and IPv6.
 *
 * Sockets stay blocking for sends (a sender has nothing better to do than
 * wait for buffer space, and xport__shutdown() wakes it) and are read with
 * poll() + recv(MSG_DONTWAIT) so every read honours a timeout.  Sends use
 * MSG_NOSIGNAL: a peer that vanished gives -EPIPE, never a SIGPIPE that
 * would kill the VMM.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "xport_internal.h"

/*
 * A checkpoint is megabytes sent in one burst; the default socket buffers
 * (a few hundred KiB) would make the sender wait for ACKs round trip by
 * round trip.  Set on the listening socket so the window scale offered in
 * the SYN already allows it.
 */
#define TCP_SOCKBUF (4 << 20)
/* Most sendmsg() calls carry header + a few iovecs; larger gathers are
 * sent in windows of this many entries (well under IOV_MAX). */
#define TCP_IOV_WINDOW 64

struct tcp_xport {
	struct xport base;	/* first: xport__close hands us this pointer */
	int fd;
	/* Set once, by tcp__start_tls (the connection's owner, before any
	 * message); read by senders, the receiver and `info migrate`. */
	_Atomic(struct tls_conn *) tls;
};

struct tcp_listener {
	struct xport_listener base;
	int fd;
};


static struct tcp_xport *tcp_of(struct xport *x)
{
	return (struct tcp_xport *)x;
}

/*
 * Socket buffers: the *FORCE variants (root/CAP_NET_ADMIN) go past
 * net.core.{w,r}mem_max.  Without privilege we leave the buffers alone: a
 * plain SO_RCVBUF is clamped to rmem_max (often ~200 KiB) and switches off
 * autotuning, which on its own would grow to tcp_rmem's maximum (MiBs).
 */
static void set_bufsize(int fd, int force_opt)
{
	int v = TCP_SOCKBUF;

	(void)setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v));
}

/*
 * Per-connection options.  Failures are ignored on purpose: an AF_UNIX
 * socketpair (tests) has no TCP options, and a missing tweak costs speed,
 * not correctness.
 */
static void tune_socket(int fd)
{
	int one = 1;
	/* Keepalive is only a backstop (ft/ heartbeats detect a dead peer
	 * within its own timeout); these values make a silently vanished
	 * peer's socket fail within ~20 s rather than two hours. */
	int idle = 10, intvl = 2, cnt = 5;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
			 sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static int set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

static int wrap_fd(int fd, const char *peer, struct xport **out)
{
	struct tcp_xport *t;
	char name[XPORT_PEER_LEN];
	int rc;

	if (!peer) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
			xport__format_sockaddr((struct sockaddr *)&ss, name,
					       sizeof(name));
		else
			snprintf(name, sizeof(name), "fd %d", fd);
		peer = name;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		close(fd);
		return -ENOMEM;
	}
	rc = xport__base_init(&t->base, &xport_tcp_ops, peer);
	if (rc) {
		free(t);
		close(fd);
		return rc;
	}
	t->fd = fd;
	*out = &t->base;
	return 0;
}

int xport__from_fd(int fd, const char *peer, struct xport **out)
{
	int rc;

	*out = NULL;
	rc = set_nonblock(fd, false);
	if (rc) {
		close(fd);
		return rc;
	}
	tune_socket(fd);
	return wrap_fd(fd, peer, out);
}

/* ------------------------------------------------------------------------
 * Listen / accept / connect
 * ------------------------------------------------------------------------ */

static int resolve(const char *host, const char *port, bool passive,
		   struct addrinfo **res, const char *addr, char *err,
		   size_t errlen)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
	};
	int rc;

	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
	if (rc) {
		xport__seterr(err, errlen, "cannot resolve '%s': %s", addr,
		       rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return rc == EAI_SYSTEM && errno ? -errno : -EHOSTUNREACH;
	}
	return 0;
}

static int listen_on(const struct sockaddr *sa, socklen_t sl, bool dual,
		     int *fdp)
{
	int one = 1, zero = 0;
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (dual)	/* "any" means IPv4 too, whatever bindv6only says */
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero,
				 sizeof(zero));
	/* Accepted sockets inherit these, and the SYN-ACK's window scale
	 * depends on the receive buffer at listen time. */
	set_bufsize(fd, SO_SNDBUFFORCE);
	set_bufsize(fd, SO_RCVBUFFORCE);
	if (bind(fd, sa, sl) < 0 || listen(fd, 16) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	*fdp = fd;
	return 0;
}

static int tcp_listen(const char *addr, struct xport_listener **out,
		      char *err, size_t errlen)
{
	char host[256], port[8];
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct tcp_listener *l;
	int rc, fd = -1;

	rc = xport__split_hostport(addr, host, sizeof(host), port,
				   sizeof(port), err, errlen);
	if (rc)
		return rc;

	if (!host[0]) {
		/* Any address: one dual-stack IPv6 socket takes both
		 * families; hosts without IPv6 get an IPv4 one. */
		struct sockaddr_in6 s6 = { .sin6_family = AF_INET6,
					   .sin6_addr = IN6ADDR_ANY_INIT,
					   .sin6_port = htons((uint16_t)atoi(port)) };
		struct sockaddr_in s4 = { .sin_family = AF_INET,
					  .sin_addr.s_addr = htonl(INADDR_ANY),
					  .sin_port = htons((uint16_t)atoi(port)) };

		rc = listen_on((struct sockaddr *)&s6, sizeof(s6), true, &fd);
		if (rc == -EAFNOSUPPORT)
			rc = listen_on((struct sockaddr *)&s4, sizeof(s4),
				       false, &fd);
	} else {
		rc = resolve(host, port, true, &res, addr, err, errlen);
		if (rc)
			return rc;
		rc = -EADDRNOTAVAIL;
		for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
			rc = listen_on(ai->ai_addr, ai->ai_addrlen, false, &fd);
		freeaddrinfo(res);
	}
	if (rc) {
		xport__seterr(err, errlen, "cannot listen on tcp:%s: %s", addr,
		       strerror(-rc));
		return rc;
	}

	l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return -ENOMEM;
	}
	l->base.ops = &xport_tcp_ops;
	l->fd = fd;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		char a[XPORT_PEER_LEN];

		xport__format_sockaddr((struct sockaddr *)&ss, a, sizeof(a));
		snprintf(l->base.addr, sizeof(l->base.addr), "tcp:%s", a);
		l->base.port = ss.ss_family == AF_INET6 ?
			ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
			ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	*out = &l->base;
	return 0;
}

static int tcp_accept(struct xport_listener *xl, int timeout_ms,
		      struct xport **out, char *err, size_t errlen)
{
	struct tcp_listener *l = (struct tcp_listener *)xl;
	uint64_t deadline = xport__deadline(timeout_ms);
	struct pollfd pfd = { .fd = l->fd, .events = POLLIN };
	int fd, rc;

	for (;;) {
		rc = poll(&pfd, 1, xport__ms_left(deadline));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0) {
			rc = -errno;
			xport__seterr(err, errlen, "accept on %s: %s", l->base.addr,
			       strerror(-rc));
			return rc;
		}
		if (rc == 0) {
			xport__seterr(err, errlen, "no connection on %s within %d ms",
			       l->base.addr, timeout_ms);
			return -ETIMEDOUT;
		}
		fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		/* The connection may have been reset between poll and accept
		 * (ECONNABORTED), or taken by another thread (EAGAIN). */
		if (errno == EINTR || errno == ECONNABORTED ||
		    errno == EAGAIN || errno == EWOULDBLOCK)
			continue;
		rc = -errno;
		xport__seterr(err, errlen, "accept on %s: %s", l->base.addr,
		       strerror(-rc));
		return rc;
	}
	tune_socket(fd);
	return wrap_fd(fd, NULL, out);
}

/* One address: nonblocking connect bounded by the deadline. */
static int connect_one(const struct addrinfo *ai, uint64_t deadline, int *fdp)
{
	struct pollfd pfd;
	int fd, rc, soerr = 0;
	socklen_t sl = sizeof(soerr);

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    0);
	if (fd < 0)
		return -errno;
	/* Before connect: the window scale is fixed by the SYN. */
	set_bufsize(fd, SO_SNDBUFFORCE);
	set_bufsize(fd, SO_RCVBUFFORCE);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		goto connected;
	if (errno != EINPROGRESS) {
		rc = -errno;
		goto fail;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	for (;;) {
		rc = poll(&pfd, 1, xport__ms_left(deadline));
		if (rc > 0)
			break;
		if (rc == 0) {
			rc = -ETIMEDOUT;
			goto fail;
		}
		if (errno != EINTR) {
			rc = -errno;
			goto fail;
		}
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
		rc = -errno;
		goto fail;
	}
	if (soerr) {
		rc = -soerr;
		goto fail;
	}
connected:
	rc = set_nonblock(fd, false);
	if (rc)
		goto fail;
	*fdp = fd;
	return 0;
fail:
	close(fd);
	return rc;
}

static int tcp_connect(const char *addr, int timeout_ms, struct xport **out,
		       char *err, size_t errlen)
{
	uint64_t deadline = xport__deadline(timeout_ms);
	char host[256], port[8], tried[XPORT_PEER_LEN] = "";
	struct addrinfo *res = NULL;
	int rc, fd = -1;

	rc = xport__split_hostport(addr, host, sizeof(host), port,
				   sizeof(port), err, errlen);
	if (rc)
		return rc;
	rc = resolve(host, port, false, &res, addr, err, errlen);
	if (rc)
		return rc;
	/* getaddrinfo orders addresses by preference (RFC 6724); try each
	 * until one answers, all within the one deadline. */
	rc = -EHOSTUNREACH;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		xport__format_sockaddr(ai->ai_addr, tried, sizeof(tried));
		rc = connect_one(ai, deadline, &fd);
		if (rc == 0 || rc == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (rc) {
		/* Name the address as the user wrote it, and the resolved
		 * one when that says more. */
		char shown[XPORT_PEER_LEN * 2 + 8];

		if (!strcmp(tried, addr) || !tried[0])
			snprintf(shown, sizeof(shown), "%s", addr);
		else
			snprintf(shown, sizeof(shown), "%s (%s)", addr, tried);
		if (rc == -ETIMEDOUT)
			xport__seterr(err, errlen,
			       "cannot connect to %s: no answer within %d ms",
			       shown, timeout_ms);
		else
			xport__seterr(err, errlen, "cannot connect to %s: %s", shown,
			       strerror(-rc));
		return rc;
	}
	tune_socket(fd);
	return wrap_fd(fd, NULL, out);
}

static void tcp_listener_close(struct xport_listener *xl)
{
	struct tcp_listener *l = (struct tcp_listener *)xl;

	close(l->fd);
	free(l);
}

/* ------------------------------------------------------------------------
 * Data path
 * ------------------------------------------------------------------------ */

int tcp__start_tls(struct xport *x, const struct xport_tls *t, bool server, const char *peer_name,
		   int timeout_ms, char *err, size_t errlen)
{
	struct tcp_xport *tx = tcp_of(x);
	struct tls_conn *c;
	if (atomic_load(&tx->tls))
		return -EALREADY;
	int ret = tls_conn__handshake(tx->fd, t, server, peer_name, timeout_ms, &c, err, errlen);
	if (!ret)
		atomic_store(&tx->tls, c);
	return ret;
}

struct tls_conn *tcp__tls(struct xport *x)
{
	return atomic_load(&tcp_of(x)->tls);
}

int tcp__sendmsg_all(int fd, const struct iovec *iov, int iovcnt, unsigned *calls)
{
	struct iovec win[TCP_IOV_WINDOW];
	int i = 0;		/* first iovec not fully sent */
	size_t off = 0;		/* bytes of iov[i] already sent */

	for (;;) {
		struct msghdr mh = { .msg_iov = win };
		ssize_t n;
		int k = 0;

		while (i < iovcnt && iov[i].iov_len == off) {
			i++;
			off = 0;
		}
		if (i == iovcnt)
			return 0;
		for (int j = i; j < iovcnt && k < TCP_IOV_WINDOW; j++) {
			size_t skip = j == i ? off : 0;

			if (iov[j].iov_len == skip)
				continue;
			win[k].iov_base = (uint8_t *)iov[j].iov_base + skip;
			win[k].iov_len = iov[j].iov_len - skip;
			k++;
		}
		mh.msg_iovlen = (size_t)k;
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		(*calls)++;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* Short write (a signal, or a socket buffer smaller than the
		 * gather): advance past what went out and go again. */
		while (n > 0) {
			size_t left = iov[i].iov_len - off;

			if ((size_t)n < left) {
				off += (size_t)n;
				n = 0;
			} else {
				n -= (ssize_t)left;
				i++;
				off = 0;
			}
		}
	}
}

static int tcp_writev(struct xport *x, const struct iovec *iov, int iovcnt)
{
	struct tls_conn *tls = atomic_load(&tcp_of(x)->tls);
	unsigned calls = 0;

	if (tls)
		return tls_conn__writev(tls, iov, iovcnt);
	return tcp__sendmsg_all(tcp_of(x)->fd, iov, iovcnt, &calls);
}

static int tcp_read(struct xport *x, void *buf, size_t len, int timeout_ms)
{
	int fd = tcp_of(x)->fd;
	uint8_t *p = buf;
	size_t got = 0;
	/* Inactivity timeout: restarts whenever bytes arrive. */
	uint64_t deadline = xport__deadline(timeout_ms);

	struct tls_conn *tls = atomic_load(&tcp_of(x)->tls);
	if (tls)
		return tls_conn__read(tls, x, buf, len, timeout_ms);
	while (got < len) {
		ssize_t n = recv(fd, p + got, len - got, MSG_DONTWAIT);

		if (n > 0) {
			got += (size_t)n;
			xport__note_rx(x, (size_t)n);
			deadline = xport__deadline(timeout_ms);
			continue;
		}
		if (n == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int rc = poll(&pfd, 1, xport__ms_left(deadline));

			if (rc == 0)
				return -ETIMEDOUT;
			if (rc < 0 && errno != EINTR)
				return -errno;
			continue;
		}
		return -errno;
	}
	return 0;
}

static int tcp_poll_fd(struct xport *x)
{
	return tcp_of(x)->fd;
}

static void tcp_shutdown(struct xport *x)
{
	/* Wakes poll() in a reader (POLLIN, then recv returns 0) and a sender
	 * blocked on a full buffer (EPIPE). The fd stays open until close so
	 * no other thread can ever touch a reused descriptor number. */
	(void)shutdown(tcp_of(x)->fd, SHUT_RDWR);
}

static void tcp_close(struct xport *x)
{
	struct tcp_xport *t = tcp_of(x);

	tls_conn__free(atomic_load(&t->tls));
	close(t->fd);
	free(t);
}

const struct xport_ops xport_tcp_ops = {
	.scheme = "tcp",
	.listen = tcp_listen,
	.accept = tcp_accept,
	.connect = tcp_connect,
	.writev = tcp_writev,
	.read = tcp_read,
	.poll_fd = tcp_poll_fd,
	.shutdown = tcp_shutdown,
	.close = tcp_close,
	.listener_close = tcp_listener_close,
};
