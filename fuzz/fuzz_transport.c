/*
 * fuzz_transport.c - libFuzzer over the transport's receive path
 * (transport/transport.c, tcp.c): what a peer writes into a connection.
 *
 * Input: byte 0 picks the mode.
 *   even: the rest is written raw into one end of a socketpair: garbage,
 *         broken headers, lying lengths, truncations;
 *   odd:  the rest is records (u8 type, u8 flags, u8 epoch, u16 length,
 *         payload, u8 damage) that the harness frames as real messages,
 *         with correct checksums unless damage says to flip a byte of the
 *         header or payload: the checks past the checksums get exercised.
 * The other end receives until an error or the end. Rules besides the
 * sanitizers: every message handed over is exactly one the harness framed
 * undamaged, in order; after the first error nothing more is handed over.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/transport.h"

#define MAX_MSGS 64

struct framed {
	uint16_t type;
	uint32_t flags;
	uint64_t epoch;
	const uint8_t *payload;
	size_t len;
	bool damaged;
};

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	static uint8_t wire[1 << 20];
	struct framed want[MAX_MSGS];
	size_t nwant = 0, wlen = 0;
	int sv[2];

	if (!n || n > sizeof(wire) / 2)
		return 0;
	if (in[0] % 2 == 0) {
		memcpy(wire, in + 1, n - 1);
		wlen = n - 1;
	} else {
		size_t i = 1;
		while (i + 5 <= n && nwant < MAX_MSGS) {
			struct framed f = { .type = in[i], .flags = in[i + 1], .epoch = in[i + 2] };
			size_t len = (size_t)in[i + 3] | (size_t)in[i + 4] << 8;
			i += 5;
			if (len > n - i)
				len = n - i;
			f.payload = in + i;
			f.len = len;
			i += len;
			uint8_t damage = i < n ? in[i++] : 0;
			uint8_t hdr[XPORT_HEADER_SIZE];
			xport__encode_header(hdr, f.type, f.flags, f.epoch, (uint32_t)f.len, crc32c(0, f.payload, f.len));
			memcpy(wire + wlen, hdr, sizeof(hdr));
			memcpy(wire + wlen + sizeof(hdr), f.payload, f.len);
			if (damage & 0x80) {
				size_t at = (damage & 0x7f) % (sizeof(hdr) + (f.len ? f.len : 1));
				if (at < sizeof(hdr) + f.len) {
					wire[wlen + at] ^= 0x01;
					f.damaged = true;
				}
			}
			wlen += sizeof(hdr) + f.len;
			want[nwant++] = f;
		}
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 0;
	struct xport *x;
	if (xport__from_fd(sv[0], "fuzz", &x)) {
		close(sv[1]);
		return 0;
	}
	xport__set_max_payload(x, 1 << 16);
	/* All of it fits the socket buffer only if small; write from here in
	 * pieces, receiving in between. */
	size_t off = 0, got = 0;
	struct xport_msg m;
	char err[512];
	xport_msg__init(&m);
	int rc = 0;
	bool shut = false;
	for (;;) {
		if (off < wlen) {
			ssize_t w = send(sv[1], wire + off, wlen - off, MSG_DONTWAIT);
			if (w > 0)
				off += (size_t)w;
		}
		if (off == wlen && !shut) {
			shutdown(sv[1], SHUT_WR);	/* the peer's end: EOF after the bytes */
			shut = true;
		}
		rc = xport__recv(x, &m, off < wlen ? 0 : 100, err, sizeof(err));
		if (rc == -ETIMEDOUT && off < wlen)
			continue;
		if (rc)
			break;
		/* Handed over: must be the next framed message, undamaged. */
		if (in[0] % 2 == 1) {
			if (got >= nwant || want[got].damaged || want[got].type != m.type ||
			    want[got].flags != m.flags || want[got].epoch != m.epoch ||
			    want[got].len != m.payload.len ||
			    (m.payload.len && memcmp(want[got].payload, m.payload.data, m.payload.len)))
				abort();
		}
		got++;
	}
	/* After an error, the same error and nothing more. */
	if (xport__recv(x, &m, 0, err, sizeof(err)) != rc)
		abort();
	xport_msg__free(&m);
	xport__close(x);
	close(sv[1]);
	return 0;
}
