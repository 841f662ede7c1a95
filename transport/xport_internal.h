/*
 * Inside transport/: what the generic layer (transport.c) and the backends
 * (tcp.c, rdma.c) share.  Not for use outside this folder.
 *
 * A backend allocates its own connection struct with `struct xport` as its
 * first member, calls xport__base_init(), and frees the whole thing in its
 * ops->close.  Listeners likewise embed struct xport_listener.
 */
#ifndef FTVM_TRANSPORT_XPORT_INTERNAL_H
#define FTVM_TRANSPORT_XPORT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>

#include "transport.h"

#define XPORT_PEER_LEN 80

/* Partly received message: survives an -ETIMEDOUT between recv calls. */
struct xport_rx {
	uint8_t hdr[XPORT_HEADER_SIZE];
	size_t hdr_got;
	bool hdr_ok;		/* hdr verified, fields below valid */
	uint16_t type;
	uint32_t flags;
	uint64_t epoch;
	uint32_t len;		/* payload_len */
	uint32_t want_crc;
	uint32_t crc;		/* running crc32c of payload.data[0..len) */
	struct sbuf payload;	/* payload.len = bytes received so far */
};

struct xport {
	const struct xport_ops *ops;
	char peer[XPORT_PEER_LEN];

	/* Serialises whole messages on the wire; held across ops->writev. */
	pthread_mutex_t send_lock;
	int send_err;		/* sticky; protected by send_lock */
	/* Plain TCP between xport__batch_begin and _end: small messages are
	 * gathered here and leave in one write, so the peer wakes once for a
	 * checkpoint, not once a message. Under send_lock. */
	bool batching;
	struct sbuf batch;

	/* Receive side: used by the one receiving thread only. */
	struct xport_rx rx;
	int rx_err;		/* sticky error, 0 while usable */
	char rx_errmsg[256];	/* its message, repeated on later calls */
	uint32_t max_payload;
	const char *const *type_names;
	unsigned ntype_names;

	/* Read from any thread (heartbeat, `info migrate`). */
	_Atomic uint64_t last_rx_ns;
	_Atomic uint64_t last_tx_ns;	/* last whole message sent */
	_Atomic uint64_t bytes_sent;
	_Atomic uint64_t bytes_received;
	atomic_bool shut;
	_Atomic int fault;	/* enum xport_fault, one-shot (tests) */
	atomic_bool peer_closed; /* the peer closed the stream (maybe mid-message) */
};

struct xport_listener {
	const struct xport_ops *ops;
	char addr[XPORT_PEER_LEN + 8];	/* "tcp:[::]:4444" */
	int port;
};

/* Fills the generic part; peer may be NULL.  0 or -errno. */
int xport__base_init(struct xport *x, const struct xport_ops *ops,
		     const char *peer);
/* Backends: account n bytes just stored into the caller's buffer. */
void xport__note_rx(struct xport *x, size_t n);
uint64_t xport__now_ns(void);
/* Writes a message into err (which may be NULL). */
void xport__seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Split "HOST:PORT" / "[V6]:PORT" / ":PORT".  host gets "" for an empty or
 * "0" host (any address).  0, or -EINVAL with a message.
 */
int xport__split_hostport(const char *addr, char *host, size_t hostlen,
			  char *port, size_t portlen, char *err,
			  size_t errlen);
/* "10.1.0.2:4444", "[::1]:4444"; IPv4-mapped IPv6 shown as IPv4. */
void xport__format_sockaddr(const struct sockaddr *sa, char *buf,
			    size_t len);
/* Milliseconds left until deadline_ns (0 when passed), or -1 for none. */
int xport__ms_left(uint64_t deadline_ns);
/* deadline for a timeout in ms; 0 = none (timeout_ms < 0) */
uint64_t xport__deadline(int timeout_ms);

/* TLS on a TCP connection (tls.c); tcp.c calls these when it has a session. */
struct tls_conn;
int tls_conn__handshake(int fd, const struct xport_tls *t, bool server, const char *peer_name,
			int timeout_ms, struct tls_conn **out, char *err, size_t errlen);
int tls_conn__writev(struct tls_conn *c, const struct iovec *iov, int iovcnt);
int tls_conn__read(struct tls_conn *c, struct xport *x, void *buf, size_t len, int timeout_ms);
const char *tls_conn__cipher(struct tls_conn *c, char *buf, size_t len);
uint64_t tls_conn__rekeys(struct tls_conn *c);
void tls_conn__cork(struct tls_conn *c);
int tls_conn__uncork(struct tls_conn *c);
void tls_conn__free(struct tls_conn *c);
/* The kernel's TLS for a session GnuTLS negotiated (ktls.c). */
#define KTLS_SECRET_MAX 64
struct ktls;
int ktls__probe(char *why, size_t len);	/* 0: this kernel can; else -ENOTSUP and why */
int ktls__start(int fd, gnutls_session_t s, const uint8_t *tx_secret, const uint8_t *rx_secret, size_t slen,
		uint64_t rekey_records, struct ktls **out, char *err, size_t errlen);
int ktls__writev(struct ktls *k, const struct iovec *iov, int iovcnt);
int ktls__read(struct ktls *k, struct xport *x, void *buf, size_t len, int timeout_ms);
uint64_t ktls__rekeys(struct ktls *k);
void ktls__free(struct ktls *k);	/* NULL is a no-op */
/* RFC 8446, 7.3 and 7.2 (exposed for the unit test that checks them against GnuTLS). */
int ktls__record_keys(gnutls_mac_algorithm_t hash, gnutls_cipher_algorithm_t cipher, const uint8_t *secret,
		      size_t slen, uint8_t key[32], size_t *key_len, uint8_t iv[12]);
int ktls__next_secret(gnutls_mac_algorithm_t hash, uint8_t *secret, size_t slen);
/* tcp.c: all of iov on a blocking socket (plaintext, or the kernel's TLS); calls: sendmsg calls made. */
int tcp__sendmsg_all(int fd, const struct iovec *iov, int iovcnt, unsigned *calls);

/* tcp.c: the TCP connection x goes on in TLS (handshake done) or stays as it was. */
int tcp__start_tls(struct xport *x, const struct xport_tls *t, bool server, const char *peer_name,
		   int timeout_ms, char *err, size_t errlen);
struct tls_conn *tcp__tls(struct xport *x);

extern const struct xport_ops xport_tcp_ops;
#ifdef FTVM_HAVE_RDMA
extern const struct xport_ops xport_rdma_ops;
#endif

#endif /* FTVM_TRANSPORT_XPORT_INTERNAL_H */
