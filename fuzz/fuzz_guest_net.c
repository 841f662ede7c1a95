/*
 * fuzz_guest_net.c - libFuzzer over the guest's network input path and its
 * kv service, compiled for the host: guest/net/{eth,arp,ipv4,icmp,udp}.c,
 * guest/workload/{service,kvstore,kvlog,kv,netcfg}.c and the guest's
 * lib/{printf,cmdline,crc32c}.c, on the shims of fuzz/guest_host/ (virtio-net
 * and virtio-blk, heap, time, console). Each input boots workload=kv
 * (ip=10.0.0.2/24, port 7777) on a fresh in-memory disk, so the real log
 * is replayed and appended, then hands the input's frames one after the
 * other to the guest as its NIC would (net_poll -> eth_input), keeping the
 * state between frames.
 *
 * Input: byte 0: the disk's size, 2 + (byte % 64) sectors (sector 0 is
 * unused, so 1..64 records); byte 1: faults: blk write number w fails
 * (-EIO, nothing written) if bit (w % 4) is set, flush number f fails if
 * bit (4 + f % 4) is set; then frames, each a big-endian u16 length and
 * that many bytes (cut at the end of the input; the driver delivers at
 * most 1524 bytes and never an empty frame).
 *
 * Rules, besides the sanitizers (the RX buffers are exactly as long as
 * the frame, and freed once the guest has handled it):
 *  - every frame the guest sends is 60..1514 bytes, from its own MAC; the
 *    only one sent unasked is the gratuitous ARP at boot;
 *  - a frame is answered exactly when docs/kv-protocol.md, guest/README.md
 *    and the RFCs say (an ARP request for 10.0.0.2, an ICMP echo request,
 *    a UDP datagram to 7777, each passing the checks of that layer), with
 *    exactly one frame, to the requester: ARP to the request's sender
 *    hardware address, IP to the frame's source MAC and IP (and UDP port);
 *  - IP replies: a valid header checksum, no fragment, the total length
 *    matching the frame; UDP: length = IP payload, a valid (non-zero)
 *    checksum; ICMP: the echo's id, sequence and data, a valid checksum;
 *  - every kv answer is one the client's strict parser accepts
 *    (tools/kvclient/kvproto.c), carries the request's reqid (or "-"),
 *    and is the answer the protocol gives: the ERR reason in the
 *    documented order of checks, VAL/NONE and STAT's counters as a model
 *    of the acknowledged PUTs says;
 *  - OK is sent only after the PUT's record (right sequence number, key,
 *    value, CRC-32C) is written at the log's next sector and flushed;
 *    disk_full only when the log is full, io_error only after a failed
 *    write or flush;
 *  - at the end of the input, the guest's own replay of the disk gives
 *    exactly the acknowledged PUTs in order (plus at most the last,
 *    unacknowledged one whose flush failed).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/guest_host/host.h"
#include "tools/kvclient/kvproto.h"

#define CHECK(cond, ...)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "fuzz_guest_net: broken rule: " __VA_ARGS__); \
			fputc('\n', stderr);                                          \
			abort();                                                      \
		}                                                                     \
	} while (0)

#define ETH_HLEN     14
#define ETH_MIN      60   /* without FCS: what the guest pads to */
#define ETH_MAX      1514
#define RX_MAX       1524 /* the driver's RX buffer less the virtio-net header */
#define IP_HLEN      20
#define UDP_HLEN     8
#define SECTOR       512
#define MAX_RECORDS  64   /* 2 + 63 sectors, less sector 0 */
#define REQ_MAX      166  /* the longest valid request (guest/README.md) */
#define REQ_COPY     (REQ_MAX + 2) /* what the guest copies of a datagram */

const uint8_t host_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* RFC 1071, written out here so that it is not the guest's. */
static uint64_t sum16(const uint8_t *p, size_t n, uint64_t s)
{
	for (; n >= 2; p += 2, n -= 2)
		s += (uint64_t)(p[0] << 8 | p[1]);
	if (n)
		s += (uint64_t)p[0] << 8;
	return s;
}

static bool csum_ok(const uint8_t *p, size_t n, uint64_t s)
{
	s = sum16(p, n, s);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s == 0xffff;
}

static uint64_t udp_pseudo(uint32_t src, uint32_t dst, size_t ulen)
{
	return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 17 + ulen;
}

/* CRC-32C (Castagnoli), bytewise; written without branches, so that the
 * fuzzer's comparison tracing does not spend its time here. */
static uint32_t crc32c(const uint8_t *p, size_t n)
{
	static uint32_t tab[256];
	uint32_t c = 0xffffffffu;

	if (!tab[1]) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t t = i;
			for (int k = 0; k < 8; k++)
				t = (t >> 1) ^ (0x82f63b78u & (0u - (t & 1)));
			tab[i] = t;
		}
	}
	while (n--)
		c = (c >> 8) ^ tab[(c ^ *p++) & 0xff];
	return ~c;
}

/* ---- what the protocol answers (docs/kv-protocol.md, guest/README.md) ---- */

enum op { OP_ERR, OP_PUT, OP_GET, OP_TIME, OP_STAT };

struct expect_answer {
	enum op op;
	const char *why;              /* OP_ERR */
	char id[KVPROTO_REQID_MAX + 1]; /* "-" when the answer carries none */
	char key[KVPROTO_TOKEN_MAX + 1], val[KVPROTO_TOKEN_MAX + 1];
};

static bool token(const uint8_t *s, size_t n, size_t max)
{
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

static bool field_is(const uint8_t *s, size_t n, const char *w)
{
	return n == strlen(w) && memcmp(s, w, n) == 0;
}

static void copy_str(char *dst, const uint8_t *s, size_t n)
{
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* The answer to datagram d, in the order of checks guest/README.md gives.
 * The guest looks at the first REQ_COPY bytes only (a longer datagram is
 * too_long either way). */
static void expect_answer(const uint8_t *d, size_t n, struct expect_answer *e)
{
	const uint8_t *f[5];
	size_t fl[5], nf = 0, start = 0;

	memset(e, 0, sizeof(*e));
	e->op = OP_ERR;
	strcpy(e->id, "-");
	if (n > REQ_COPY)
		n = REQ_COPY;
	if (n && d[n - 1] == '\n')
		n--;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && d[i] != ' ')
			continue;
		if (nf < 5) {
			f[nf] = d + start;
			fl[nf] = i - start;
		}
		nf++;
		start = i + 1;
	}
	bool id_ok = nf >= 2 && token(f[1], fl[1], KVPROTO_REQID_MAX);
	if (id_ok)
		copy_str(e->id, f[1], fl[1]);
	size_t arity;
	if (n > REQ_MAX) {
		e->why = "too_long";
		return;
	}
	if (field_is(f[0], fl[0], "PUT"))
		e->op = OP_PUT, arity = 4;
	else if (field_is(f[0], fl[0], "GET"))
		e->op = OP_GET, arity = 3;
	else if (field_is(f[0], fl[0], "TIME"))
		e->op = OP_TIME, arity = 2;
	else if (field_is(f[0], fl[0], "STAT"))
		e->op = OP_STAT, arity = 2;
	else {
		e->why = "bad_command";
		return;
	}
	if (nf < 2 || !id_ok) {
		e->why = nf < 2 ? "bad_arity" : "bad_reqid";
		strcpy(e->id, "-");
	} else if (nf != arity) {
		e->why = "bad_arity";
	} else if (arity >= 3 && !token(f[2], fl[2], KVPROTO_TOKEN_MAX)) {
		e->why = "bad_key";
	} else if (arity == 4 && !token(f[3], fl[3], KVPROTO_TOKEN_MAX)) {
		e->why = "bad_value";
	} else {
		if (arity >= 3)
			copy_str(e->key, f[2], fl[2]);
		if (arity == 4)
			copy_str(e->val, f[3], fl[3]);
		return;
	}
	e->op = OP_ERR;
}

/* ---- per input: the frames, the disk, the model of what was acked ---- */

static const uint8_t *in;
static size_t in_len, in_pos;

static uint8_t *disk;
static uint64_t disk_sectors;
static uint8_t faults;
static unsigned n_writes, n_flushes;

struct kv {
	char key[KVPROTO_TOKEN_MAX + 1], val[KVPROTO_TOKEN_MAX + 1];
};
static struct kv acked[MAX_RECORDS]; /* the acknowledged PUTs, in order */
static size_t n_acked;
static struct kv table[MAX_RECORDS]; /* what GET must see */
static size_t n_table;
static uint64_t n_gets, last_ns;
/* A record written at sector 1 + n_acked that was not acknowledged (its
 * flush failed): replay may find it. */
static bool unacked_on_disk;
static struct kv unacked;
static size_t n_replayed;
static bool booting;
static unsigned announces;
static bool verbose; /* FUZZ_GUEST_NET_VERBOSE=1: the answers, the guest's console */

enum reply { R_NONE, R_ARP, R_ICMP, R_UDP };

static struct {
	bool active;
	uint8_t *f; /* the frame, a heap copy of exactly len bytes */
	size_t len;
	enum reply exp;
	unsigned replies;
	const uint8_t *src_mac;
	uint8_t sha[6];
	uint32_t spa, src_ip;
	uint16_t sport;
	const uint8_t *l4; /* ICMP message / UDP payload */
	size_t l4_len;
	struct expect_answer ans;
	bool wrote, flushed, fault;
	uint64_t wsector;
} rx;

static struct kv *table_find(const char *key)
{
	for (size_t i = 0; i < n_table; i++)
		if (!strcmp(table[i].key, key))
			return &table[i];
	return NULL;
}

/* What the guest must do with this frame (the checks of eth.c .. udp.c,
 * as the RFCs and guest/README.md have them). */
static void classify(void)
{
	const uint8_t *f = rx.f;
	size_t len = rx.len;

	rx.exp = R_NONE;
	if (len < ETH_HLEN || (memcmp(f, host_mac, 6) && memcmp(f, bcast, 6)))
		return;
	rx.src_mac = f + 6;
	const uint8_t *p = f + ETH_HLEN;
	size_t pl = len - ETH_HLEN;
	if (be16(f + 12) == 0x0806) {
		if (pl < 28 || be16(p) != 1 || be16(p + 2) != 0x0800 || p[4] != 6 || p[5] != 4 ||
		    be16(p + 6) != 1 || be32(p + 24) != HOST_GUEST_IP)
			return;
		memcpy(rx.sha, p + 8, 6);
		rx.spa = be32(p + 14);
		rx.exp = R_ARP;
		return;
	}
	if (be16(f + 12) != 0x0800 || pl < IP_HLEN || p[0] >> 4 != 4)
		return;
	size_t hl = (size_t)(p[0] & 15) * 4, total = be16(p + 2);
	if (hl < IP_HLEN || total < hl || total > pl || !csum_ok(p, hl, 0) ||
	    (be16(p + 6) & 0x3fff) || be32(p + 16) != HOST_GUEST_IP)
		return;
	rx.src_ip = be32(p + 12);
	const uint8_t *q = p + hl;
	size_t ql = total - hl;
	if (p[9] == 1) {
		if (ql < 8 || !csum_ok(q, ql, 0) || q[0] != 8 || q[1] != 0 ||
		    ql > ETH_MAX - ETH_HLEN - IP_HLEN)
			return;
		rx.l4 = q;
		rx.l4_len = ql;
		rx.exp = R_ICMP;
	} else if (p[9] == 17) {
		if (ql < UDP_HLEN)
			return;
		size_t ulen = be16(q + 4);
		if (ulen < UDP_HLEN || ulen > ql ||
		    (be16(q + 6) && !csum_ok(q, ulen, udp_pseudo(rx.src_ip, HOST_GUEST_IP, ulen))) ||
		    be16(q + 2) != HOST_GUEST_PORT)
			return;
		rx.sport = be16(q);
		rx.l4 = q + UDP_HLEN;
		rx.l4_len = ulen - UDP_HLEN;
		rx.exp = R_UDP;
		expect_answer(rx.l4, rx.l4_len, &rx.ans);
	}
}

int host_rx_next(const uint8_t **frame, size_t *len)
{
	CHECK(!rx.active, "a frame handed up before the previous one was done");
	if (booting) {
		CHECK(announces == 1, "%u gratuitous ARPs at boot, want 1", announces);
		booting = false;
	}
	while (in_len - in_pos >= 2) {
		size_t l = be16(in + in_pos);
		in_pos += 2;
		if (l > in_len - in_pos)
			l = in_len - in_pos;
		const uint8_t *src = in + in_pos;
		in_pos += l;
		if (l > RX_MAX)
			l = RX_MAX;
		if (l == 0)
			continue;
		memset(&rx, 0, sizeof(rx));
		if (!(rx.f = malloc(l)))
			abort();
		memcpy(rx.f, src, l);
		rx.len = l;
		rx.active = true;
		classify();
		*frame = rx.f;
		*len = l;
		return 1;
	}
	in_pos = in_len;
	return 0;
}

void host_rx_done(void)
{
	CHECK(rx.active, "host_rx_done without a frame");
	CHECK(rx.replies == (rx.exp != R_NONE), "frame of %zu bytes (expecting reply kind %d) answered %u times",
	      rx.len, (int)rx.exp, rx.replies);
	free(rx.f);
	rx.f = NULL;
	rx.active = false;
}

/* ---- the disk ---- */

uint64_t host_disk_sectors(void)
{
	return disk_sectors;
}

int host_disk_read(uint64_t sector, void *buf, uint32_t n)
{
	CHECK(sector < disk_sectors && n <= disk_sectors - sector, "read past the disk");
	memcpy(buf, disk + sector * SECTOR, (size_t)n * SECTOR);
	return 0;
}

int host_disk_write(uint64_t sector, const void *buf, uint32_t n)
{
	CHECK(rx.active && rx.exp == R_UDP && rx.ans.op == OP_PUT, "a disk write not for a valid PUT");
	CHECK(!rx.wrote, "two records written for one PUT");
	CHECK(n == 1 && sector == 1 + n_acked,
	      "record written at sector %llu (%u sectors), the log's next is %zu",
	      (unsigned long long)sector, n, 1 + n_acked);
	CHECK(sector < disk_sectors, "write past the disk");
	if (faults & (1u << (n_writes++ % 4))) {
		rx.fault = true;
		return -5; /* -EIO */
	}
	memcpy(disk + sector * SECTOR, buf, (size_t)n * SECTOR);
	rx.wrote = true;
	rx.wsector = sector;
	return 0;
}

int host_disk_flush(void)
{
	CHECK(rx.active && rx.wrote, "a flush without a record written before it");
	if (faults & (0x10u << (n_flushes++ % 4))) {
		rx.fault = true;
		return -5;
	}
	rx.flushed = true;
	return 0;
}

/* The log record at sector s is record number seq of key=val
 * (docs/kv-protocol.md, "The on-disk log"). */
static bool record_is(uint64_t s, uint64_t seq, const char *key, const char *val)
{
	const uint8_t *r = disk + s * SECTOR;
	size_t kl = strlen(key), vl = strlen(val);
	uint64_t rseq = 0;
	uint32_t magic = 0, crc = 0;
	static const uint8_t zero[SECTOR];

	memcpy(&magic, r, 4);
	memcpy(&crc, r + 4, 4);
	memcpy(&rseq, r + 8, 8);
	return magic == 0x3152564bu && crc == crc32c(r + 8, SECTOR - 8) && rseq == seq &&
	       r[16] == kl && r[17] == vl && !memcmp(r + 18, key, kl) &&
	       !memcmp(r + 18 + kl, zero, 64 - kl) && !memcmp(r + 82, val, vl) &&
	       !memcmp(r + 82 + vl, zero, 64 - vl) && !memcmp(r + 146, zero, SECTOR - 146);
}

/* ---- what the guest sends ---- */

static void check_answer(const uint8_t *a, size_t n)
{
	struct kvproto_answer ans;
	const struct expect_answer *e = &rx.ans;

	if (verbose)
		fprintf(stderr, "fuzz_guest_net: '%.*s' -> '%.*s'\n", (int)rx.l4_len,
			(const char *)rx.l4, (int)n, (const char *)a);
	CHECK(kvproto__parse_answer((const char *)a, n, &ans) == 0,
	      "the client rejects the answer '%.*s'", (int)n, (const char *)a);
	CHECK(!strcmp(ans.reqid, e->id), "answer '%.*s' carries reqid '%s', want '%s'", (int)n,
	      (const char *)a, ans.reqid, e->id);
	switch (e->op) {
	case OP_ERR:
		CHECK(ans.kind == KVPROTO_ANS_ERR && !strcmp(ans.reason, e->why),
		      "answer '%.*s', want ERR %s %s", (int)n, (const char *)a, e->id, e->why);
		break;
	case OP_PUT:
		if (ans.kind == KVPROTO_ANS_OK) {
			CHECK(rx.wrote && rx.flushed, "OK before the record was written and flushed");
			CHECK(record_is(rx.wsector, n_acked + 1, e->key, e->val),
			      "OK, but sector %llu does not hold record %zu %s=%s",
			      (unsigned long long)rx.wsector, n_acked + 1, e->key, e->val);
			CHECK(n_acked < MAX_RECORDS, "more records than the disk holds");
			strcpy(acked[n_acked].key, e->key);
			strcpy(acked[n_acked].val, e->val);
			n_acked++;
			struct kv *t = table_find(e->key);
			if (!t)
				t = &table[n_table++];
			strcpy(t->key, e->key);
			strcpy(t->val, e->val);
			unacked_on_disk = false;
			break;
		}
		CHECK(ans.kind == KVPROTO_ANS_ERR, "PUT answered '%.*s'", (int)n, (const char *)a);
		if (!strcmp(ans.reason, "disk_full")) {
			CHECK(1 + n_acked >= disk_sectors && !rx.wrote,
			      "disk_full with %zu of %llu sectors used", 1 + n_acked,
			      (unsigned long long)disk_sectors);
		} else {
			CHECK(!strcmp(ans.reason, "io_error") && rx.fault,
			      "PUT answered '%.*s' (no fault injected)", (int)n, (const char *)a);
			if (rx.wrote) {
				unacked_on_disk = true;
				strcpy(unacked.key, e->key);
				strcpy(unacked.val, e->val);
			}
		}
		break;
	case OP_GET: {
		const struct kv *t = table_find(e->key);
		n_gets++;
		if (t)
			CHECK(ans.kind == KVPROTO_ANS_VAL && !strcmp(ans.value, t->val),
			      "GET %s answered '%.*s', want VAL %s", e->key, (int)n, (const char *)a, t->val);
		else
			CHECK(ans.kind == KVPROTO_ANS_NONE, "GET %s answered '%.*s', want NONE", e->key,
			      (int)n, (const char *)a);
		break;
	}
	case OP_TIME:
		CHECK(ans.kind == KVPROTO_ANS_TIME && ans.ns >= last_ns, "TIME answered '%.*s'", (int)n,
		      (const char *)a);
		last_ns = ans.ns;
		break;
	case OP_STAT:
		CHECK(ans.kind == KVPROTO_ANS_STAT && ans.stat.entries == n_table &&
		      ans.stat.puts == n_acked && ans.stat.gets == n_gets && ans.stat.dirtied == 0 &&
		      ans.stat.ap_tsc == 0 && ans.stat.ap_iterations == 0 &&
		      ans.stat.tsc_order_errors == 0 && ans.stat.ns >= last_ns,
		      "STAT answered '%.*s', want entries=%zu puts=%zu gets=%llu", (int)n,
		      (const char *)a, n_table, n_acked, (unsigned long long)n_gets);
		last_ns = ans.stat.ns;
		break;
	}
}

static void check_ipv4(const uint8_t *f, size_t len)
{
	const uint8_t *h = f + ETH_HLEN;
	size_t total = be16(h + 2);

	CHECK(!memcmp(f, rx.src_mac, 6), "IP reply not sent to the requester's MAC");
	CHECK(h[0] == 0x45 && total >= IP_HLEN && ETH_HLEN + total <= len &&
	      len == (ETH_HLEN + total < ETH_MIN ? ETH_MIN : ETH_HLEN + total),
	      "IP header 0x%02x, total %zu in a frame of %zu", h[0], total, len);
	for (size_t i = ETH_HLEN + total; i < len; i++)
		CHECK(f[i] == 0, "padding not zero");
	CHECK(csum_ok(h, IP_HLEN, 0), "bad IPv4 header checksum");
	CHECK(!(be16(h + 6) & 0x3fff) && h[8] != 0, "IP reply fragmented or without TTL");
	CHECK(be32(h + 12) == HOST_GUEST_IP && be32(h + 16) == rx.src_ip,
	      "IP reply from %08x to %08x, want from the guest to %08x", be32(h + 12), be32(h + 16),
	      rx.src_ip);
	const uint8_t *q = h + IP_HLEN;
	size_t ql = total - IP_HLEN;
	if (rx.exp == R_ICMP) {
		CHECK(h[9] == 1 && ql == rx.l4_len && q[0] == 0 && q[1] == 0 && csum_ok(q, ql, 0) &&
		      !memcmp(q + 4, rx.l4 + 4, ql - 4),
		      "bad ICMP echo reply");
		return;
	}
	CHECK(h[9] == 17 && ql >= UDP_HLEN && be16(q + 4) == ql, "UDP length %u in %zu bytes of IP payload",
	      ql >= UDP_HLEN ? be16(q + 4) : 0, ql);
	CHECK(be16(q + 6) != 0 && csum_ok(q, ql, udp_pseudo(HOST_GUEST_IP, rx.src_ip, ql)),
	      "bad UDP checksum");
	CHECK(be16(q) == HOST_GUEST_PORT && be16(q + 2) == rx.sport, "UDP reply from port %u to %u, want %u",
	      be16(q), be16(q + 2), rx.sport);
	check_answer(q + UDP_HLEN, ql - UDP_HLEN);
}

void host_tx(const uint8_t *f, size_t len)
{
	CHECK(len >= ETH_MIN && len <= ETH_MAX, "a frame of %zu bytes sent", len);
	CHECK(!memcmp(f + 6, host_mac, 6), "a frame not from the guest's MAC");
	const uint8_t *a = f + ETH_HLEN;
	if (!rx.active) {
		/* Only the boot announces: who-has 10.0.0.2 from 10.0.0.2. */
		static const uint8_t arp_hdr[8] = { 0, 1, 8, 0, 6, 4, 0, 1 };
		static const uint8_t zero[ETH_MIN];
		CHECK(booting && !memcmp(f, bcast, 6) && be16(f + 12) == 0x0806 && len == ETH_MIN &&
		      !memcmp(a, arp_hdr, 8) && !memcmp(a + 8, host_mac, 6) &&
		      be32(a + 14) == HOST_GUEST_IP && !memcmp(a + 18, zero, 6) &&
		      be32(a + 24) == HOST_GUEST_IP && !memcmp(a + 28, zero, ETH_MIN - ETH_HLEN - 28),
		      "a frame sent unasked that is not the gratuitous ARP at boot");
		announces++;
		return;
	}
	CHECK(rx.exp != R_NONE, "frame of %zu bytes answered, but it asks for nothing", rx.len);
	CHECK(++rx.replies == 1, "one frame answered twice");
	if (rx.exp == R_ARP) {
		static const uint8_t arp_hdr[8] = { 0, 1, 8, 0, 6, 4, 0, 2 };
		static const uint8_t zero[ETH_MIN];
		CHECK(be16(f + 12) == 0x0806 && len == ETH_MIN, "ARP reply of type %04x, %zu bytes",
		      be16(f + 12), len);
		CHECK(!memcmp(f, rx.sha, 6) && !memcmp(a + 18, rx.sha, 6),
		      "ARP reply not sent to the requester's MAC");
		CHECK(!memcmp(a, arp_hdr, 8) && !memcmp(a + 8, host_mac, 6) &&
		      be32(a + 14) == HOST_GUEST_IP && be32(a + 24) == rx.spa &&
		      !memcmp(a + 28, zero, ETH_MIN - ETH_HLEN - 28),
		      "bad ARP reply");
		return;
	}
	CHECK(be16(f + 12) == 0x0800 && len >= ETH_HLEN + IP_HLEN, "reply of type %04x, %zu bytes, want IPv4",
	      be16(f + 12), len);
	check_ipv4(f, len);
}

/* ---- the replay at the end ---- */

static void replayed(const char *key, size_t klen, const char *val, size_t vlen)
{
	const struct kv *want = n_replayed < n_acked ? &acked[n_replayed]
			      : n_replayed == n_acked && unacked_on_disk ? &unacked : NULL;

	CHECK(want != NULL, "replay finds record %zu, but %zu were acknowledged", n_replayed + 1, n_acked);
	CHECK(klen == strlen(want->key) && !memcmp(key, want->key, klen) && vlen == strlen(want->val) &&
	      !memcmp(val, want->val, vlen),
	      "replayed record %zu is not %s=%s", n_replayed + 1, want->key, want->val);
	n_replayed++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	if (n < 2)
		return 0;
	verbose = getenv("FUZZ_GUEST_NET_VERBOSE") != NULL;
	in = data;
	in_len = n;
	in_pos = 2;
	disk_sectors = 2 + data[0] % 64;
	faults = data[1];
	if (!(disk = calloc(disk_sectors, SECTOR)))
		abort();
	n_writes = n_flushes = 0;
	n_acked = n_table = 0;
	n_gets = last_ns = 0;
	unacked_on_disk = false;
	memset(&rx, 0, sizeof(rx));
	booting = true;
	announces = 0;

	host_kv_run();

	CHECK(!booting || announces == 1, "%u gratuitous ARPs at boot, want 1", announces);
	CHECK(in_pos == in_len && !rx.active, "the guest idled with frames left");
	n_replayed = 0;
	long r = host_kv_replay(replayed);
	CHECK(r >= 0 && (size_t)r == n_replayed && n_replayed == n_acked + unacked_on_disk,
	      "replay gives %ld records, %zu acknowledged", r, n_acked);
	free(disk);
	disk = NULL;
	return 0;
}
