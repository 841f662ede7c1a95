/*
 * transport/: the replication link between a primary and a secondary.
 *
 * What it provides: connections (TCP, and RDMA where a device exists) that
 * carry framed messages, each with a header checksum and a payload checksum,
 * timeouts on everything that waits, and the page codec (LZ4 in 64 KiB
 * blocks) that the checkpoint sender uses on guest pages.  What it does not:
 * the meaning of messages (HELLO, BEGIN, PAGES, ... belong to ft/), retries,
 * or heartbeats; it only keeps the bookkeeping a heartbeat needs
 * (xport__last_rx_ns).
 *
 * Trust rule: xport__recv() hands a message to the caller only after its
 * header and payload checksums matched; anything else ends the connection
 * with a message naming what was wrong, so ft/ can keep its last good state.
 *
 * All functions return 0 or a negative errno.  Threads: any number of
 * threads may send at once (messages never interleave); one thread at a time
 * may receive; xport__shutdown() may be called from any thread at any time;
 * xport__close() only when no other thread uses the connection any more.
 */
#ifndef FTVM_TRANSPORT_TRANSPORT_H
#define FTVM_TRANSPORT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/state/state.h"	/* struct sbuf, crc32c() */

#define XPORT_PROTO_VERSION 1
#define XPORT_MAX_PAYLOAD (256u << 20)
#define XPORT_MAGIC 0x58565446u		/* "FTVX" in stream byte order */
#define XPORT_HEADER_SIZE 32

/*
 * 32-byte header, little-endian:
 *  0 u32 magic 0x58565446 ("FTVX")   4 u16 version   6 u16 type
 *  8 u64 epoch   16 u32 payload_len   20 u32 payload_crc (crc32c of payload)
 * 24 u32 flags   28 u32 header_crc (crc32c of bytes 0..27)
 *
 * A receiver checks magic, then header_crc, then version, then payload_len
 * against its limit, and only then allocates and reads the payload.  A later
 * protocol version must keep magic, version and header_crc where they are so
 * that an older peer can say which version it met instead of "corrupt".
 * type and flags are the caller's; the transport passes them through.
 */
struct xport_msg {
	uint16_t type;
	uint32_t flags;
	uint64_t epoch;
	struct sbuf payload;
};

struct xport;		/* one connection */
struct xport_listener;

/*
 * One table per transport kind.  Backends embed the generic struct xport
 * (transport/xport_internal.h) and account every received byte through
 * xport__note_rx() before returning, even on error: that is how recv learns
 * how far a timed-out read got and resumes there.
 */
struct xport_ops {
	const char *scheme;	/* "tcp", "rdma" */
	/* addr: "HOST:PORT", the uri without "scheme:" */
	int (*listen)(const char *addr, struct xport_listener **out, char *err,
		      size_t errlen);
	int (*accept)(struct xport_listener *l, int timeout_ms,
		      struct xport **out, char *err, size_t errlen);
	int (*connect)(const char *addr, int timeout_ms, struct xport **out,
		       char *err, size_t errlen);
	/* All bytes or an error; called with the send lock held. */
	int (*writev)(struct xport *x, const struct iovec *iov, int iovcnt);
	/*
	 * Exactly len bytes, or -ETIMEDOUT (no byte for timeout_ms; bytes
	 * before that were stored and accounted), -EPIPE (peer closed),
	 * -errno.  timeout_ms < 0 waits forever.
	 */
	int (*read)(struct xport *x, void *buf, size_t len, int timeout_ms);
	int (*poll_fd)(struct xport *x);
	void (*shutdown)(struct xport *x); /* wakes a blocked reader/sender */
	void (*close)(struct xport *x);	   /* frees the backend's memory */
	void (*listener_close)(struct xport_listener *l);
};

/*
 * uri: "tcp:HOST:PORT" (HOST may be empty or 0 for any address, IPv4 and
 * IPv6 both; an IPv6 literal goes in brackets: "tcp:[::1]:4444"), or
 * "rdma:HOST:PORT".  PORT 0 in listen picks a free port: see
 * xport__listener_port().  Timeouts in milliseconds, < 0 = no limit.
 * Errors carry a message in err, e.g.
 *   "cannot connect to 10.1.0.2:4444: Connection refused"	(-ECONNREFUSED)
 *   "no RDMA device on this host (ibv_get_device_list found none)" (-ENODEV)
 *   "no connection on tcp:0:4444 within 100 ms"		(-ETIMEDOUT)
 */
int xport__listen(const char *uri, struct xport_listener **out, char *err,
		  size_t errlen);
int xport__accept(struct xport_listener *l, int timeout_ms,
		  struct xport **out, char *err, size_t errlen);
int xport__connect(const char *uri, int timeout_ms, struct xport **out,
		   char *err, size_t errlen);
void xport__listener_close(struct xport_listener *l);
/* The port actually bound (useful after listening on port 0). */
int xport__listener_port(struct xport_listener *l);
/* "tcp:[::]:4444": the listening address, for logs. */
const char *xport__listener_addr(struct xport_listener *l);

/*
 * Wrap a connected stream socket (TCP, or an AF_UNIX socketpair for tests)
 * as a "tcp" transport.  Takes ownership of fd, also on failure.  peer names
 * the other side in messages; NULL derives it from getpeername().
 */
int xport__from_fd(int fd, const char *peer, struct xport **out);

/*
 * TLS 1.3 on the link (transport/tls.c, GnuTLS). Credentials are loaded
 * once and shared, read-only, by every connection:
 *   "psk:FILE"             a pre-shared key, hex, in a file of mode 0600
 *   "x509:DIR[,peer=NAME]" DIR/ca-cert.pem, DIR/host-cert.pem,
 *                          DIR/host-key.pem (0600); the peer's certificate
 *                          must chain to the CA and carry NAME, or else
 *                          the peer's address
 * Errors name the file and what is wrong with it.
 */
struct xport_tls;
int xport_tls__load(const char *spec, struct xport_tls **out, char *err, size_t errlen);
void xport_tls__free(struct xport_tls *t);
const char *xport_tls__describe(const struct xport_tls *t);	/* "psk", "x509 peer=..."; "none" for NULL */
/* Where records are encrypted, "kernel: ..." (kTLS) or "user space: why"; "none" for NULL. */
const char *xport_tls__offload(const struct xport_tls *t);
/* Test only: update the sending key after n records (0: the default, 2^24). */
void xport_tls__set_rekey_records(struct xport_tls *t, uint64_t n);
/*
 * Runs the TLS 1.3 handshake on a connected "tcp" connection before any
 * message: server (the accepting side) or client; peer_name is the peer's
 * address (the host the client connected to; the address the server's
 * connection came from): x509 checks the certificate against it unless the
 * credentials name a peer (peer=), and against nothing if it is NULL. From then on every message goes encrypted and
 * authenticated. -EACCES with "authentication failed: ..." when the peer
 * did not prove it holds the credentials (the peer itself is told nothing
 * more than a TLS alert); -ETIMEDOUT; -EOPNOTSUPP on other transports.
 */
int xport__start_tls(struct xport *x, const struct xport_tls *t, bool server, const char *peer_name,
		     int timeout_ms, char *err, size_t errlen);
/*
 * Messages sent between batch_begin and batch_end may leave together: on
 * TLS, one run of records in as few writes as can be (and the receiver
 * decrypts them in as few reads), instead of a record and a write each.
 * No effect on a plaintext connection. batch_end flushes; it returns the
 * send error, if any. Meant for a few small messages (a checkpoint of a
 * few pages): what is batched is held in memory until batch_end.
 */
void xport__batch_begin(struct xport *x);
int xport__batch_end(struct xport *x);

/* "TLS1.3 AES-256-GCM", or "none" on a plaintext connection. */
const char *xport__cipher(struct xport *x, char *buf, size_t len);
uint64_t xport__rekeys(struct xport *x);	/* key updates this side sent */

/*
 * Send one whole message (header + the concatenation of iov as payload).
 * Thread-safe: concurrent senders never interleave messages.  Blocks until
 * the bytes are handed to the kernel/NIC (a peer that stops reading blocks
 * the sender: xport__shutdown() from another thread unblocks it).
 * -EMSGSIZE if the payload exceeds XPORT_MAX_PAYLOAD; -EPIPE, -ECONNRESET,
 * ... if the link failed.  After a send error every later send returns it
 * (a message may have been cut in the middle).
 */
int xport__send(struct xport *x, uint16_t type, uint32_t flags,
		uint64_t epoch, const struct iovec *iov, int iovcnt);
int xport__send_buf(struct xport *x, uint16_t type, uint32_t flags,
		    uint64_t epoch, const void *p, size_t len);

/*
 * Receive one message into m (its payload buffer is reused: the previous
 * contents are replaced).  Verifies magic, header crc, version, length
 * limit, payload crc.  Returns
 *   0           m holds a verified message
 *   -ETIMEDOUT  no byte arrived for timeout_ms (an inactivity timeout: a
 *               large message that keeps arriving never times out).  A
 *               message that had begun is kept and the next call continues
 *               it: the connection stays usable.
 *   -EPIPE      the peer closed cleanly between messages
 *   -ESHUTDOWN  xport__shutdown() was called on this connection
 *   -EBADMSG    corrupt, or stream truncated mid-message
 *   -EPROTO     the peer speaks another protocol version
 *   -errno      the link failed (-ECONNRESET, ...)
 * with err naming the problem, e.g.
 *   "peer speaks replication protocol version 2, this ftvm speaks 1"
 *   "message 'PAGES' epoch 17: payload checksum mismatch"
 *   "stream truncated: message 'PAGES' epoch 17: header says 4096 payload
 *    bytes, connection closed after 100"
 * After any error except -ETIMEDOUT the connection is unusable and every
 * later call returns the same error.  Payloads are allocated as they arrive,
 * so a header claiming a large payload costs memory only once the bytes
 * come.
 */
int xport__recv(struct xport *x, struct xport_msg *m, int timeout_ms,
		char *err, size_t errlen);
void xport_msg__init(struct xport_msg *m);
void xport_msg__free(struct xport_msg *m);

/*
 * An fd to poll(POLLIN) on while waiting for messages in an event loop.
 * Edge-like for RDMA (the backend may already hold received data, and the
 * fd is armed by this call): drain with xport__recv(..., 0, ...) until
 * -ETIMEDOUT, then call xport__poll_fd() again and poll.
 */
int xport__poll_fd(struct xport *x);
/* CLOCK_MONOTONIC ns of the last byte received (connect/accept time before
 * any): heartbeat bookkeeping, readable from any thread. */
uint64_t xport__last_rx_ns(struct xport *x);
/* ... and of the last whole message sent (connect/accept time before any). */
uint64_t xport__last_tx_ns(struct xport *x);
uint64_t xport__bytes_sent(struct xport *x);
uint64_t xport__bytes_received(struct xport *x);
/* Wakes threads blocked in recv (-ESHUTDOWN) or send; the connection is
 * then unusable.  Safe from any thread, idempotent. */
void xport__shutdown(struct xport *x);
void xport__close(struct xport *x);	/* NULL is a no-op */
const char *xport__peer(struct xport *x);	/* "10.1.0.2:4444" */
/* True once a receive found the peer's end closed, also in the middle of a
 * message (-EBADMSG "stream truncated"): a lost peer, not a corrupt one. */
bool xport__peer_closed(struct xport *x);
const char *xport__scheme(struct xport *x);	/* "tcp", "rdma" */
/*
 * names[type] (may be NULL for gaps) names message types in errors.  The
 * array must outlive the connection; set it before other threads use x.
 */
void xport__set_type_names(struct xport *x, const char *const *names,
			   unsigned n);
/* Lower the payload limit for this connection's receive side (bytes,
 * <= XPORT_MAX_PAYLOAD): a secondary can bound what one message may cost. */
int xport__set_max_payload(struct xport *x, uint32_t max);

/*
 * Test-only fault injection on the send side, so tests can check what a
 * receiver does with damage that really crosses the wire:
 *   CORRUPT_NEXT   the next message's payload checksum is wrong
 *   TRUNCATE_NEXT  the next message stops halfway; the connection is then
 *                  shut down (the peer sees a stream truncated mid-message)
 *                  and that send returns -EPIPE, as a real cut would
 * Applies to the next message with a payload; one-shot.
 */
enum xport_fault { XPORT_FAULT_NONE, XPORT_FAULT_CORRUPT_NEXT, XPORT_FAULT_TRUNCATE_NEXT };
void xport__inject_fault(struct xport *x, enum xport_fault f);

/* Encode a header (for tests and tools that build streams by hand). */
void xport__encode_header(uint8_t out[XPORT_HEADER_SIZE], uint16_t type,
			  uint32_t flags, uint64_t epoch, uint32_t payload_len,
			  uint32_t payload_crc);

/* ------------------------------------------------------------------------
 * Page codec: LZ4 in independent 64 KiB blocks
 * ------------------------------------------------------------------------
 *
 * Encoded form: a sequence of blocks, each
 *	u32 raw_len     1..65536 bytes of input this block stands for
 *	u32 stored_len  bytes of data that follow
 *	u8  method      0 raw (stored_len == raw_len)
 *	                1 LZ4 block (0 < stored_len < raw_len)
 *	                2 zero (stored_len == 0: raw_len zero bytes)
 *	u8  data[stored_len]
 * Blocks are independent, so a decoder needs no more than its output buffer
 * and a block that does not shrink costs 9 bytes.  No checksum of its own:
 * it travels inside a checksummed message.
 */
#define PAGE_CODEC_BLOCK (64u << 10)
#define PAGE_CODEC_BLOCK_HDR 9
enum page_codec_method {
	PAGE_CODEC_RAW = 0,
	PAGE_CODEC_LZ4 = 1,
	PAGE_CODEC_ZERO = 2,
};

/* Append the encoding of data[0..len) to out.  -ENOMEM (out->len restored). */
int page_codec__encode(const void *data, size_t len, struct sbuf *out);
/*
 * Decode exactly out_len bytes into out.  Refuses (-EBADMSG, err says why)
 * anything inconsistent: a truncated block, an unknown method, sizes that
 * disagree, LZ4 data that does not decode to exactly raw_len, a total other
 * than out_len.  Never writes outside out[0..out_len); on error out's
 * contents are unspecified.
 */
int page_codec__decode(const void *in, size_t len, void *out, size_t out_len,
		       char *err, size_t errlen);
/* Walk the block headers: the decoded size, without decoding.  -EBADMSG. */
int page_codec__raw_len(const void *in, size_t len, size_t *raw_len);

/* ------------------------------------------------------------------------
 * Page deltas: a 4 KiB page as the runs where it differs from an older
 * version of the same page
 * ------------------------------------------------------------------------
 *
 * A page the guest dirtied between two checkpoints has mostly kept its
 * bytes (a counter, a list link, a few lines of a buffer). Sent as its
 * delta against the version the receiver already holds, it costs a few
 * dozen bytes instead of 4,096, and no compressor has to find that out.
 *
 * Encoded form: runs, each
 *	u16 gap    bytes unchanged since the end of the previous run (or the page's start)
 *	u16 len    1..4096 changed bytes
 *	u8  data[len]
 * The encoder works in 8-byte words, so its runs start and end on them;
 * the decoder takes any run that stays inside the page. An empty delta
 * means "unchanged". Like the page codec, it has no checksum of its own:
 * whoever sends it checks what it produces (ft's PAGES carry a CRC-32C of
 * each page a delta rebuilds).
 */
#define PAGE_DELTA_PAGE 4096u
#define PAGE_DELTA_RUN_HDR 4u

/*
 * Appends the delta old -> new (PAGE_DELTA_PAGE bytes each) to out if it
 * takes at most max bytes: its length (0: the pages are equal). -E2BIG if
 * it would be longer (out unchanged: send the page whole), -ENOMEM.
 */
int page_delta__encode(const void *old_page, const void *new_page, size_t max, struct sbuf *out);
/*
 * Applies a delta to page (PAGE_DELTA_PAGE bytes) in place. -EBADMSG (err
 * says why) for a truncated run, an empty run or one past the page's end;
 * page may then be partly written.
 */
int page_delta__apply(void *page, const void *delta, size_t len, char *err, size_t errlen);

#endif /* FTVM_TRANSPORT_TRANSPORT_H */
