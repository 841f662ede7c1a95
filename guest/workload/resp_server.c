/*
 * resp_server.c - the RESP service on TCP (lwIP's raw API): up to
 * RESP_MAX_CONNS connections, each with an input buffer that resp_step()
 * takes whole commands from (pipelining: as many as have arrived) and an
 * output buffer that goes out as lwIP's send buffer allows.
 *
 * Back-pressure, so that one client cannot stall the others: a
 * connection runs a command only with RESP_MIN_ROOM free in its output
 * buffer, and a received byte is acknowledged to lwIP (tcp_recved, which
 * reopens the peer's window) only once a command took it. A client that
 * never reads its answers fills its own output buffer, then its window,
 * and nothing else. The input buffer holds a whole window (TCP_WND): lwIP
 * never hands over more than that unacknowledged, so what it hands over
 * always fits. A command that does not fit in it (many long arguments)
 * is a protocol error: the connection is closed, as Redis does with a
 * request over its limits.
 */
#include "workload/resp_server.h"

#include "lib/errno.h"
#include "lib/string.h"
#include "lwip/tcp.h"
#include "workload/resp_proto.h"

#define RESP_IN_MAX  TCP_WND	/* the longest command (23,360 bytes): a SET of a 512-byte key and value fits many times over */
#define RESP_OUT_MAX (RESP_MIN_ROOM + 16384)	/* room to gather pipelined answers */

struct conn {
	struct tcp_pcb *pcb;		/* NULL: the slot is free */
	size_t in_len, out_len, out_sent;
	bool closing;			/* close once out[] has gone */
	uint8_t in[RESP_IN_MAX];
	uint8_t out[RESP_OUT_MAX];
};

static struct conn conns[RESP_MAX_CONNS];
static const struct resp_store *store;

static void conn_free(struct conn *c)
{
	c->pcb = NULL;
}

/* True if it had to reset instead (the caller, in a callback, then returns ERR_ABRT). */
static bool conn_close(struct conn *c)
{
	struct tcp_pcb *pcb = c->pcb;
	/* Bytes taken but not run (after a protocol error): given back to
	 * the window, or lwIP would answer the close with a reset, which
	 * can destroy the error answer before the client reads it. */
	for (size_t left = c->in_len; left;) {
		u16_t n = left > 0xffff ? 0xffff : (u16_t)left;
		tcp_recved(pcb, n);
		left -= n;
	}
	c->in_len = 0;
	tcp_arg(pcb, NULL);
	tcp_recv(pcb, NULL);
	tcp_sent(pcb, NULL);
	tcp_err(pcb, NULL);
	tcp_poll(pcb, NULL, 0);
	conn_free(c);
	if (tcp_close(pcb) == ERR_OK)
		return false;
	tcp_abort(pcb);	/* out of memory for the FIN: reset instead */
	return true;
}

/* As much of out[] as lwIP takes now. */
static void flush(struct conn *c)
{
	size_t left = c->out_len - c->out_sent;
	if (left) {
		size_t room = tcp_sndbuf(c->pcb);
		size_t n = left < room ? left : room;
		if (n > 0xffff)
			n = 0xffff;
		if (n && tcp_write(c->pcb, c->out + c->out_sent, (u16_t)n, TCP_WRITE_FLAG_COPY) == ERR_OK) {
			c->out_sent += n;
			tcp_output(c->pcb);
		}
	}
	if (c->out_sent == c->out_len) {
		c->out_len = c->out_sent = 0;
	} else if (c->out_sent > RESP_OUT_MAX / 2) {
		memmove(c->out, c->out + c->out_sent, c->out_len - c->out_sent);
		c->out_len -= c->out_sent;
		c->out_sent = 0;
	}
}

/* Runs the whole commands in in[] while out[] has room; what a callback returns. */
static err_t run(struct conn *c)
{
	size_t at = 0;
	while (!c->closing && RESP_OUT_MAX - c->out_len >= RESP_MIN_ROOM) {
		struct resp_out o = { c->out, c->out_len, RESP_OUT_MAX };
		size_t used;
		enum resp_step s = resp_step(c->in + at, c->in_len - at, &used, &o, store);
		c->out_len = o.len;
		at += used;
		if (s == RESP_NEED_MORE) {
			if (c->in_len - at == sizeof(c->in)) {
				static const char big[] = "-ERR Protocol error: command too large\r\n";
				memcpy(c->out + c->out_len, big, sizeof(big) - 1);
				c->out_len += sizeof(big) - 1;
				c->closing = true;
			}
			break;
		}
		if (s == RESP_CLOSE)
			c->closing = true;
	}
	if (at) {
		memmove(c->in, c->in + at, c->in_len - at);
		c->in_len -= at;
		/* Taken by commands: the peer may send that much more. */
		for (size_t left = at; left;) {
			u16_t n = left > 0xffff ? 0xffff : (u16_t)left;
			tcp_recved(c->pcb, n);
			left -= n;
		}
	}
	flush(c);
	if (c->closing && c->out_len == 0)
		return conn_close(c) ? ERR_ABRT : ERR_OK;
	return ERR_OK;
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct conn *c = arg;
	(void)pcb;
	if (!c) {
		if (p)
			pbuf_free(p);
		return ERR_OK;
	}
	if (!p || err != ERR_OK) {
		/* The client closed its side: what it sent is answered,
		 * then the connection ends. */
		if (p)
			pbuf_free(p);
		c->closing = true;
		return run(c);
	}
	if (p->tot_len > sizeof(c->in) - c->in_len)
		return ERR_MEM;	/* more than the window: lwIP keeps it and offers it again */
	pbuf_copy_partial(p, c->in + c->in_len, p->tot_len, 0);
	c->in_len += p->tot_len;
	pbuf_free(p);
	return run(c);
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	(void)pcb;
	(void)len;
	return arg ? run(arg) : ERR_OK;
}

static err_t on_poll(void *arg, struct tcp_pcb *pcb)
{
	(void)pcb;
	return arg ? run(arg) : ERR_OK;	/* lwIP had no memory for a write earlier */
}

static void on_err(void *arg, err_t err)
{
	/* The pcb is already gone (reset by the peer, or aborted). */
	(void)err;
	struct conn *c = arg;
	if (c) {
		c->pcb = NULL;
		conn_free(c);
	}
}

static err_t on_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
	(void)arg;
	if (err != ERR_OK || !pcb)
		return ERR_VAL;
	struct conn *c = NULL;
	for (unsigned i = 0; i < RESP_MAX_CONNS && !c; i++)
		if (!conns[i].pcb)
			c = &conns[i];
	if (!c) {
		tcp_abort(pcb);	/* full: a reset, as a server out of slots */
		return ERR_ABRT;
	}
	c->pcb = pcb;
	c->in_len = c->out_len = c->out_sent = 0;
	c->closing = false;
	tcp_arg(pcb, c);
	tcp_recv(pcb, on_recv);
	tcp_sent(pcb, on_sent);
	tcp_err(pcb, on_err);
	tcp_poll(pcb, on_poll, 2);	/* every second */
	tcp_nagle_disable(pcb);		/* answers go out at once */
	return ERR_OK;
}

int resp_server_start(uint16_t port, const struct resp_store *st)
{
	store = st;
	struct tcp_pcb *pcb = tcp_new();
	if (!pcb)
		return -ENOMEM;
	if (tcp_bind(pcb, IP4_ADDR_ANY, port) != ERR_OK) {
		tcp_close(pcb);
		return -EBUSY;
	}
	struct tcp_pcb *l = tcp_listen_with_backlog(pcb, RESP_MAX_CONNS);
	if (!l) {
		tcp_close(pcb);
		return -ENOMEM;
	}
	tcp_accept(l, on_accept);
	return 0;
}
