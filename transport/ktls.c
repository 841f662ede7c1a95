/*
 * ktls.c - the kernel's TLS (TCP_ULP "tls") for a TLS 1.3 session GnuTLS
 * negotiated: once the handshake is done, the kernel encrypts what is
 * sent and decrypts what is read, and the socket is written and read like
 * a plaintext one (no copy into GnuTLS, no user-space AES).
 *
 * Used only where all of this holds (ktls__probe, once per process):
 *   - the kernel attaches the "tls" ULP (CONFIG_TLS, module tls);
 *   - it accepts a second TLS_TX on a socket: TLS 1.3 key updates
 *     (Linux 6.14 and later). Without them a key could not be replaced
 *     before its AES-GCM limit, so such a kernel is not used.
 * Otherwise, or with `ktls=off` in --tls-creds, TLS stays in user space.
 *
 * The keys: GnuTLS hands out the session's traffic secrets (its keylog
 * hook, called during the handshake); the record keys derived from them
 * here (RFC 8446, 7.3) must equal what GnuTLS itself holds
 * (gnutls_record_get_state) before the kernel gets them. A key update
 * (RFC 8446, 4.6.3) is done here too: the sender sends the KeyUpdate
 * handshake record through the kernel (TLS_SET_RECORD_TYPE) and installs
 * the next secret's keys; the receiver sees the record (TLS_GET_RECORD_TYPE)
 * and installs its next keys before reading on.
 *
 * Threads: as tls.c. Sends (writev, the key update) under the transport's
 * send lock; reads from the one receiving thread. A KeyUpdate asking us to
 * update too (our peer never asks, but a TLS peer may) is noted by the
 * reader (tx_due) and done by the next send.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/tls.h>

#include <gnutls/crypto.h>

#include "xport_internal.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

#define REC_CHANGE_CIPHER 20
#define REC_ALERT 21
#define REC_HANDSHAKE 22
#define REC_DATA 23
#define HS_KEY_UPDATE 24
#define KTLS_RECORD 16384u

union ktls_info {
	struct tls_crypto_info base;
	struct tls12_crypto_info_aes_gcm_128 gcm128;
	struct tls12_crypto_info_aes_gcm_256 gcm256;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

struct ktls_dir {
	uint8_t secret[KTLS_SECRET_MAX];
};

struct ktls {
	int fd;
	gnutls_cipher_algorithm_t cipher;
	gnutls_mac_algorithm_t hash;
	size_t secret_len;
	/* Send side, under the transport's send lock. */
	struct ktls_dir tx;
	uint64_t records;		/* sent under the current key (an upper bound) */
	uint64_t rekey_records;
	uint64_t last_rekey_ns;
	_Atomic bool tx_due;		/* the peer asked for our update. W: reader; R: sender */
	_Atomic uint64_t rekeys;	/* our own key updates. W: sender; R: any */
	/* Receive side, the receiving thread only. */
	struct ktls_dir rx;
};

/* ---- keys (RFC 8446, 7.1 and 7.3) ------------------------------------------ */

/* HKDF-Expand-Label(secret, label, "", len). */
static int expand_label(gnutls_mac_algorithm_t hash, const uint8_t *secret, size_t slen,
			const char *label, uint8_t *out, size_t len)
{
	uint8_t info[2 + 1 + 6 + 32 + 1];
	size_t ll = strlen(label);
	if (ll > 32)
		return -EINVAL;
	info[0] = (uint8_t)(len >> 8);
	info[1] = (uint8_t)len;
	info[2] = (uint8_t)(6 + ll);
	memcpy(info + 3, "tls13 ", 6);
	memcpy(info + 9, label, ll);
	info[9 + ll] = 0;	/* empty context */
	gnutls_datum_t k = { (unsigned char *)secret, (unsigned)slen };
	gnutls_datum_t i = { info, (unsigned)(10 + ll) };
	return gnutls_hkdf_expand(hash, &k, &i, out, len) < 0 ? -EINVAL : 0;
}

static size_t key_len_of(gnutls_cipher_algorithm_t cipher)
{
	switch (cipher) {
	case GNUTLS_CIPHER_AES_128_GCM:
		return 16;
	case GNUTLS_CIPHER_AES_256_GCM:
	case GNUTLS_CIPHER_CHACHA20_POLY1305:
		return 32;
	default:
		return 0;	/* the kernel is not given it */
	}
}

int ktls__record_keys(gnutls_mac_algorithm_t hash, gnutls_cipher_algorithm_t cipher, const uint8_t *secret,
		      size_t slen, uint8_t key[32], size_t *key_len, uint8_t iv[12])
{
	size_t kl = key_len_of(cipher);
	if (!kl)
		return -ENOTSUP;
	*key_len = kl;
	int r = expand_label(hash, secret, slen, "key", key, kl);
	return r ? r : expand_label(hash, secret, slen, "iv", iv, 12);
}

int ktls__next_secret(gnutls_mac_algorithm_t hash, uint8_t *secret, size_t slen)
{
	uint8_t next[KTLS_SECRET_MAX];
	int r = expand_label(hash, secret, slen, "traffic upd", next, slen);
	if (!r)
		memcpy(secret, next, slen);
	gnutls_memset(next, 0, sizeof(next));
	return r;
}

/* The kernel's description of one direction's key. */
static int fill_info(gnutls_cipher_algorithm_t cipher, const uint8_t *key, const uint8_t iv[12],
		     const uint8_t seq[8], union ktls_info *ci, socklen_t *len)
{
	memset(ci, 0, sizeof(*ci));
	ci->base.version = TLS_1_3_VERSION;
	switch (cipher) {
	case GNUTLS_CIPHER_AES_128_GCM:
		ci->base.cipher_type = TLS_CIPHER_AES_GCM_128;
		memcpy(ci->gcm128.salt, iv, 4);
		memcpy(ci->gcm128.iv, iv + 4, 8);
		memcpy(ci->gcm128.key, key, 16);
		memcpy(ci->gcm128.rec_seq, seq, 8);
		*len = sizeof(ci->gcm128);
		return 0;
	case GNUTLS_CIPHER_AES_256_GCM:
		ci->base.cipher_type = TLS_CIPHER_AES_GCM_256;
		memcpy(ci->gcm256.salt, iv, 4);
		memcpy(ci->gcm256.iv, iv + 4, 8);
		memcpy(ci->gcm256.key, key, 32);
		memcpy(ci->gcm256.rec_seq, seq, 8);
		*len = sizeof(ci->gcm256);
		return 0;
	case GNUTLS_CIPHER_CHACHA20_POLY1305:
		ci->base.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
		memcpy(ci->chacha.iv, iv, 12);
		memcpy(ci->chacha.key, key, 32);
		memcpy(ci->chacha.rec_seq, seq, 8);
		*len = sizeof(ci->chacha);
		return 0;
	default:
		return -ENOTSUP;
	}
}

/* Gives the kernel the keys of secret for one direction (TLS_TX or TLS_RX). */
static int install(struct ktls *k, int dir, const uint8_t *secret, const uint8_t seq[8])
{
	uint8_t key[32], iv[12];
	size_t kl;
	union ktls_info ci;
	socklen_t cl;
	int r = ktls__record_keys(k->hash, k->cipher, secret, k->secret_len, key, &kl, iv);
	if (!r)
		r = fill_info(k->cipher, key, iv, seq, &ci, &cl);
	if (!r && setsockopt(k->fd, SOL_TLS, dir, &ci, cl) < 0)
		r = -errno;
	gnutls_memset(key, 0, sizeof(key));
	gnutls_memset(&ci, 0, sizeof(ci));
	return r;
}

/* ---- can this kernel do it --------------------------------------------------- */

int ktls__probe(char *why, size_t len)
{
	int l = -1, a = -1, b = -1, r = 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);

	if ((l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &sl) < 0 ||
	    (a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(a, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    (b = accept(l, NULL, NULL)) < 0) {
		r = -errno;
		snprintf(why, len, "cannot make a loopback connection to try it: %s", strerror(-r));
		goto out;
	}
	if (setsockopt(a, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) < 0) {
		r = -errno;
		snprintf(why, len, "the kernel has no kTLS (TCP_ULP \"tls\": %s; CONFIG_TLS, module tls)",
			 strerror(-r));
		goto out;
	}
	/* A throwaway key, twice: the second is a TLS 1.3 key update. */
	static const uint8_t zero[32];
	union ktls_info ci;
	socklen_t cl;
	fill_info(GNUTLS_CIPHER_AES_128_GCM, zero, zero, zero, &ci, &cl);
	if (setsockopt(a, SOL_TLS, TLS_TX, &ci, cl) < 0) {
		r = -errno;
		snprintf(why, len, "the kernel's TLS refuses TLS 1.3 AES-GCM keys (%s)", strerror(-r));
		goto out;
	}
	if (setsockopt(a, SOL_TLS, TLS_TX, &ci, cl) < 0) {
		r = -errno;
		snprintf(why, len, "the kernel's TLS cannot update a TLS 1.3 key (%s; Linux 6.14 or later "
			 "can): a key could not be replaced before its limit", strerror(-r));
		goto out;
	}
	snprintf(why, len, "kernel TLS with TLS 1.3 key updates");
out:
	if (b >= 0)
		close(b);
	if (a >= 0)
		close(a);
	if (l >= 0)
		close(l);
	return r ? -ENOTSUP : 0;
}

/* ---- a connection ----------------------------------------------------------------- */

/* The keys this side would derive equal GnuTLS's own for direction read. */
static int agrees(struct ktls *k, gnutls_session_t s, unsigned read, const uint8_t *secret, uint8_t seq[8])
{
	gnutls_datum_t iv, key;
	uint8_t mykey[32], myiv[12];
	size_t kl;
	int r = ktls__record_keys(k->hash, k->cipher, secret, k->secret_len, mykey, &kl, myiv);
	if (!r && gnutls_record_get_state(s, read, NULL, &iv, &key, seq) < 0)
		r = -EINVAL;
	if (!r && (key.size != kl || iv.size != 12 || memcmp(key.data, mykey, kl) || memcmp(iv.data, myiv, 12)))
		r = -EPROTO;
	gnutls_memset(mykey, 0, sizeof(mykey));
	return r;
}

int ktls__start(int fd, gnutls_session_t s, const uint8_t *tx_secret, const uint8_t *rx_secret, size_t slen,
		uint64_t rekey_records, struct ktls **out, char *err, size_t errlen)
{
	struct ktls *k = calloc(1, sizeof(*k));
	uint8_t tx_seq[8], rx_seq[8];
	int r;

	*out = NULL;
	if (!k)
		return -ENOMEM;
	k->fd = fd;
	k->cipher = gnutls_cipher_get(s);
	k->hash = (gnutls_mac_algorithm_t)gnutls_prf_hash_get(s);
	k->secret_len = slen;
	k->rekey_records = rekey_records;
	k->last_rekey_ns = xport__now_ns();
	if (!key_len_of(k->cipher) || !slen || slen > KTLS_SECRET_MAX) {
		xport__seterr(err, errlen, "kTLS: %s is not given to the kernel", gnutls_cipher_get_name(k->cipher));
		free(k);
		return -ENOTSUP;
	}
	memcpy(k->tx.secret, tx_secret, slen);
	memcpy(k->rx.secret, rx_secret, slen);
	/* Never a wrong key into the kernel: what is derived here must be
	 * what GnuTLS uses. */
	if ((r = agrees(k, s, 0, k->tx.secret, tx_seq)) || (r = agrees(k, s, 1, k->rx.secret, rx_seq))) {
		xport__seterr(err, errlen, "kTLS: the record keys derived here differ from GnuTLS's");
		ktls__free(k);
		return -ENOTSUP;
	}
	if (setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) < 0) {
		r = -errno;
		xport__seterr(err, errlen, "kTLS: TCP_ULP: %s", strerror(-r));
		ktls__free(k);
		return -ENOTSUP;	/* nothing changed: user space goes on */
	}
	if ((r = install(k, TLS_TX, k->tx.secret, tx_seq)) || (r = install(k, TLS_RX, k->rx.secret, rx_seq))) {
		/* Half in the kernel: neither side can go on. */
		xport__seterr(err, errlen, "kTLS: installing the keys: %s", strerror(-r));
		ktls__free(k);
		return -EIO;
	}
	*out = k;
	return 0;
}

void ktls__free(struct ktls *k)
{
	if (!k)
		return;
	gnutls_memset(k, 0, sizeof(*k));
	free(k);
}

uint64_t ktls__rekeys(struct ktls *k)
{
	return atomic_load(&k->rekeys);
}

/* ---- sending ----------------------------------------------------------------------- */

/* Our KeyUpdate record (through the kernel, under the old key), then the new key. */
static int update_tx(struct ktls *k)
{
	uint8_t msg[5] = { HS_KEY_UPDATE, 0, 0, 1, 0 };	/* update_not_requested */
	union {
		char buf[CMSG_SPACE(sizeof(unsigned char))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { msg, sizeof(msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
	*CMSG_DATA(cm) = REC_HANDSHAKE;
	ssize_t n;
	do
		n = sendmsg(k->fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(msg))
		return n < 0 && errno == EPIPE ? -EPIPE : -ECONNRESET;
	static const uint8_t seq0[8];
	if (ktls__next_secret(k->hash, k->tx.secret, k->secret_len) || install(k, TLS_TX, k->tx.secret, seq0))
		return -ECONNRESET;
	k->records = 0;
	k->last_rekey_ns = xport__now_ns();
	atomic_fetch_add(&k->rekeys, 1);
	return 0;
}

int ktls__writev(struct ktls *k, const struct iovec *iov, int iovcnt)
{
	size_t total = 0;
	unsigned calls = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	int r = tcp__sendmsg_all(k->fd, iov, iovcnt, &calls);
	if (r)
		return r;
	/* Each sendmsg ends a record, and a record holds at most 16 KiB. */
	k->records += (total + KTLS_RECORD - 1) / KTLS_RECORD + calls;
	/* As tls.c: at most 4 updates a second (GnuTLS peers refuse more than 8). */
	if (atomic_exchange(&k->tx_due, false) ||
	    (k->records >= k->rekey_records && xport__now_ns() - k->last_rekey_ns >= 250000000ull))
		return update_tx(k);
	return 0;
}

/* ---- receiving --------------------------------------------------------------------- */

/* A handshake record's messages: only KeyUpdate may come after the handshake. */
static int handshake_record(struct ktls *k, const uint8_t *p, size_t n)
{
	while (n) {
		if (n < 4)
			return -EBADMSG;
		size_t len = (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
		if (p[0] != HS_KEY_UPDATE || len != 1 || n < 5 || p[4] > 1)
			return -EBADMSG;
		static const uint8_t seq0[8];
		if (ktls__next_secret(k->hash, k->rx.secret, k->secret_len) ||
		    install(k, TLS_RX, k->rx.secret, seq0))
			return -ECONNRESET;
		if (p[4])
			atomic_store(&k->tx_due, true);	/* update_requested */
		p += 5;
		n -= 5;
	}
	return 0;
}

/* recvmsg with room for the record type; the type, or -errno. */
static ssize_t recv_typed(int fd, void *buf, size_t len, int flags, int *type)
{
	union {
		char buf[CMSG_SPACE(sizeof(unsigned char))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	ssize_t n = recvmsg(fd, &mh, flags | MSG_DONTWAIT);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	*type = REC_DATA;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE)
			*type = *CMSG_DATA(cm);
	return n;
}

/*
 * One read into buf: > 0 data bytes, 0 when a record that is not data
 * came (and was dealt with), or -errno (-EAGAIN: nothing there). A
 * control record must arrive whole: a read of fewer bytes than one can
 * hold peeks at the next record's type first and reads a control record
 * into a buffer of its own.
 */
static ssize_t read_record(struct ktls *k, uint8_t *buf, size_t len)
{
	uint8_t own[64];
	int type;
	ssize_t n;
	if (len < sizeof(own)) {
		n = recv_typed(k->fd, own, 1, MSG_PEEK, &type);
		if (n < 0)
			return n;
		if (n == 0)
			return -EPIPE;
		if (type != REC_DATA) {
			buf = own;
			len = sizeof(own);
		}
	}
	n = recv_typed(k->fd, buf, len, 0, &type);
	if (n < 0)
		return n;
	if (n == 0)
		return -EPIPE;
	switch (type) {
	case REC_DATA:
		return n;
	case REC_HANDSHAKE: {
		int r = handshake_record(k, buf, (size_t)n);
		return r ? r : 0;
	}
	case REC_ALERT:
		/* close_notify is the end of the stream; any other alert a reset. */
		return n >= 2 && buf[1] == 0 ? -EPIPE : -ECONNRESET;
	default:
		return -EBADMSG;
	}
}

int ktls__read(struct ktls *k, struct xport *x, void *buf, size_t len, int timeout_ms)
{
	uint8_t *p = buf;
	size_t got = 0;
	uint64_t deadline = xport__deadline(timeout_ms);

	while (got < len) {
		ssize_t n = read_record(k, p + got, len - got);
		if (n > 0) {
			got += (size_t)n;
			xport__note_rx(x, (size_t)n);
			deadline = xport__deadline(timeout_ms);
			continue;
		}
		if (n == 0 || n == -EINTR)
			continue;
		if (n != -EAGAIN)
			return (int)n;
		struct pollfd pfd = { .fd = k->fd, .events = POLLIN };
		int rc = poll(&pfd, 1, xport__ms_left(deadline));
		if (rc == 0)
			return -ETIMEDOUT;
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
	return 0;
}
