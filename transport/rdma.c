/*
 * RDMA backend (librdmacm + libibverbs), reliable-connected queue pairs.
 *
 * The generic layer wants a byte stream, so this backend makes one out of
 * two-sided SEND/RECV: the sender copies the bytes of each message (header
 * and payload gathered) into a ring of registered send buffers and posts
 * one SEND per filled buffer, so a message bigger than a buffer goes out in
 * chunks and small messages cost one SEND; the receiver keeps a fixed ring
 * of registered receive buffers posted, copies out of each completed one in
 * order and reposts it once consumed.  RC delivers SENDs reliably and in
 * order, which is all a byte stream needs.
 *
 * Flow control: a SEND that finds no posted receive is retried by the NIC
 * (rnr_retry_count 7 = without limit) until the reader reposts, i.e. a slow
 * reader backpressures the sender exactly like a full TCP window.  Credits
 * would save those retries at the price of a reverse message stream; with a
 * ring of RDMA_RECV_BUFS buffers they are rare.
 *
 * Events: the receive CQ's completion channel and the connection's CM event
 * channel are both in one epoll set, which is what poll_fd() hands out and
 * what a blocked reader waits on, so a peer's disconnect wakes the reader
 * too.  On DISCONNECTED we call rdma_disconnect() ourselves, which moves the
 * QP to the error state: completions that were already delivered come out
 * first, then the flushed receives, which read() turns into -EPIPE.
 *
 * Timeouts: address and route resolution inside rdma_create_ep() use the
 * library's own (2 s each); connection establishment and everything after
 * honour the caller's timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>

#include "xport_internal.h"

#define RDMA_CHUNK (128u << 10)	/* bytes per SEND / per receive buffer */
#define RDMA_RECV_BUFS 32	/* 4 MiB posted: one checkpoint burst */
#define RDMA_SEND_BUFS 16
#define RDMA_CLOSE_DRAIN_MS 2000 /* how long close waits for sends */

struct rdma_xport {
	struct xport base;	/* first: xport__close hands us this pointer */
	struct rdma_cm_id *id;
	struct rdma_event_channel *cm_ch; /* this connection's CM events */
	int epfd;		/* recv CQ channel + cm_ch */
	uint8_t *recv_mem, *send_mem;
	struct ibv_mr *recv_mr, *send_mr;
	bool disconnected;	/* rdma_disconnect() issued */

	/* Receive side: the one reader thread. */
	int cur;		/* receive buffer being consumed, -1 none */
	uint32_t cur_len, cur_off;

	/* Send side: under base.send_lock.  Slots complete in order (RC,
	 * every SEND signalled), so the in-flight ones are the `inflight`
	 * slots before `head`, and `head` is free iff inflight < SEND_BUFS. */
	unsigned head;
	unsigned inflight;
	size_t fill;		/* bytes in slot `head`, not yet posted */
};

struct rdma_listener {
	struct xport_listener base;
	struct rdma_cm_id *lid;	/* synchronous id: its channel is its own */
};


static struct rdma_xport *rdma_of(struct xport *x)
{
	return (struct rdma_xport *)x;
}

static int neg_errno(void)
{
	return errno ? -errno : -EIO;
}

/* librdmacm would fail later with an obscure ENODEV from deep inside; say
 * it plainly up front. */
static int check_device(char *err, size_t errlen)
{
	int n = 0;
	struct ibv_device **list = ibv_get_device_list(&n);

	if (list)
		ibv_free_device_list(list);
	if (!list || n == 0) {
		xport__seterr(err, errlen,
		       "no RDMA device on this host (ibv_get_device_list "
		       "found none)");
		return -ENODEV;
	}
	return 0;
}

static void qp_attr(struct ibv_qp_init_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->cap.max_send_wr = RDMA_SEND_BUFS;
	a->cap.max_recv_wr = RDMA_RECV_BUFS;
	a->cap.max_send_sge = 1;
	a->cap.max_recv_sge = 1;
	a->qp_type = IBV_QPT_RC;
	a->sq_sig_all = 1;	/* every SEND completes: frees its slot */
}

static void conn_param(struct rdma_conn_param *p)
{
	memset(p, 0, sizeof(*p));
	p->retry_count = 7;
	p->rnr_retry_count = 7;	/* receiver not ready: retry forever */
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int resolve(const char *addr, bool passive, struct rdma_addrinfo **res,
		   char *err, size_t errlen)
{
	char host[256], port[8];
	struct rdma_addrinfo hints;
	int rc;

	rc = xport__split_hostport(addr, host, sizeof(host), port,
				   sizeof(port), err, errlen);
	if (rc)
		return rc;
	memset(&hints, 0, sizeof(hints));
	hints.ai_port_space = RDMA_PS_TCP;
	hints.ai_qp_type = IBV_QPT_RC;
	if (passive)
		hints.ai_flags = RAI_PASSIVE;
	errno = 0;
	if (rdma_getaddrinfo(host[0] ? host : NULL, port, &hints, res)) {
		rc = errno ? -errno : -EHOSTUNREACH;
		xport__seterr(err, errlen, "cannot resolve rdma:%s: %s", addr,
		       strerror(-rc));
		return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Connection setup and teardown
 * ------------------------------------------------------------------------ */

static int post_recv(struct rdma_xport *r, int i)
{
	if (rdma_post_recv(r->id, (void *)(uintptr_t)i,
			   r->recv_mem + (size_t)i * RDMA_CHUNK, RDMA_CHUNK,
			   r->recv_mr))
		return neg_errno();
	return 0;
}

static void free_conn(struct rdma_xport *r)
{
	if (r->epfd >= 0)
		close(r->epfd);
	if (r->recv_mr)
		rdma_dereg_mr(r->recv_mr);
	if (r->send_mr)
		rdma_dereg_mr(r->send_mr);
	if (r->id)
		rdma_destroy_ep(r->id);	/* QP, its CQs, the id */
	if (r->cm_ch)
		rdma_destroy_event_channel(r->cm_ch);
	free(r->recv_mem);
	free(r->send_mem);
	free(r);
}

/* Page-aligned: registration pins whole pages anyway. */
static uint8_t *alloc_pages(size_t n)
{
	void *p = NULL;

	return posix_memalign(&p, 4096, n) ? NULL : p;
}

/*
 * Everything between "an id with a QP" and rdma_connect/rdma_accept:
 * buffers registered, all receives posted (so the peer's first SEND finds
 * one), the id moved to our own event channel so connection establishment
 * can be waited for with a timeout.  Takes ownership of id.
 */
static int setup_conn(struct rdma_cm_id *id, struct rdma_xport **out)
{
	struct rdma_xport *r = calloc(1, sizeof(*r));
	struct epoll_event ev = { .events = EPOLLIN };
	int rc;

	if (!r) {
		rdma_destroy_ep(id);
		return -ENOMEM;
	}
	r->id = id;
	r->epfd = -1;
	r->cur = -1;
	rc = xport__base_init(&r->base, &xport_rdma_ops, NULL);
	if (rc) {
		rdma_destroy_ep(id);
		free(r);
		return rc;
	}
	rc = -ENOMEM;
	r->recv_mem = alloc_pages((size_t)RDMA_RECV_BUFS * RDMA_CHUNK);
	r->send_mem = alloc_pages((size_t)RDMA_SEND_BUFS * RDMA_CHUNK);
	if (!r->recv_mem || !r->send_mem)
		goto fail;
	r->recv_mr = rdma_reg_msgs(id, r->recv_mem,
				   (size_t)RDMA_RECV_BUFS * RDMA_CHUNK);
	r->send_mr = rdma_reg_msgs(id, r->send_mem,
				   (size_t)RDMA_SEND_BUFS * RDMA_CHUNK);
	if (!r->recv_mr || !r->send_mr) {
		rc = neg_errno();
		goto fail;
	}
	for (int i = 0; i < RDMA_RECV_BUFS; i++) {
		rc = post_recv(r, i);
		if (rc)
			goto fail;
	}
	r->cm_ch = rdma_create_event_channel();
	if (!r->cm_ch || rdma_migrate_id(id, r->cm_ch)) {
		rc = neg_errno();
		goto fail;
	}
	/* Nonblocking: the epoll set says "maybe", we then drain. */
	if ((rc = set_nonblock(r->cm_ch->fd)) ||
	    (rc = set_nonblock(id->recv_cq_channel->fd)) ||
	    (rc = set_nonblock(id->send_cq_channel->fd)))
		goto fail;
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epfd < 0 ||
	    epoll_ctl(r->epfd, EPOLL_CTL_ADD, id->recv_cq_channel->fd, &ev) ||
	    epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->cm_ch->fd, &ev)) {
		rc = -errno;
		goto fail;
	}
	*out = r;
	return 0;
fail:
	pthread_mutex_destroy(&r->base.send_lock);
	free_conn(r);
	return rc;
}

/* Wait for the CM to say how rdma_connect/rdma_accept ended. */
static int wait_established(struct rdma_xport *r, uint64_t deadline,
			    const char *what, char *err, size_t errlen)
{
	for (;;) {
		struct pollfd pfd = { .fd = r->cm_ch->fd, .events = POLLIN };
		struct rdma_cm_event *ev;
		enum rdma_cm_event_type type;
		int status, n;

		n = poll(&pfd, 1, xport__ms_left(deadline));
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			xport__seterr(err, errlen, "%s: no answer in time", what);
			return -ETIMEDOUT;
		}
		if (n < 0 || rdma_get_cm_event(r->cm_ch, &ev)) {
			if (errno == EAGAIN)
				continue;
			n = neg_errno();
			xport__seterr(err, errlen, "%s: %s", what, strerror(-n));
			return n;
		}
		type = ev->event;
		status = ev->status;
		rdma_ack_cm_event(ev);
		switch (type) {
		case RDMA_CM_EVENT_ESTABLISHED:
			return 0;
		case RDMA_CM_EVENT_REJECTED:
			xport__seterr(err, errlen, "%s: %s", what,
			       strerror(ECONNREFUSED));
			return -ECONNREFUSED;
		case RDMA_CM_EVENT_UNREACHABLE:
		case RDMA_CM_EVENT_CONNECT_ERROR:
			xport__seterr(err, errlen, "%s: %s (%s)", what,
			       strerror(EHOSTUNREACH), rdma_event_str(type));
			return -EHOSTUNREACH;
		default:
			xport__seterr(err, errlen, "%s: unexpected %s (status %d)",
			       what, rdma_event_str(type), status);
			return -ECONNABORTED;
		}
	}
}

static void name_peer(struct rdma_xport *r)
{
	xport__format_sockaddr(rdma_get_peer_addr(r->id), r->base.peer,
			       sizeof(r->base.peer));
}

static int rdma_listen_(const char *addr, struct xport_listener **out,
			char *err, size_t errlen)
{
	struct rdma_addrinfo *res = NULL;
	struct ibv_qp_init_attr attr;
	struct rdma_listener *l;
	int rc;

	rc = check_device(err, errlen);
	if (rc)
		return rc;
	rc = resolve(addr, true, &res, err, errlen);
	if (rc)
		return rc;
	l = calloc(1, sizeof(*l));
	if (!l) {
		rdma_freeaddrinfo(res);
		return -ENOMEM;
	}
	/* The attr is remembered by the listening id: rdma_get_request()
	 * creates each new connection's QP (and CQs) from it. */
	qp_attr(&attr);
	if (rdma_create_ep(&l->lid, res, NULL, &attr) ||
	    rdma_listen(l->lid, 16)) {
		rc = neg_errno();
		xport__seterr(err, errlen, "cannot listen on rdma:%s: %s", addr,
		       strerror(-rc));
		if (l->lid)
			rdma_destroy_ep(l->lid);
		rdma_freeaddrinfo(res);
		free(l);
		return rc;
	}
	rdma_freeaddrinfo(res);
	l->base.ops = &xport_rdma_ops;
	l->base.port = ntohs(rdma_get_src_port(l->lid));
	{
		char a[XPORT_PEER_LEN];

		xport__format_sockaddr(rdma_get_local_addr(l->lid), a,
				       sizeof(a));
		snprintf(l->base.addr, sizeof(l->base.addr), "rdma:%s", a);
	}
	*out = &l->base;
	return 0;
}

static int rdma_accept_(struct xport_listener *xl, int timeout_ms,
			struct xport **out, char *err, size_t errlen)
{
	struct rdma_listener *l = (struct rdma_listener *)xl;
	uint64_t deadline = xport__deadline(timeout_ms);
	struct pollfd pfd = { .fd = l->lid->channel->fd, .events = POLLIN };
	struct rdma_conn_param param;
	struct rdma_cm_id *id = NULL;
	struct rdma_xport *r;
	char what[XPORT_PEER_LEN + 32];
	int rc;

	/* The listening id is synchronous, so rdma_get_request() would block
	 * without limit: wait for its channel first. */
	do
		rc = poll(&pfd, 1, xport__ms_left(deadline));
	while (rc < 0 && errno == EINTR);
	if (rc == 0) {
		xport__seterr(err, errlen, "no connection on %s within %d ms",
		       l->base.addr, timeout_ms);
		return -ETIMEDOUT;
	}
	if (rc < 0 || rdma_get_request(l->lid, &id)) {
		rc = neg_errno();
		xport__seterr(err, errlen, "accept on %s: %s", l->base.addr,
		       strerror(-rc));
		return rc;
	}
	rc = setup_conn(id, &r);
	if (rc) {
		xport__seterr(err, errlen, "accept on %s: setting up the connection: "
		       "%s", l->base.addr, strerror(-rc));
		return rc;
	}
	name_peer(r);
	snprintf(what, sizeof(what), "accepting %s", r->base.peer);
	conn_param(&param);
	if (rdma_accept(r->id, &param)) {
		rc = neg_errno();
		xport__seterr(err, errlen, "%s: %s", what, strerror(-rc));
		goto fail;
	}
	rc = wait_established(r, deadline, what, err, errlen);
	if (rc)
		goto fail;
	*out = &r->base;
	return 0;
fail:
	pthread_mutex_destroy(&r->base.send_lock);
	free_conn(r);
	return rc;
}

static int rdma_connect_(const char *addr, int timeout_ms, struct xport **out,
			 char *err, size_t errlen)
{
	uint64_t deadline = xport__deadline(timeout_ms);
	struct rdma_addrinfo *res = NULL;
	struct ibv_qp_init_attr attr;
	struct rdma_conn_param param;
	struct rdma_cm_id *id = NULL;
	struct rdma_xport *r;
	char what[XPORT_PEER_LEN + 40];
	int rc;

	snprintf(what, sizeof(what), "cannot connect to rdma:%s", addr);
	rc = check_device(err, errlen);
	if (rc)
		return rc;
	rc = resolve(addr, false, &res, err, errlen);
	if (rc)
		return rc;
	qp_attr(&attr);
	rc = rdma_create_ep(&id, res, NULL, &attr);
	rdma_freeaddrinfo(res);
	if (rc) {
		rc = neg_errno();
		xport__seterr(err, errlen, "%s: %s", what, strerror(-rc));
		return rc;
	}
	rc = setup_conn(id, &r);
	if (rc) {
		xport__seterr(err, errlen, "%s: %s", what, strerror(-rc));
		return rc;
	}
	name_peer(r);
	conn_param(&param);
	if (rdma_connect(r->id, &param)) {
		rc = neg_errno();
		xport__seterr(err, errlen, "%s: %s", what, strerror(-rc));
		goto fail;
	}
	rc = wait_established(r, deadline, what, err, errlen);
	if (rc)
		goto fail;
	*out = &r->base;
	return 0;
fail:
	pthread_mutex_destroy(&r->base.send_lock);
	free_conn(r);
	return rc;
}

static void rdma_listener_close_(struct xport_listener *xl)
{
	struct rdma_listener *l = (struct rdma_listener *)xl;

	rdma_destroy_ep(l->lid);
	free(l);
}

/* ------------------------------------------------------------------------
 * Data path
 * ------------------------------------------------------------------------ */

static int wc_error(const struct ibv_wc *wc)
{
	/* A flush is what a disconnect (ours or the peer's) looks like. */
	return wc->status == IBV_WC_WR_FLUSH_ERR ? -EPIPE : -EIO;
}

/* Consume pending notifications so the channel fd stops polling readable. */
static void drain_cq_events(struct ibv_comp_channel *ch)
{
	struct ibv_cq *cq;
	void *ctx;

	while (ibv_get_cq_event(ch, &cq, &ctx) == 0)
		ibv_ack_cq_events(cq, 1);
}

/* A peer's DISCONNECTED: answer it, which flushes our receives. */
static void drain_cm_events(struct rdma_xport *r)
{
	struct rdma_cm_event *ev;

	while (rdma_get_cm_event(r->cm_ch, &ev) == 0) {
		enum rdma_cm_event_type type = ev->event;

		rdma_ack_cm_event(ev);
		if (type == RDMA_CM_EVENT_DISCONNECTED ||
		    type == RDMA_CM_EVENT_DEVICE_REMOVAL) {
			r->disconnected = true;
			(void)rdma_disconnect(r->id);
		}
	}
}

/* Reap send completions; wait for at least one if `wait`. */
static int reap_sends(struct rdma_xport *r, bool wait)
{
	struct ibv_cq *cq = r->id->send_cq;
	struct ibv_wc wc[RDMA_SEND_BUFS];
	bool armed = false;

	for (;;) {
		int n = ibv_poll_cq(cq, RDMA_SEND_BUFS, wc);

		if (n < 0)
			return -EIO;
		for (int i = 0; i < n; i++) {
			if (wc[i].status != IBV_WC_SUCCESS)
				return wc_error(&wc[i]);
			r->inflight--;
		}
		if (n > 0 || !wait || r->inflight == 0)
			return 0;
		if (!armed) {
			/* Arm, then poll again: a completion that landed
			 * between the poll and the arm raises no event. */
			if (ibv_req_notify_cq(cq, 0))
				return -EIO;
			armed = true;
			continue;
		}
		{
			struct pollfd pfd = { .fd = r->id->send_cq_channel->fd,
					      .events = POLLIN };

			if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
				return -errno;
		}
		drain_cq_events(r->id->send_cq_channel);
		armed = false;
	}
}

static int post_slot(struct rdma_xport *r)
{
	unsigned slot = r->head % RDMA_SEND_BUFS;

	if (rdma_post_send(r->id, (void *)(uintptr_t)slot,
			   r->send_mem + (size_t)slot * RDMA_CHUNK, r->fill,
			   r->send_mr, 0))
		return neg_errno();
	r->inflight++;
	r->head++;
	r->fill = 0;
	return 0;
}

static int rdma_writev_(struct xport *x, const struct iovec *iov, int iovcnt)
{
	struct rdma_xport *r = rdma_of(x);
	int rc;

	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		while (left) {
			size_t n;

			if (r->fill == 0) {
				/* Starting a slot: it must not be in flight. */
				while (r->inflight == RDMA_SEND_BUFS) {
					rc = reap_sends(r, true);
					if (rc)
						return rc;
				}
			}
			n = RDMA_CHUNK - r->fill;
			if (n > left)
				n = left;
			memcpy(r->send_mem +
				       (size_t)(r->head % RDMA_SEND_BUFS) *
					       RDMA_CHUNK + r->fill,
			       p, n);
			r->fill += n;
			p += n;
			left -= n;
			if (r->fill == RDMA_CHUNK) {
				rc = post_slot(r);
				if (rc)
					return rc;
			}
		}
	}
	if (r->fill) {
		rc = post_slot(r);
		if (rc)
			return rc;
	}
	return reap_sends(r, false);
}

static int rdma_read_(struct xport *x, void *buf, size_t len, int timeout_ms)
{
	struct rdma_xport *r = rdma_of(x);
	struct ibv_cq *cq = r->id->recv_cq;
	uint64_t deadline = xport__deadline(timeout_ms);
	uint8_t *p = buf;
	size_t got = 0;
	bool armed = false;
	int rc;

	while (got < len) {
		struct ibv_wc wc;
		struct epoll_event ev[2];
		int n;

		if (r->cur >= 0) {
			size_t k = r->cur_len - r->cur_off;

			if (k > len - got)
				k = len - got;
			memcpy(p + got,
			       r->recv_mem + (size_t)r->cur * RDMA_CHUNK +
				       r->cur_off,
			       k);
			got += k;
			r->cur_off += (uint32_t)k;
			xport__note_rx(x, k);
			deadline = xport__deadline(timeout_ms);
			if (r->cur_off == r->cur_len) {
				rc = post_recv(r, r->cur);
				r->cur = -1;
				if (rc)
					return rc;
			}
			continue;
		}
		n = ibv_poll_cq(cq, 1, &wc);
		if (n < 0)
			return -EIO;
		if (n == 1) {
			if (wc.status != IBV_WC_SUCCESS)
				return wc_error(&wc);
			r->cur = (int)wc.wr_id;
			r->cur_len = wc.byte_len;
			r->cur_off = 0;
			if (r->cur_len == 0) {	/* nothing to copy: recycle */
				rc = post_recv(r, r->cur);
				r->cur = -1;
				if (rc)
					return rc;
			}
			continue;
		}
		if (!armed) {
			if (ibv_req_notify_cq(cq, 0))
				return -EIO;
			armed = true;
			continue;	/* re-poll: see reap_sends() */
		}
		n = epoll_wait(r->epfd, ev, 2, xport__ms_left(deadline));
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n == 0)
			return -ETIMEDOUT;
		drain_cq_events(r->id->recv_cq_channel);
		drain_cm_events(r);
		armed = false;
	}
	return 0;
}

static int rdma_poll_fd_(struct xport *x)
{
	struct rdma_xport *r = rdma_of(x);

	/* Arm so that the next completion makes the epoll set readable. */
	(void)ibv_req_notify_cq(r->id->recv_cq, 0);
	return r->epfd;
}

static void rdma_shutdown_(struct xport *x)
{
	struct rdma_xport *r = rdma_of(x);

	/* Moves the QP to error: posted receives and sends flush, which wakes
	 * a reader (armed CQ) and a sender waiting for a free slot. */
	r->disconnected = true;
	(void)rdma_disconnect(r->id);
}

static void rdma_close_(struct xport *x)
{
	struct rdma_xport *r = rdma_of(x);
	uint64_t deadline = xport__deadline(RDMA_CLOSE_DRAIN_MS);

	/*
	 * Let the last SENDs complete before disconnecting: a completion
	 * means the peer's NIC has the bytes, so the peer reads everything we
	 * sent and then -EPIPE, never a truncated stream.  Bounded, since a
	 * dead peer would never complete them.
	 */
	if (!r->disconnected) {
		while (r->inflight && xport__ms_left(deadline) > 0) {
			int n;
			struct ibv_wc wc[RDMA_SEND_BUFS];

			n = ibv_poll_cq(r->id->send_cq, RDMA_SEND_BUFS, wc);
			if (n < 0)
				break;
			r->inflight -= (unsigned)n;
			if (n == 0)
				usleep(100);
		}
		(void)rdma_disconnect(r->id);
	}
	free_conn(r);
}

const struct xport_ops xport_rdma_ops = {
	.scheme = "rdma",
	.listen = rdma_listen_,
	.accept = rdma_accept_,
	.connect = rdma_connect_,
	.writev = rdma_writev_,
	.read = rdma_read_,
	.poll_fd = rdma_poll_fd_,
	.shutdown = rdma_shutdown_,
	.close = rdma_close_,
	.listener_close = rdma_listener_close_,
};
