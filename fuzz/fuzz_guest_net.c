/*
 * fuzz_guest_net.c - libFuzzer over the guest's network input path and its
 * services, compiled for the host: lwIP 2.1.3's core (the guest's sources
 * and lwipopts.h, fuzz/CMakeLists.txt), guest/net/{net,netif_virtio}.c,
 * guest/workload/{service,kvstore,kvlog,kvdb,kv,netcfg,resp_proto,
 * resp_server}.c and the guest's lib/{printf,cmdline,crc32c}.c, on the
 * shims of fuzz/guest_host/ (virtio-net and virtio-blk, heap, time,
 * console). Each input boots workload=kv (ip=10.0.0.2/24, kv on UDP 7777,
 * RESP on TCP 6379) on a fresh in-memory disk with every guest variable
 * reset (guest_host/guest_state.h: lwip_init() alone leaves lwIP's lists,
 * ARP table and timeouts from the previous input), so the real log is
 * replayed and appended; then hands the input's frames one after the other
 * to the guest as its NIC would (net_poll -> lwIP's ethernet_input),
 * keeping the state between frames; at the end, replays the disk with the
 * guest's own code, has the guest append one record (the probe) and
 * replays it again.
 *
 * Input: byte 0: the disk's size, 2 + (byte % 64) sectors (sector 0 is
 * unused; the log is sectors 1 on, its last kept for a FLUSHALL record;
 * how many records the rest holds depends on their sizes: a batch starts
 * at a sector, a record takes 32 bytes + key + value rounded up to 8, so
 * a kv PUT, a batch of one, takes a sector, and a RESP MSET or DEL packs
 * up to 16 records a sector); bit 6: the link's hosts do not answer the
 * guest's ARP requests; bit 7: sealed, the harness sets every frame's IPv4
 * header checksum and its ICMP, TCP and (when not 0) UDP checksum before
 * handing it over, so that mutations reach the services. Byte 1: faults:
 * blk write number w (from 0, over the whole input, the probe's too)
 * fails (-EIO) if bit (w % 4) is set, torn: its first (w / 4) % n of its
 * n sectors reach the disk (none for the first four writes, nor for a
 * write of one sector); flush number f fails (-EIO) if bit (4 + f % 4) is
 * set, counting only the flushes after a write: the one that ends each
 * replay never fails. Then records, each a
 * big-endian u16 L: below 0xf000 a frame of L bytes (cut at the end of the
 * input; the driver delivers at most 1524 bytes and never an empty
 * frame); from 0xf000, time passes: L - 0xefff steps of 250 ms (lwIP's
 * fastest timer), each followed by a poll, so its ARP and TCP timers run
 * (at most 20 minutes per input).
 *
 * The link. The harness plays the hosts the frames come from: a host is
 * the source MAC of an IPv4 frame from its address. When the guest asks
 * for an address with ARP (lwIP resolves a peer before it sends to it,
 * queueing what it sends meanwhile: ARP_QUEUEING), the host answers, as
 * the next frame the guest gets, unless byte 0 bit 6 says otherwise. The
 * harness keeps what lwIP's ARP table must hold: for each address, the
 * sender hardware address of the latest well-formed ARP packet it got from
 * that address (lwIP updates an entry on every such packet, creates one on
 * a packet for it, and sends only over an entry so filled).
 *
 * Rules, besides the sanitizers and lwIP's own assertions (they stop the
 * guest, which aborts here). The RX buffers are exactly as long as the
 * frame (lwIP copies each into a pbuf of its pools: a read past the frame
 * there is not seen by ASan).
 *  - every frame the guest sends is from its MAC, at most 1514 bytes and
 *    exactly as long as its content (ARP: 42; IPv4: 14 + total length; lwIP
 *    does not pad, nor does the driver); the only one sent unasked at boot
 *    is one gratuitous ARP;
 *  - ARP: exactly one reply to each well-formed request for 10.0.0.2
 *    (hardware Ethernet, protocol IPv4, 6/4), to its sender hardware
 *    address; requests only for a host the guest owes a reply or talks TCP
 *    to, from the guest's address, broadcast or to the MAC the table has;
 *  - every IPv4 frame: to the MAC lwIP's ARP table must have for its
 *    destination, from 10.0.0.2, a valid header checksum, not fragmented,
 *    a TTL, to a unicast address on the link (10.0.0.0/24 or link-local:
 *    there is no gateway);
 *  - what is answered, as lwIP answers it (after its checks: the IPv4
 *    header and checksum, to 10.0.0.2, a broadcast or a multicast address,
 *    from a unicast one, no fragment; the checksum of the layer above): an
 *    ICMP echo request to 10.0.0.2 (any code) with the request's IP header
 *    (options, TOS, ID, flags) and data, TTL 255, valid checksums; a UDP
 *    datagram to port 7777 (lwIP ignores the UDP length field: the
 *    datagram is the IP payload; a checksum, when not 0, is checked) with
 *    the kv answer to its source port; a datagram to another port of
 *    10.0.0.2 with ICMP port unreachable, another protocol with protocol
 *    unreachable, both quoting the first 28 bytes (or fewer) of the packet;
 *    a TCP segment without RST to 10.0.0.2 at a port other than 6379 with
 *    RST|ACK, seq = its ack field, ack = its seq + data + SYN/FIN (lwIP's
 *    form for a closed port); anything else is not answered. Each is
 *    answered at most once, and exactly once when its sender is on the
 *    link and the hosts answer ARP: at once, or when the ARP answer comes
 *    (then in the order asked; without ARP answers lwIP may drop queued
 *    replies, oldest first);
 *  - TCP port 6379 (RESP, resp_server.c over lwIP's TCP) is not modelled:
 *    every segment from it is well formed (header length, options,
 *    checksum) and goes to a host and port that sent to it; what RESP
 *    answers is not checked, but its writes to the log (SET, MSET, INCR...:
 *    PUT records; DEL; FLUSHALL, FLUSHDB) follow the log's rules below,
 *    and what they acknowledge goes into the model the kv answers are
 *    checked against, as the kv PUTs' records do;
 *  - every kv answer is one the client's strict parser accepts
 *    (tools/kvclient/kvproto.c), carries the request's reqid (or "-"),
 *    and is the answer the protocol gives: the ERR reason in the
 *    documented order of checks; GET: VAL, or unrepresentable for a value
 *    VAL cannot carry (set over RESP: empty, over 64 bytes, other bytes),
 *    or NONE, as the acknowledged records say (PUT sets, DEL removes,
 *    FLUSHALL empties); STAT's entries and puts (acknowledged PUT
 *    records) so too, its gets exactly while RESP had no data, else at
 *    least; TIME/STAT's TSC from while the request was handled;
 *  - the log (kvlog.c's header comment): the disk is read only by a
 *    replay (the guest's at boot, done before it sends its first frame,
 *    and the harness's two at the end), which reads, writes nothing, and
 *    ends with exactly one flush; nothing is written at boot. Every other
 *    write is one batch of whole KVR2 records (magic, CRC-32C of bytes 16
 *    on, the batch's tag, zero fields, lengths its op allows, the records
 *    after it in the batch, zero padding; at most 128 records, 127
 *    sectors; the tag, the same in each record, is the CRC-32C of the
 *    records' CRCs in order) numbered on from the last acknowledged
 *    record, zeros to its sector's end, and exactly one zeroed sector
 *    after it where the disk has one; at the log's next sector, a batch
 *    other than a lone FLUSHALL record leaving the log's last sector
 *    free; PUT records, or DEL records of keys the table holds (each
 *    once), or a lone FLUSHALL. Once a FLUSHALL record is acknowledged at
 *    the log's end (or a replay ended at one past sector 1), the log
 *    starts over, and nothing else is written until it has: two writes,
 *    each flushed, sector 1 alone (a lone FLUSHALL record numbered on, no
 *    zeroed sector after it), then, once that is flushed and where the
 *    disk has a sector 2, at once sector 2 alone, zeroed; a failure of
 *    either leaves it due (from sector 1, with the same number). After a
 *    FLUSHALL acknowledged while serving, it is tried before the guest is
 *    back for a frame or its timers. A write is flushed before the next;
 *    a record counts as acknowledged when its flush succeeds;
 *  - a kv PUT writes one batch of one PUT record, its key and value (after
 *    the restart of the log a FLUSHALL left due), and nothing else does
 *    outside RESP; OK is sent only after its flush; disk_full only when
 *    its sector would be the log's last (no restart due) or the table
 *    could be full (the model's entries at its capacity, or a block
 *    kvstore.c would cut for every acknowledged PUT since it was last
 *    emptied past its data: never on disks of this size); io_error only
 *    after a failed write or flush;
 *  - at the end of the input, the guest's own replay of the disk gives
 *    exactly the acknowledged records since the log last started, in
 *    order, plus possibly the whole batch (never a part of it, nor
 *    records of two) of the last write that reached the disk, whole or
 *    torn, after the last acknowledged one, unacknowledged (never a record
 *    written before an acknowledged one: it would override it after a
 *    reboot); or, if a restart's sector 1 reached the disk and the
 *    restart did not complete (its flush, or sector 2's write or flush,
 *    failed), its FLUSHALL record alone. What it gave is the log then (its
 *    flush made it durable): the probe, one PUT appended as the guest's
 *    next write (kvlog_append), follows the log's rules from there, the
 *    restart first if one is due, and answers OK (NULL) only once its
 *    record is durable, disk_full only when the log's next sector is its
 *    last, io_error only after a failed write or flush; then a second
 *    replay follows the same rules.
 *
 * The guest's netif (guest/net/netif_virtio.c) drops frames for another
 * unicast MAC (lwIP's ethernet_input() has no destination filter) and ARP
 * frames shorter than an ARP packet (lwIP 2.1.3's etharp_input() reads the
 * 28-byte header without a length check, lwip-tcpip/lwip#108: it would
 * answer from the previous frame's bytes): such frames get no answer.
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
#define ETH_MAX      1514
#define ARP_LEN      28
#define RX_MAX       1524 /* the driver's RX buffer less the virtio-net header */
#define IP_HLEN      20
#define UDP_HLEN     8
#define TCP_HLEN     20
#define UDP_MAX      1472 /* net.c hands up no longer datagram */
#define SECTOR       512
#define MAX_SECTORS  65   /* 2 + 63 */
/* The log (guest/workload/kvlog.h; docs/kv-protocol.md, "The on-disk log"). */
#define LOG_MAGIC    0x3252564bu /* "KVR2" */
#define KV_MAX_LEN   512  /* of a key or value in the store (kvstore.h) */
#define REC_HEADER   32   /* KVLOG_REC_HEADER */
#define BATCH_MAX    128
#define BATCH_BYTES  (127u * SECTOR)
/* Where a record's fields are (kvlog.c's header comment). */
#define R_CRC        4    /* CRC-32C of the record's bytes from R_SEQ on */
#define R_TAG        8    /* the batch's tag */
#define R_ZERO32     12
#define R_SEQ        16
#define R_KLEN       24
#define R_VLEN       26
#define R_OP         28
#define R_LEFT       29   /* records after this one in the batch */
#define R_ZERO16     30
/* The most records a log holds since it started: 16 of the shortest (32
 * bytes, an empty key and value) to each of its at most 64 sectors. */
#define LOG_RECORDS_MAX ((MAX_SECTORS - 1) * (SECTOR / REC_HEADER))
#define REQ_MAX      166  /* the longest valid request (guest/README.md) */
#define REQ_COPY     (REQ_MAX + 2) /* what the guest copies of a datagram */
#define STEP_MS      250
#define MAX_STEPS    (20 * 60 * 1000 / STEP_MS)
#define TOKEN_TIME   0xf000u
#define F_NO_ARP     0x40
#define F_SEALED     0x80

/* The harness's own loops (checksums, CRCs, record checks) are not worth
 * the fuzzer's coverage tracing, which would cost most of the time. */
#define NOCOV __attribute__((no_sanitize("coverage")))

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

const uint8_t host_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t zero6[6];

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

/* RFC 1071, written out here so that it is not lwIP's. */
NOCOV static uint64_t sum16(const uint8_t *p, size_t n, uint64_t s)
{
	for (; n >= 2; p += 2, n -= 2)
		s += (uint64_t)(p[0] << 8 | p[1]);
	if (n)
		s += (uint64_t)p[0] << 8;
	return s;
}

NOCOV static uint16_t fold(uint64_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static bool csum_ok(const uint8_t *p, size_t n, uint64_t s)
{
	return fold(sum16(p, n, s)) == 0xffff;
}

/* The pseudo header's sum; lwIP's length is the IP payload's. */
static uint64_t pseudo(uint32_t src, uint32_t dst, uint8_t proto, size_t len)
{
	return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
}

/* CRC-32C (Castagnoli), bytewise; written without branches, so that the
 * fuzzer's comparison tracing does not spend its time here. */
NOCOV static uint32_t crc32c(const uint8_t *p, size_t n)
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

/* ---- addresses as lwIP sees them (the netif 10.0.0.2/24, no gateway) ---- */

#define NETMASK (0xffffffffu << (32 - HOST_GUEST_PREFIX))

static bool ip_multicast(uint32_t a)
{
	return a >> 28 == 0xe;
}

/* ip4_addr_isbroadcast(): 0.0.0.0 and 255.255.255.255 too. */
static bool ip_broadcast(uint32_t a)
{
	return a == 0 || a == 0xffffffffu ||
	       (a != HOST_GUEST_IP && (a & NETMASK) == (HOST_GUEST_IP & NETMASK) &&
		(a & ~NETMASK) == ~NETMASK);
}

/* Where etharp_output() sends without a gateway. */
static bool ip_on_link(uint32_t a)
{
	return (a & NETMASK) == (HOST_GUEST_IP & NETMASK) || (a >> 16) == 0xa9fe;
}

/* ---- what the kv protocol answers (docs/kv-protocol.md, guest/README.md) ---- */

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

/* ---- growable arrays, emptied per input ---- */

#define GROW(arr, n, cap)                                                              \
	do {                                                                           \
		if ((n) == (cap)) {                                                    \
			size_t c_ = (cap) ? 2 * (cap) : 16;                             \
			void *p_ = realloc((arr), c_ * sizeof(*(arr)));                 \
			if (!p_)                                                       \
				abort();                                               \
			(arr) = p_;                                                    \
			(cap) = c_;                                                    \
		}                                                                      \
	} while (0)

struct ipmac {
	uint32_t ip;
	uint8_t mac[6];
};

struct ipmap {
	struct ipmac *v;
	size_t n, cap;
};

NOCOV static const uint8_t *map_get(const struct ipmap *m, uint32_t ip)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].ip == ip)
			return m->v[i].mac;
	return NULL;
}

static void map_set(struct ipmap *m, uint32_t ip, const uint8_t mac[6])
{
	for (size_t i = 0; i < m->n; i++) {
		if (m->v[i].ip == ip) {
			memcpy(m->v[i].mac, mac, 6);
			return;
		}
	}
	GROW(m->v, m->n, m->cap);
	m->v[m->n].ip = ip;
	memcpy(m->v[m->n].mac, mac, 6);
	m->n++;
}

/* lwIP's ARP table as it must be; the link's hosts. */
static struct ipmap announced, hosts;

struct peer {
	uint32_t ip;
	uint16_t port;
};
static struct peer *tcp_peers; /* who sent lwIP a segment for port 6379 */
static size_t n_tcp_peers, cap_tcp_peers;

static void tcp_peer_add(uint32_t ip, uint16_t port)
{
	for (size_t i = 0; i < n_tcp_peers; i++)
		if (tcp_peers[i].ip == ip && tcp_peers[i].port == port)
			return;
	GROW(tcp_peers, n_tcp_peers, cap_tcp_peers);
	tcp_peers[n_tcp_peers++] = (struct peer){ ip, port };
}

NOCOV static bool tcp_peer(uint32_t ip, uint16_t port)
{
	for (size_t i = 0; i < n_tcp_peers; i++)
		if (tcp_peers[i].ip == ip && tcp_peers[i].port == port)
			return true;
	return false;
}

/* ---- per input: the frames, the disk, the model of what was acked ---- */

static const uint8_t *in;
static size_t in_len, in_pos;
static uint8_t flags;
static unsigned steps_left, steps_used;

static uint8_t *disk;
static uint64_t disk_sectors;
static uint8_t faults;
static unsigned n_writes, n_flushes;

/* A log record: op HOST_KV_PUT, _DEL or _FLUSHALL, key and value. */
struct rec {
	uint8_t op;
	uint16_t kl, vl;
	uint8_t key[KV_MAX_LEN], val[KV_MAX_LEN];
};
/* The log as acknowledged: the records a replay must give, in order,
 * since the log last started (at sector 1); where its next batch goes
 * and the number of its next record; where its last batch is (0: none)
 * and whether that is a FLUSHALL record. */
static struct rec committed[LOG_RECORDS_MAX];
static size_t n_committed;
static uint64_t log_next, log_seq, last_sector;
static bool last_flushall;
/* A FLUSHALL record is acknowledged at the log's end (or a replay ended
 * at one past sector 1): the next write must start the log over at
 * sector 1; untried: not attempted yet (kvlog_flushall tries at once). */
static bool restart_due, restart_untried;
/* The restart's progress: sector 1 written (W1), flushed (then the next
 * write must be the zeroed sector 2, when the disk has one), that written
 * (W2); any failure sets it back to none, the restart still due. */
static enum { RST_NONE, RST_W1, RST_W1_FLUSHED, RST_W2 } rst;
/* A restart's sector 1 reached the disk and the restart did not complete:
 * sector 1 holds the new start, and a replay gives that FLUSHALL record
 * alone. */
static bool restart_on_disk;
/* The last write at log_next that reached the disk (whole, or torn: its
 * first sectors) after the last acknowledged one, not acknowledged: a
 * replay may give its batch, whole; its sectors of records. */
static struct rec tail[BATCH_MAX];
static size_t n_tail;
static uint32_t tail_sectors;
/* The replays (kvlog_replay): at boot, and the harness's at the end of
 * the input. A replay reads, then flushes once and is done; it writes
 * nothing and no frame goes out meanwhile. */
static bool replaying;
static unsigned replay_reads, replays_done;
/* The input is done: the harness's replays, and the probe between them. */
static bool after_input;
/* The probe: one PUT appended after the first replay at the end. */
#define PROBE_KEY "probe"
#define PROBE_VAL "after-replay"
static bool probing, probe_written, probe_committed;
static struct rec table[LOG_RECORDS_MAX]; /* what GET must see */
static size_t n_table;
static uint64_t model_gets, model_puts; /* acknowledged PUT records, as STAT's puts */
/* The kv table's size (host_kv_table), and a bound of the data it gave
 * out since it was last emptied: a block for every PUT (kvstore.c). */
static uint64_t kvs_entries, kvs_data, kvs_data_bound;
static bool resp_touched; /* RESP had data: its GETs count in STAT's gets too */
static struct {
	bool active;
	enum { IN_BATCH, IN_RESTART1, IN_RESTART2 } kind; /* a batch; a restart's W1 or W2 */
	uint64_t sector;
	uint32_t sectors; /* of records */
	size_t n;
	struct rec r[BATCH_MAX];
} inflight; /* written, not yet flushed */
static size_t n_replayed;
static bool booting; /* until the guest polls its NIC first */
static unsigned announces;
static bool verbose; /* FUZZ_GUEST_NET_VERBOSE=1: frames, answers, the guest's console */

/* Frames the link's hosts send the guest next (ARP answers). */
struct hframe {
	uint8_t f[ETH_HLEN + ARP_LEN];
	uint32_t ip;
};
static struct hframe *hq;
static size_t hq_head, hq_n, hq_cap;

/* ---- replies the guest owes ---- */

enum xkind { X_ECHO, X_UNREACH, X_UDP, X_RST };

struct expect {
	enum xkind kind;
	uint32_t dst;
	bool must;  /* must go out: the sender is on the link and ARP is answered */
	bool done;  /* sent (or dropped by lwIP, where that may be) */
	bool open;  /* X_UDP: its request is still being handled */
	uint8_t *pkt; /* X_ECHO: the request's IP packet; X_UNREACH: the quote */
	size_t pkt_len;
	uint8_t code;
	uint16_t sport, dport; /* ours, theirs */
	uint32_t seq, ack;
	/* X_UDP */
	struct expect_answer ans;
	bool exact;
	char text[256]; /* the answer, when exact */
	size_t text_len;
	uint64_t tsc_lo, tsc_hi, entries, puts, gets;
	bool gets_exact;
	bool sent;
	char sent_text[256];
	size_t sent_len;
};
static struct expect *xs;
static size_t n_xs, cap_xs, xs_first; /* before xs_first: all done */

static struct {
	bool active;
	uint8_t *f; /* the frame, a heap copy of exactly len bytes */
	size_t len;
	bool arp_request;      /* a request for us: one ARP reply */
	uint8_t sha[6];
	uint32_t spa;
	unsigned arp_replies;
	bool resp;             /* a segment for the RESP port */
	struct expect *kv;     /* open: this frame's kv request (index below) */
	size_t kv_index;
	bool is_kv;
	bool put_written;      /* this frame's PUT wrote its record (or tried to) */
	bool committed;        /* ... and it is durable */
	bool fault;            /* a write or flush failed */
	uint64_t tsc_start;
} rx;

NOCOV static void hexdump_frame(const char *what, const uint8_t *f, size_t len)
{
	fprintf(stderr, "fuzz_guest_net: %s %zu bytes:", what, len);
	for (size_t i = 0; i < len && i < 64; i++)
		fprintf(stderr, " %02x", f[i]);
	fprintf(stderr, len > 64 ? " ...\n" : "\n");
}

static struct expect *expect_new(enum xkind kind, uint32_t dst)
{
	GROW(xs, n_xs, cap_xs);
	struct expect *x = &xs[n_xs++];
	memset(x, 0, sizeof(*x));
	x->kind = kind;
	x->dst = dst;
	x->must = !(flags & F_NO_ARP) && ip_on_link(dst);
	map_set(&hosts, dst, rx.f + 6);
	return x;
}

NOCOV static struct rec *table_find(const void *key, size_t kl)
{
	for (size_t i = 0; i < n_table; i++)
		if (table[i].kl == kl && !memcmp(table[i].key, key, kl))
			return &table[i];
	return NULL;
}

/* After a FLUSHALL record is durable at the log's end, kvlog_flushall
 * starts the log over before it returns; a restart whose sector 1 is
 * flushed zeroes sector 2 at once. */
static void check_restart_tried(void)
{
	CHECK(!restart_untried, "a FLUSHALL record durable at the log's end (sector %llu), and no "
	      "restart of the log tried", (unsigned long long)log_next - 1);
	CHECK(rst == RST_NONE, "a restart of the log left half done (%s)",
	      rst == RST_W1_FLUSHED ? "sector 1 flushed, sector 2 not zeroed" : "a write not flushed");
}

/* ---- what lwIP must do with a frame (ethernet.c, etharp.c, ip4.c, icmp.c,
 * udp.c, tcp_in.c of 2.1.3 with lwipopts.h) ---- */

static void classify_udp(const uint8_t *ip, size_t total, const uint8_t *q, size_t ql, uint32_t src,
			 uint32_t dst)
{
	if (ql < UDP_HLEN)
		return;
	uint16_t dport = be16(q + 2);
	bool pcb = dport == HOST_GUEST_PORT;
	if (!pcb && dst != HOST_GUEST_IP)
		return;
	if (be16(q + 6) && !csum_ok(q, ql, pseudo(src, dst, 17, ql)))
		return;
	if (!pcb) {
		struct expect *x = expect_new(X_UNREACH, src);
		x->code = 3;
		x->pkt_len = total < IP_HLEN + 8 ? total : IP_HLEN + 8;
		if (!(x->pkt = malloc(x->pkt_len)))
			abort();
		memcpy(x->pkt, ip, x->pkt_len);
		return;
	}
	if (ql - UDP_HLEN > UDP_MAX)
		return;
	struct expect *x = expect_new(X_UDP, src);
	x->open = true;
	x->sport = HOST_GUEST_PORT;
	x->dport = be16(q);
	expect_answer(q + UDP_HLEN, ql - UDP_HLEN, &x->ans);
	rx.is_kv = true;
	rx.kv_index = (size_t)(x - xs);
	if (verbose)
		fprintf(stderr, "fuzz_guest_net: request '%.*s'\n", (int)(ql - UDP_HLEN),
			(const char *)q + UDP_HLEN);
}

static void classify_tcp(const uint8_t *q, size_t ql, uint32_t src, uint32_t dst)
{
	if (ql < TCP_HLEN || ip_broadcast(dst) || ip_multicast(dst) ||
	    !csum_ok(q, ql, pseudo(src, dst, 6, ql)))
		return;
	size_t hl = (size_t)(q[12] >> 4) * 4;
	if (hl < TCP_HLEN || hl > ql)
		return;
	uint8_t fl = q[13];
	uint16_t sport = be16(q), dport = be16(q + 2);
	if (dport == HOST_GUEST_RESP_PORT) {
		tcp_peer_add(src, sport);
		map_set(&hosts, src, rx.f + 6);
		rx.resp = true;
		if (ql > hl)
			resp_touched = true;
		return;
	}
	if (fl & TCP_RST)
		return;
	struct expect *x = expect_new(X_RST, src);
	x->sport = dport;
	x->dport = sport;
	x->seq = be32(q + 8);
	x->ack = be32(q + 4) + (uint32_t)(ql - hl) + ((fl & (TCP_SYN | TCP_FIN)) ? 1 : 0);
}

static void classify_ipv4(const uint8_t *p, size_t l)
{
	/* Shorter than a header: lwIP looks at bytes past it (stale ones) but
	 * drops it whatever they are. */
	if (l < IP_HLEN || p[0] >> 4 != 4)
		return;
	size_t hl = (size_t)(p[0] & 15) * 4, total = be16(p + 2);
	size_t trimmed = total < l ? total : l;
	if (hl < IP_HLEN || hl > trimmed || total > l || !csum_ok(p, hl, 0))
		return;
	uint32_t src = be32(p + 12), dst = be32(p + 16);
	bool mc = ip_multicast(dst), bc = ip_broadcast(dst);
	if (!mc && !bc && dst != HOST_GUEST_IP)
		return;
	if (ip_broadcast(src) || ip_multicast(src) || (be16(p + 6) & 0x3fff))
		return;
	const uint8_t *q = p + hl;
	size_t ql = total - hl;
	struct expect *x;
	switch (p[9]) {
	case 17:
		classify_udp(p, total, q, ql, src, dst);
		return;
	case 6:
		classify_tcp(q, ql, src, dst);
		return;
	case 1:
		if (ql < 4 || q[0] != 8 || mc || bc || ql < 8 || !csum_ok(q, ql, 0) ||
		    ETH_HLEN + total > ETH_MAX)
			return;
		x = expect_new(X_ECHO, src);
		x->pkt_len = total;
		break;
	default:
		if (mc || bc)
			return;
		x = expect_new(X_UNREACH, src);
		x->code = 2;
		x->pkt_len = total < IP_HLEN + 8 ? total : IP_HLEN + 8;
		break;
	}
	if (!(x->pkt = malloc(x->pkt_len)))
		abort();
	memcpy(x->pkt, p, x->pkt_len);
}

static void classify(void)
{
	const uint8_t *f = rx.f;
	size_t len = rx.len;

	if (len <= ETH_HLEN)
		return;
	/* The netif's filter: another host's unicast MAC gets nothing. */
	if (!(f[0] & 1) && memcmp(f, vnet_mac(), 6))
		return;
	if (be16(f + 12) == 0x0806) {
		const uint8_t *a = f + ETH_HLEN;
		if (len < ETH_HLEN + ARP_LEN)
			return; /* dropped by the netif: no answer */
		if (be16(a) != 1 || be16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4)
			return;
		uint32_t spa = be32(a + 14);
		if (!ip_broadcast(spa) && !ip_multicast(spa))
			map_set(&announced, spa, a + 8);
		if (be16(a + 6) == 1 && be32(a + 24) == HOST_GUEST_IP) {
			rx.arp_request = true;
			memcpy(rx.sha, a + 8, 6);
			rx.spa = spa;
		}
		return;
	}
	if (be16(f + 12) == 0x0800)
		classify_ipv4(f + ETH_HLEN, len - ETH_HLEN);
}

/* Byte 0 bit 7: the checksums a sender would have set. */
static void seal(uint8_t *f, size_t len)
{
	if (len < ETH_HLEN + IP_HLEN || be16(f + 12) != 0x0800)
		return;
	uint8_t *p = f + ETH_HLEN;
	size_t l = len - ETH_HLEN, hl = (size_t)(p[0] & 15) * 4, total = be16(p + 2);
	if (hl < IP_HLEN || hl > l)
		return;
	put16(p + 10, 0);
	put16(p + 10, (uint16_t)~fold(sum16(p, hl, 0)));
	if (total > l || total < hl)
		return;
	uint8_t *q = p + hl;
	size_t ql = total - hl;
	uint32_t src = be32(p + 12), dst = be32(p + 16);
	size_t at;
	uint64_t s;
	switch (p[9]) {
	case 1:
		at = 2, s = 0;
		break;
	case 6:
		at = 16, s = pseudo(src, dst, 6, ql);
		break;
	case 17:
		if (ql >= UDP_HLEN && be16(q + 6) == 0)
			return;
		at = 6, s = pseudo(src, dst, 17, ql);
		break;
	default:
		return;
	}
	if (ql < at + 2)
		return;
	put16(q + at, 0);
	uint16_t c = (uint16_t)~fold(sum16(q, ql, s));
	put16(q + at, p[9] == 17 && c == 0 ? 0xffff : c);
}

/* ---- kv answers ---- */

static size_t rec_bytes(size_t kl, size_t vl)
{
	return (REC_HEADER + kl + vl + 7) & ~(size_t)7;
}

/* The block kvstore.c gives a key and value: 16 << c bytes, 16..1024. */
static uint64_t kvs_block(size_t n)
{
	uint64_t b = 16;
	while (b < n)
		b <<= 1;
	return b;
}

/* Could the kv table refuse a put of this key (kvdb_put's check,
 * kvs_can_put: store_full, which kv.c answers as disk_full)? Its entries are the model's; its data, at most the
 * bound. */
static bool table_may_refuse(const char *key, size_t kl, size_t vl)
{
	return (!table_find(key, kl) && n_table >= kvs_entries) ||
	       kvs_data_bound + kvs_block(kl + vl) > kvs_data;
}

/* Is s what the kv protocol's VAL carries: [A-Za-z0-9_.-]{1,64}? */
static bool udp_value(const uint8_t *s, size_t n)
{
	return token(s, n, KVPROTO_TOKEN_MAX);
}

/* The answer its request gets, now that the guest has handled it. */
static void kv_finalize(struct expect *x)
{
	const struct expect_answer *e = &x->ans;
	int n = 0;

	x->open = false;
	x->exact = true;
	switch (e->op) {
	case OP_ERR:
		n = snprintf(x->text, sizeof(x->text), "ERR %s %s", e->id, e->why);
		break;
	case OP_PUT:
		if (rx.committed) {
			n = snprintf(x->text, sizeof(x->text), "OK %s", e->id);
		} else if (rx.fault) {
			n = snprintf(x->text, sizeof(x->text), "ERR %s io_error", e->id);
		} else {
			/* Its one sector must leave the log's last (kept for a
			 * FLUSHALL record); a due restart is tried first. */
			size_t kl = strlen(e->key), vl = strlen(e->val);
			bool log_full = !restart_due &&
					disk_sectors - log_next <= (rec_bytes(kl, vl) + SECTOR - 1) / SECTOR;
			CHECK(!rx.put_written && (log_full || table_may_refuse(e->key, kl, vl)),
			      "PUT %s=%s neither acknowledged nor refused: the log's next sector %llu of %llu%s, "
			      "%zu entries in the table, %s written",
			      e->key, e->val, (unsigned long long)log_next, (unsigned long long)disk_sectors,
			      restart_due ? " (a restart due)" : "", n_table, rx.put_written ? "its record" : "nothing");
			n = snprintf(x->text, sizeof(x->text), "ERR %s disk_full", e->id);
		}
		break;
	case OP_GET: {
		const struct rec *t = table_find(e->key, strlen(e->key));
		model_gets++;
		if (t && udp_value(t->val, t->vl))
			n = snprintf(x->text, sizeof(x->text), "VAL %s %.*s", e->id, (int)t->vl, t->val);
		else if (t) /* set over RESP: empty, longer, or other bytes */
			n = snprintf(x->text, sizeof(x->text), "ERR %s unrepresentable", e->id);
		else
			n = snprintf(x->text, sizeof(x->text), "NONE %s", e->id);
		break;
	}
	case OP_TIME:
	case OP_STAT:
		x->exact = false;
		x->tsc_lo = rx.tsc_start;
		x->tsc_hi = host_clock_tsc();
		x->entries = n_table;
		x->puts = model_puts;
		x->gets = model_gets;
		x->gets_exact = !resp_touched;
		break;
	}
	x->text_len = (size_t)n;
}

/* Is a the answer x gets? why says what differs. */
static bool kv_is(const struct expect *x, const uint8_t *a, size_t n, const char **why)
{
	struct kvproto_answer ans;

	*why = "the client rejects it";
	if (kvproto__parse_answer((const char *)a, n, &ans))
		return false;
	*why = "another reqid";
	if (strcmp(ans.reqid, x->ans.id))
		return false;
	*why = "another answer";
	if (x->exact)
		return n == x->text_len && !memcmp(a, x->text, n);
	if (x->ans.op == OP_TIME)
		return ans.kind == KVPROTO_ANS_TIME && ans.tsc >= x->tsc_lo && ans.tsc <= x->tsc_hi &&
		       ans.ns == host_clock_ns(ans.tsc);
	const struct kvproto_stat *s = &ans.stat;
	return ans.kind == KVPROTO_ANS_STAT && s->entries == x->entries && s->puts == x->puts &&
	       (x->gets_exact ? s->gets == x->gets : s->gets >= x->gets) && s->dirtied == 0 &&
	       s->ap_tsc == 0 && s->ap_iterations == 0 && s->tsc_order_errors == 0 &&
	       s->tsc >= x->tsc_lo && s->tsc <= x->tsc_hi && s->ns == host_clock_ns(s->tsc);
}

/* While its request is still handled: what can be told already. */
static void kv_open_is(struct expect *x, const uint8_t *a, size_t n)
{
	struct kvproto_answer ans;

	CHECK(kvproto__parse_answer((const char *)a, n, &ans) == 0, "the client rejects the answer '%.*s'",
	      (int)n, (const char *)a);
	CHECK(!strcmp(ans.reqid, x->ans.id), "answer '%.*s' carries reqid '%s', want '%s'", (int)n,
	      (const char *)a, ans.reqid, x->ans.id);
	if (ans.kind == KVPROTO_ANS_OK)
		CHECK(x->ans.op == OP_PUT && rx.committed, "OK before the record was written and flushed");
	CHECK(n < sizeof(x->sent_text), "answer of %zu bytes", n);
	memcpy(x->sent_text, a, n);
	x->sent_len = n;
	x->sent = true;
}

static void kv_report(const struct expect *x, const uint8_t *a, size_t n, const char *why)
{
	if (x->exact)
		CHECK(false, "answer '%.*s' (%s), want '%.*s'", (int)n, (const char *)a, why,
		      (int)x->text_len, x->text);
	CHECK(false, "answer '%.*s' (%s), want %s %s with tsc in %llu..%llu, entries=%llu puts=%llu gets%s%llu",
	      (int)n, (const char *)a, why, x->ans.op == OP_TIME ? "TIME" : "STAT", x->ans.id,
	      (unsigned long long)x->tsc_lo, (unsigned long long)x->tsc_hi,
	      (unsigned long long)x->entries, (unsigned long long)x->puts, x->gets_exact ? "=" : ">=",
	      (unsigned long long)x->gets);
}

/* ---- the link's frames to the guest ---- */

static bool must_pending(const struct expect **which)
{
	for (size_t i = xs_first; i < n_xs; i++) {
		if (!xs[i].done && xs[i].must && !xs[i].open) {
			*which = &xs[i];
			return true;
		}
	}
	return false;
}

static void check_all_sent(void)
{
	const struct expect *x;

	while (xs_first < n_xs && xs[xs_first].done)
		xs_first++;
	if (must_pending(&x)) {
		if (x->kind == X_UDP)
			CHECK(false, "no answer to a kv request from %08x (%s %s), want '%.*s'", x->dst,
			      x->exact ? "" : "TIME/STAT", x->ans.id, (int)x->text_len, x->text);
		CHECK(false, "no %s to %08x", x->kind == X_ECHO ? "echo reply" :
			     x->kind == X_UNREACH ? "ICMP unreachable" : "RST", x->dst);
	}
}

int host_rx_next(const uint8_t **frame, size_t *len)
{
	CHECK(!rx.active, "a frame handed up before the previous one was done");
	check_restart_tried();
	if (booting) {
		CHECK(replays_done == 1, "the guest serves without its boot replay (reads, then a flush)");
		CHECK(announces == 1, "%u gratuitous ARPs at boot, want 1", announces);
		booting = false;
		/* The fresh disk replayed nothing: the table is as kvs_init laid
		 * it out. */
		host_kv_table(&kvs_entries, &kvs_data);
	}
	if (hq_n) {
		/* An ARP answer from one of the link's hosts. */
		const struct hframe *h = &hq[hq_head];
		memset(&rx, 0, sizeof(rx));
		if (!(rx.f = malloc(sizeof(h->f))))
			abort();
		memcpy(rx.f, h->f, sizeof(h->f));
		rx.len = sizeof(h->f);
		hq_head++;
		if (--hq_n == 0)
			hq_head = 0;
	} else {
		check_all_sent();
		if (steps_left) {
			steps_left--;
			host_clock_advance_ms(STEP_MS);
			return 0;
		}
		for (;;) {
			if (in_len - in_pos < 2) {
				in_pos = in_len;
				return 0;
			}
			size_t l = be16(in + in_pos);
			in_pos += 2;
			if (l >= TOKEN_TIME) {
				unsigned s = (unsigned)(l - TOKEN_TIME + 1);
				if (s > MAX_STEPS - steps_used)
					s = MAX_STEPS - steps_used;
				steps_used += s;
				if (!s)
					continue;
				steps_left = s - 1;
				host_clock_advance_ms(STEP_MS);
				if (verbose)
					fprintf(stderr, "fuzz_guest_net: %u ms pass\n", s * STEP_MS);
				return 0;
			}
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
			if (flags & F_SEALED)
				seal(rx.f, l);
			break;
		}
	}
	rx.active = true;
	rx.tsc_start = host_clock_tsc();
	if (verbose)
		hexdump_frame("rx", rx.f, rx.len);
	classify();
	*frame = rx.f;
	*len = rx.len;
	return 1;
}

void host_rx_done(void)
{
	CHECK(rx.active, "host_rx_done without a frame");
	CHECK(rx.arp_replies == rx.arp_request, "ARP request answered %u times", rx.arp_replies);
	CHECK(!inflight.active, "a record written and neither flushed nor failed");
	check_restart_tried();
	if (rx.is_kv) {
		struct expect *x = &xs[rx.kv_index];
		kv_finalize(x);
		if (x->sent) {
			const char *why;
			if (!kv_is(x, (const uint8_t *)x->sent_text, x->sent_len, &why))
				kv_report(x, (const uint8_t *)x->sent_text, x->sent_len, why);
		}
	}
	free(rx.f);
	rx.f = NULL;
	rx.active = false;
}

int host_rx_pending(void)
{
	return hq_n || steps_left || in_len - in_pos >= 2;
}

void host_rx_batch_end(void)
{
	check_restart_tried();
	/* lwIP's timers run before the link's ARP answers come in: what it
	 * sends meanwhile to those hosts queues behind the replies owed, and
	 * its queue (ARP_QUEUE_LEN) may drop them. */
	for (size_t i = 0; i < hq_n; i++)
		for (size_t j = xs_first; j < n_xs; j++)
			if (xs[j].dst == hq[hq_head + i].ip)
				xs[j].must = false;
}

/* ---- the disk ---- */

uint64_t host_disk_sectors(void)
{
	return disk_sectors;
}

int host_disk_read(uint64_t sector, void *buf, uint32_t n)
{
	CHECK(replaying, "a read of sector %llu outside a replay (at boot, or the harness's at the end)",
	      (unsigned long long)sector);
	CHECK(sector < disk_sectors && n <= disk_sectors - sector, "read past the disk");
	memcpy(buf, disk + sector * SECTOR, (size_t)n * SECTOR);
	replay_reads++;
	return 0;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

NOCOV static bool all_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return false;
	return true;
}

/*
 * The batch at b[0..avail) as kvlog.c must write it (its header comment;
 * docs/kv-protocol.md, "The on-disk log"): records back to back from b,
 * numbered from seq, each: magic "KVR2", CRC-32C of its bytes from 16 on,
 * the batch's tag, a zero u32, sequence number, key and value lengths
 * (u16), op, the records after it in the batch (one less each record, 0
 * for the last), a zero u16, key, value, zeros to a multiple of 8; the
 * lengths the op has (PUT: 0..512 each; DEL: no value; FLUSHALL:
 * neither); at most 128 records and 127 sectors; the tag, in every record
 * the same, the CRC-32C of the records' CRCs in order (each 4 bytes,
 * little-endian). NULL with the records in out[0..*nrec) and their bytes,
 * else what is wrong.
 */
NOCOV static const char *batch_parse(const uint8_t *b, size_t avail, uint64_t seq, struct rec *out,
				     size_t *nrec, size_t *bytes)
{
	uint8_t crcs[4 * BATCH_MAX];
	size_t at = 0;
	unsigned first_left = 0;

	for (size_t i = 0;; i++) {
		const uint8_t *r = b + at;
		if (avail - at < REC_HEADER)
			return "a record header cut short by the write's end";
		if (le32(r) != LOG_MAGIC)
			return "no KVR2 magic";
		if (le32(r + R_ZERO32))
			return "bytes 12..15 not zero";
		if (le64(r + R_SEQ) != seq + i)
			return "not the next sequence number";
		unsigned op = r[R_OP];
		size_t kl = le16(r + R_KLEN), vl = le16(r + R_VLEN);
		if (!((op == HOST_KV_PUT && kl <= KV_MAX_LEN && vl <= KV_MAX_LEN) ||
		      (op == HOST_KV_DEL && kl <= KV_MAX_LEN && vl == 0) ||
		      (op == HOST_KV_FLUSHALL && kl == 0 && vl == 0)))
			return "an op or lengths no record has";
		if (le16(r + R_ZERO16))
			return "bytes 30..31 not zero";
		if (i == 0)
			first_left = r[R_LEFT];
		if (first_left >= BATCH_MAX || r[R_LEFT] != first_left - i)
			return "a count of the records after it that does not fit";
		if (le32(r + R_TAG) != le32(b + R_TAG))
			return "a tag other than the batch's first record's";
		size_t len = rec_bytes(kl, vl);
		if (avail - at < len)
			return "a record cut short by the write's end";
		uint32_t crc = crc32c(r + R_SEQ, len - R_SEQ);
		if (crc != le32(r + R_CRC))
			return "a bad CRC";
		memcpy(crcs + 4 * i, r + R_CRC, 4);
		if (!all_zero(r + REC_HEADER + kl + vl, len - REC_HEADER - kl - vl))
			return "its padding not zero";
		if (at + len > BATCH_BYTES)
			return "a batch over 127 sectors";
		struct rec *o = &out[i];
		o->op = (uint8_t)op;
		o->kl = (uint16_t)kl;
		o->vl = (uint16_t)vl;
		memcpy(o->key, r + REC_HEADER, kl);
		memcpy(o->val, r + REC_HEADER + kl, vl);
		at += len;
		if (r[R_LEFT] == 0) {
			if (crc32c(crcs, 4 * (i + 1)) != le32(b + R_TAG))
				return "a tag that is not the CRC-32C of its records' CRCs";
			*nrec = i + 1;
			*bytes = at;
			return NULL;
		}
	}
}

NOCOV static bool rec_is(const struct rec *r, int op, const void *key, size_t kl, const void *val, size_t vl)
{
	return r->op == op && r->kl == kl && r->vl == vl && !memcmp(r->key, key, kl) && !memcmp(r->val, val, vl);
}

static const char *op_name(int op)
{
	return op == HOST_KV_PUT ? "PUT" : op == HOST_KV_DEL ? "DEL" : op == HOST_KV_FLUSHALL ? "FLUSHALL" : "?";
}

/* Where the records of a write's batch may go and what they may be:
 * checked before the write is done or fails. */
static void check_batch_use(uint64_t sector, uint32_t sectors, const struct rec *r, size_t nrec)
{
	bool flushall = r[0].op == HOST_KV_FLUSHALL;
	CHECK(!flushall || nrec == 1, "a FLUSHALL record in a batch of %zu", nrec);
	CHECK(flushall || sector + sectors < disk_sectors,
	      "a %s batch of %u sectors at %llu takes the log's last sector (%llu), kept for FLUSHALL",
	      op_name(r[0].op), sectors, (unsigned long long)sector, (unsigned long long)disk_sectors - 1);
	for (size_t i = 0; i < nrec; i++) {
		CHECK(r[i].op == r[0].op, "a batch of %s and %s records", op_name(r[0].op), op_name(r[i].op));
		if (r[i].op != HOST_KV_DEL)
			continue;
		CHECK(table_find(r[i].key, r[i].kl), "a DEL record of key '%.*s', which the table does not hold",
		      (int)r[i].kl, (const char *)r[i].key);
		for (size_t j = 0; j < i; j++)
			CHECK(r[j].kl != r[i].kl || memcmp(r[j].key, r[i].key, r[i].kl),
			      "two DEL records of key '%.*s' in a batch", (int)r[i].kl, (const char *)r[i].key);
	}
	if (probing) {
		CHECK(!probe_written, "two batches for the probe's one record");
		CHECK(nrec == 1 && rec_is(&r[0], HOST_KV_PUT, PROBE_KEY, strlen(PROBE_KEY), PROBE_VAL,
					  strlen(PROBE_VAL)),
		      "the probe's append writes %zu records, the first %s '%.*s'", nrec, op_name(r[0].op),
		      (int)r[0].kl, (const char *)r[0].key);
		probe_written = true;
	}
}

/*
 * A write to the log. Either one batch (as batch_parse), then zeros to its
 * sector's end, then exactly one zeroed sector where the disk has one, at
 * the log's next sector, numbered on from the last acknowledged record
 * and leaving the last sector to a FLUSHALL record; a batch is PUTs (kv
 * PUT, RESP's SET, MSET, INCR...), DELs of keys the table holds, each
 * once (RESP's DEL), or a lone FLUSHALL (RESP's FLUSHALL and FLUSHDB).
 * Or, when a FLUSHALL record was acknowledged at the log's end (and only
 * then: no record may follow it there), a restart in two writes, each
 * flushed before the next: sector 1 alone, a lone FLUSHALL record with
 * the next number (W1), then, once that is flushed and the disk has a
 * sector 2, sector 2 alone, zeroed (W2).
 */
int host_disk_write(uint64_t sector, const void *buf, uint32_t n)
{
	const uint8_t *b = buf;
	size_t nrec = 0, bytes = 0;
	uint32_t sectors = n;

	CHECK(!replaying, "a write at sector %llu during a replay", (unsigned long long)sector);
	CHECK(!booting, "a write at sector %llu at boot, before the guest polls its NIC",
	      (unsigned long long)sector);
	CHECK(!after_input || probing, "a write at sector %llu after the input, not the probe's",
	      (unsigned long long)sector);
	CHECK(!inflight.active, "a write while the previous one is not flushed");
	CHECK(n >= 1 && sector < disk_sectors && n <= disk_sectors - sector, "a write past the disk");
	struct rec *r = inflight.r;
	inflight.kind = IN_BATCH;
	if (rst == RST_W1_FLUSHED) {
		CHECK(sector == 2 && n == 1 && all_zero(b, SECTOR),
		      "%u sectors written at %llu after a restart's sector 1 was flushed: want sector 2 "
		      "alone, zeroed", n, (unsigned long long)sector);
		inflight.kind = IN_RESTART2;
	} else if (restart_due) {
		CHECK(sector == 1 && n == 1, "%u sectors written at %llu while a restart of the log is due "
		      "(a FLUSHALL record at its end, sector %llu): want sector 1 alone", n,
		      (unsigned long long)sector, (unsigned long long)last_sector);
		const char *why = batch_parse(b, SECTOR, log_seq, r, &nrec, &bytes);
		CHECK(!why, "the restart's sector 1 is no batch of records %llu on: %s",
		      (unsigned long long)log_seq, why);
		CHECK(nrec == 1 && r[0].op == HOST_KV_FLUSHALL, "sector 1 rewritten with a %s batch of %zu, "
		      "not a FLUSHALL record", op_name(r[0].op), nrec);
		CHECK(all_zero(b + bytes, SECTOR - bytes), "the restart's sector 1 not zero after its record");
		restart_untried = false;
		inflight.kind = IN_RESTART1;
	} else {
		CHECK(sector == log_next, "records written at sector %llu (%u sectors), the log's next is "
		      "%llu of %llu", (unsigned long long)sector, n, (unsigned long long)log_next,
		      (unsigned long long)disk_sectors);
		const char *why = batch_parse(b, (size_t)n * SECTOR, log_seq, r, &nrec, &bytes);
		CHECK(!why, "the write at sector %llu (%u sectors) is no batch of records %llu on: %s",
		      (unsigned long long)sector, n, (unsigned long long)log_seq, why);
		sectors = (uint32_t)((bytes + SECTOR - 1) / SECTOR);
		CHECK(all_zero(b + bytes, (size_t)sectors * SECTOR - bytes),
		      "the batch's last sector not zero after its records");
		uint32_t want = sectors + (sector + sectors < disk_sectors ? 1 : 0);
		CHECK(n == want && all_zero(b + (size_t)sectors * SECTOR, (size_t)(n - sectors) * SECTOR),
		      "a batch of %u sectors at %llu written as %u sectors, want %u: the batch, then one "
		      "zeroed sector where the disk has one", sectors, (unsigned long long)sector, n, want);
		check_batch_use(sector, sectors, r, nrec);
	}
	/* Only a kv PUT or RESP (its segments, or lwIP's timers for it) write;
	 * a kv PUT one batch of one record, its key and value, after the
	 * restart a FLUSHALL left due. */
	if (rx.active && !rx.resp) {
		const struct expect *x = rx.is_kv ? &xs[rx.kv_index] : NULL;
		CHECK(x && x->ans.op == OP_PUT, "a disk write during a frame that is no valid PUT");
		CHECK(!x->sent, "a record written after the PUT was answered");
		if (inflight.kind == IN_BATCH) {
			CHECK(!rx.put_written, "two writes for one PUT");
			size_t kl = strlen(x->ans.key), vl = strlen(x->ans.val);
			CHECK(nrec == 1 && rec_is(&r[0], HOST_KV_PUT, x->ans.key, kl, x->ans.val, vl),
			      "PUT %s=%s writes %zu records, the first %s %.*s=%.*s", x->ans.key, x->ans.val, nrec,
			      op_name(r[0].op), (int)r[0].kl, (const char *)r[0].key, (int)r[0].vl,
			      (const char *)r[0].val);
			rx.put_written = true;
		}
	}
	unsigned w = n_writes++;
	if (verbose)
		fprintf(stderr, "fuzz_guest_net: write %u: %u sectors at %llu (%s, %zu records from %llu)%s\n", w, n,
			(unsigned long long)sector,
			inflight.kind == IN_BATCH ? "a batch" : inflight.kind == IN_RESTART1 ? "restart W1" : "restart W2",
			nrec, (unsigned long long)log_seq, faults & (1u << (w % 4)) ? ", fails" : "");
	if (faults & (1u << (w % 4))) {
		/* Torn: its first (w / 4) % n sectors reach the disk (none for a
		 * write of one sector, or the first four writes). */
		uint32_t kept = (w / 4) % n;
		memcpy(disk + sector * SECTOR, b, (size_t)kept * SECTOR);
		if (kept && inflight.kind == IN_BATCH) {
			memcpy(tail, r, nrec * sizeof(*r));
			n_tail = nrec;
			tail_sectors = sectors;
		}
		if (verbose && kept)
			fprintf(stderr, "fuzz_guest_net: write %u torn: %u of %u sectors at %llu\n", w, kept, n,
				(unsigned long long)sector);
		rx.fault = true;
		rst = RST_NONE;
		return -5; /* -EIO */
	}
	memcpy(disk + sector * SECTOR, b, (size_t)n * SECTOR);
	inflight.active = true;
	inflight.sector = sector;
	inflight.sectors = sectors;
	inflight.n = nrec;
	/* What the disk now holds where the log goes on. */
	switch (inflight.kind) {
	case IN_RESTART1:
		restart_on_disk = true;
		rst = RST_W1;
		break;
	case IN_RESTART2:
		rst = RST_W2;
		break;
	case IN_BATCH:
		memcpy(tail, r, nrec * sizeof(*r));
		n_tail = nrec;
		tail_sectors = sectors;
		break;
	}
	return 0;
}

NOCOV static void table_apply(const struct rec *r)
{
	struct rec *t;

	switch (r->op) {
	case HOST_KV_PUT:
		model_puts++;
		kvs_data_bound += kvs_block((size_t)r->kl + r->vl);
		if (!(t = table_find(r->key, r->kl))) {
			CHECK(n_table < LOG_RECORDS_MAX, "the harness's table is full");
			t = &table[n_table++];
		}
		*t = *r;
		break;
	case HOST_KV_DEL:
		t = table_find(r->key, r->kl);
		*t = table[--n_table];
		break;
	case HOST_KV_FLUSHALL:
		n_table = 0;
		kvs_data_bound = 0;
		break;
	}
}

/* The log started over: the restart's FLUSHALL record, numbered log_seq,
 * alone at sector 1 (the store was empty since the FLUSHALL at the old
 * end). */
static void restart_done(void)
{
	struct rec *c = &committed[0];
	memset(c, 0, sizeof(*c));
	c->op = HOST_KV_FLUSHALL;
	n_committed = 1;
	last_sector = 1;
	last_flushall = true;
	log_next = 2;
	log_seq++;
	restart_due = restart_untried = restart_on_disk = false;
	rst = RST_NONE;
	n_tail = 0;
}

int host_disk_flush(void)
{
	if (replaying) {
		/* kvlog_replay's last step; it never fails here (the fault
		 * bits count the flushes after writes only). */
		CHECK(replay_reads, "a replay's flush before it read the log");
		if (verbose)
			fprintf(stderr, "fuzz_guest_net: the replay's flush (%u reads)\n", replay_reads);
		replaying = false;
		replays_done++;
		return 0;
	}
	CHECK(inflight.active, "a flush without a record written before it (and not ending a replay)");
	inflight.active = false;
	if (verbose)
		fprintf(stderr, "fuzz_guest_net: flush %u%s\n", n_flushes,
			faults & (0x10u << (n_flushes % 4)) ? ", fails" : "");
	if (faults & (0x10u << (n_flushes++ % 4))) {
		rx.fault = true;
		rst = RST_NONE; /* a restart failed: it stays due */
		return -5;
	}
	/* Durable: each record is acknowledged now. */
	switch (inflight.kind) {
	case IN_RESTART1:
		if (disk_sectors > 2)
			rst = RST_W1_FLUSHED; /* sector 2 next */
		else
			restart_done();
		return 0;
	case IN_RESTART2:
		restart_done();
		return 0;
	case IN_BATCH:
		break;
	}
	CHECK(n_committed + inflight.n <= LOG_RECORDS_MAX, "the harness's log is full");
	for (size_t i = 0; i < inflight.n; i++) {
		committed[n_committed++] = inflight.r[i];
		table_apply(&inflight.r[i]);
	}
	last_sector = inflight.sector;
	last_flushall = inflight.r[0].op == HOST_KV_FLUSHALL;
	log_next += inflight.sectors;
	log_seq += inflight.n;
	n_tail = 0;
	if (last_flushall)
		restart_due = restart_untried = true;
	if (rx.active && rx.is_kv && !rx.resp)
		rx.committed = true;
	if (probing)
		probe_committed = true;
	return 0;
}

/* ---- what the guest sends ---- */

/* The ARP answer of host ip, the next frame the guest gets. */
static void host_answers_arp(uint32_t ip, const uint8_t mac[6])
{
	if (hq_head + hq_n == hq_cap) {
		if (hq_head) {
			memmove(hq, hq + hq_head, hq_n * sizeof(*hq));
			hq_head = 0;
		}
		size_t n = hq_n;
		GROW(hq, n, hq_cap);
	}
	struct hframe *h = &hq[hq_head + hq_n++];
	uint8_t *f = h->f, *a = f + ETH_HLEN;
	static const uint8_t hdr[8] = { 0, 1, 8, 0, 6, 4, 0, 2 };
	h->ip = ip;
	memcpy(f, host_mac, 6);
	memcpy(f + 6, mac, 6);
	put16(f + 12, 0x0806);
	memcpy(a, hdr, 8);
	memcpy(a + 8, mac, 6);
	put32(a + 14, ip);
	memcpy(a + 18, host_mac, 6);
	put32(a + 24, HOST_GUEST_IP);
}

static void check_arp(const uint8_t *f, size_t len)
{
	const uint8_t *a = f + ETH_HLEN;
	static const uint8_t req[8] = { 0, 1, 8, 0, 6, 4, 0, 1 }, rep[8] = { 0, 1, 8, 0, 6, 4, 0, 2 };

	CHECK(len == ETH_HLEN + ARP_LEN, "ARP frame of %zu bytes", len);
	CHECK(!memcmp(a + 8, host_mac, 6) && be32(a + 14) == HOST_GUEST_IP,
	      "ARP not from the guest's MAC and address");
	if (!memcmp(a, rep, 8)) {
		CHECK(rx.active && rx.arp_request, "an ARP reply nobody asked for");
		CHECK(++rx.arp_replies == 1, "one ARP request answered twice");
		CHECK(!memcmp(f, rx.sha, 6) && !memcmp(a + 18, rx.sha, 6) && be32(a + 24) == rx.spa,
		      "ARP reply not to the requester (%08x)", rx.spa);
		return;
	}
	CHECK(!memcmp(a, req, 8) && !memcmp(a + 18, zero6, 6), "bad ARP frame from the guest");
	uint32_t tpa = be32(a + 24);
	if (booting) {
		CHECK(!memcmp(f, bcast, 6) && tpa == HOST_GUEST_IP, "a frame at boot that is not the gratuitous ARP");
		announces++;
		return;
	}
	const uint8_t *mac = map_get(&hosts, tpa), *known = map_get(&announced, tpa);
	CHECK(mac && ip_on_link(tpa), "ARP request for %08x, a host the guest owes nothing", tpa);
	CHECK(!memcmp(f, bcast, 6) || (known && !memcmp(f, known, 6)),
	      "ARP request for %08x neither broadcast nor to the MAC its table has", tpa);
	if (!(flags & F_NO_ARP))
		host_answers_arp(tpa, mac);
}

static bool echo_is(const struct expect *x, const uint8_t *h, size_t total)
{
	const uint8_t *o = x->pkt;
	size_t hl = (size_t)(o[0] & 15) * 4;

	if (total != x->pkt_len || h[9] != 1 || (h[0] & 15) * 4 != (int)hl)
		return false;
	/* The request's header: its TTL 255, addresses swapped, checksum new. */
	if (memcmp(h, o, 8) || h[8] != 255 || memcmp(h + 9, o + 9, 1) || be32(h + 12) != be32(o + 16) ||
	    be32(h + 16) != be32(o + 12) || memcmp(h + 20, o + 20, hl - 20))
		return false;
	const uint8_t *q = h + hl, *oq = o + hl;
	size_t ql = total - hl;
	return q[0] == 0 && q[1] == oq[1] && csum_ok(q, ql, 0) && !memcmp(q + 4, oq + 4, ql - 4);
}

static bool unreach_is(const struct expect *x, const uint8_t *h, size_t total)
{
	const uint8_t *q = h + IP_HLEN;
	static const uint8_t zero4[4];

	return h[9] == 1 && total == IP_HLEN + 8 + x->pkt_len && q[0] == 3 && q[1] == x->code &&
	       csum_ok(q, total - IP_HLEN, 0) && !memcmp(q + 4, zero4, 4) &&
	       !memcmp(q + 8, x->pkt, x->pkt_len);
}

static bool rst_is(const struct expect *x, const uint8_t *h, size_t total)
{
	const uint8_t *q = h + IP_HLEN;

	/* The window is not checked: lwIP swaps TCP_WND's bytes twice
	 * (tcp_rst(): PP_HTONS, then lwip_htons again). */
	return h[9] == 6 && total == IP_HLEN + TCP_HLEN && be16(q) == x->sport && be16(q + 2) == x->dport &&
	       be32(q + 4) == x->seq && be32(q + 8) == x->ack && q[12] == 0x50 &&
	       q[13] == (TCP_RST | TCP_ACK) && be16(q + 18) == 0 &&
	       csum_ok(q, TCP_HLEN, pseudo(HOST_GUEST_IP, x->dst, 6, TCP_HLEN));
}

/* A segment of the RESP service. */
static void check_resp_segment(const uint8_t *h, size_t total)
{
	size_t hl = IP_HLEN, ql = total - hl;
	const uint8_t *q = h + hl;
	uint32_t dst = be32(h + 16);

	CHECK(ql >= TCP_HLEN, "TCP segment of %zu bytes", ql);
	size_t thl = (size_t)(q[12] >> 4) * 4;
	CHECK(thl >= TCP_HLEN && thl <= ql, "TCP header of %zu bytes in %zu", thl, ql);
	CHECK(csum_ok(q, ql, pseudo(HOST_GUEST_IP, dst, 6, ql)), "bad TCP checksum");
	CHECK(tcp_peer(dst, be16(q + 2)), "TCP segment to %08x:%u, which never sent to port %u", dst,
	      be16(q + 2), HOST_GUEST_RESP_PORT);
	for (size_t i = TCP_HLEN; i < thl;) {
		if (q[i] == 0)
			break;
		if (q[i] == 1) {
			i++;
			continue;
		}
		CHECK(i + 1 < thl && q[i + 1] >= 2 && i + q[i + 1] <= thl, "bad TCP option at %zu", i);
		CHECK(q[i] != 2 || q[i + 1] == 4, "MSS option of %u bytes", q[i + 1]);
		i += q[i + 1];
	}
}

static void check_ipv4(const uint8_t *f, size_t len)
{
	const uint8_t *h = f + ETH_HLEN;

	CHECK(len >= ETH_HLEN + IP_HLEN && h[0] >> 4 == 4, "IPv4 frame of %zu bytes, version %u", len,
	      len > ETH_HLEN ? h[0] >> 4 : 0);
	size_t hl = (size_t)(h[0] & 15) * 4, total = be16(h + 2);
	uint32_t dst = be32(h + 16);
	CHECK(hl >= IP_HLEN && total >= hl && ETH_HLEN + total == len,
	      "IP header of %zu, total %zu in a frame of %zu", hl, total, len);
	CHECK(csum_ok(h, hl, 0), "bad IPv4 header checksum");
	CHECK(!(be16(h + 6) & 0x3fff) && h[8] != 0, "IP packet fragmented or without TTL");
	CHECK(be32(h + 12) == HOST_GUEST_IP, "IP packet from %08x", be32(h + 12));
	CHECK(ip_on_link(dst) && !ip_broadcast(dst) && !ip_multicast(dst),
	      "IP packet to %08x, not a host on the link", dst);
	const uint8_t *mac = map_get(&announced, dst);
	CHECK(mac && !memcmp(f, mac, 6), "IP packet to %08x not to the MAC ARP gave for it", dst);

	const uint8_t *q = h + hl;
	size_t ql = total - hl;
	bool from_resp = h[9] == 6 && hl == IP_HLEN && ql >= TCP_HLEN && be16(q) == HOST_GUEST_RESP_PORT;
	if (from_resp) {
		check_resp_segment(h, total);
		return;
	}
	/* The first reply owed to dst it is; those before it (to dst) were
	 * dropped by lwIP's ARP queue. */
	struct expect *hit = NULL;
	const struct expect *near = NULL;
	const char *why = "";
	/* The answer to the request being handled goes out now or later, and
	 * nothing queued goes out while an IPv4 frame is handled. */
	if (rx.active && rx.is_kv && !xs[rx.kv_index].sent && h[9] == 17 && hl == IP_HLEN &&
	    ql >= UDP_HLEN && dst == xs[rx.kv_index].dst && be16(q) == xs[rx.kv_index].sport &&
	    be16(q + 2) == xs[rx.kv_index].dport) {
		struct expect *x = &xs[rx.kv_index];
		CHECK(be16(q + 4) == ql, "UDP length %u in %zu bytes of IP payload", be16(q + 4), ql);
		CHECK(be16(q + 6) != 0 && csum_ok(q, ql, pseudo(HOST_GUEST_IP, dst, 17, ql)),
		      "bad UDP checksum");
		if (verbose)
			fprintf(stderr, "fuzz_guest_net: answer '%.*s'\n", (int)(ql - UDP_HLEN),
				(const char *)q + UDP_HLEN);
		kv_open_is(x, q + UDP_HLEN, ql - UDP_HLEN);
		hit = x;
	}
	for (size_t i = xs_first; i < n_xs && !hit; i++) {
		struct expect *x = &xs[i];
		if (x->done || x->dst != dst)
			continue;
		switch (x->kind) {
		case X_ECHO:
			if (echo_is(x, h, total))
				hit = x;
			break;
		case X_UNREACH:
			if (hl == IP_HLEN && unreach_is(x, h, total))
				hit = x;
			break;
		case X_RST:
			if (hl == IP_HLEN && rst_is(x, h, total))
				hit = x;
			break;
		case X_UDP: {
			if (hl != IP_HLEN || h[9] != 17 || ql < UDP_HLEN || be16(q) != x->sport ||
			    be16(q + 2) != x->dport)
				break;
			CHECK(be16(q + 4) == ql, "UDP length %u in %zu bytes of IP payload", be16(q + 4), ql);
			CHECK(be16(q + 6) != 0 && csum_ok(q, ql, pseudo(HOST_GUEST_IP, dst, 17, ql)),
			      "bad UDP checksum");
			if (x->open) {
				break;
			} else if (kv_is(x, q + UDP_HLEN, ql - UDP_HLEN, &why)) {
				if (verbose)
					fprintf(stderr, "fuzz_guest_net: answer (queued) '%.*s'\n",
						(int)(ql - UDP_HLEN), (const char *)q + UDP_HLEN);
				hit = x;
			} else if (!near) {
				near = x;
			}
			break;
		}
		}
	}
	if (!hit && near)
		kv_report(near, q + UDP_HLEN, ql - UDP_HLEN, why);
	CHECK(hit, "an IP packet to %08x nobody asked for (protocol %u, %zu bytes)", dst, h[9], total);
	for (struct expect *x = &xs[xs_first]; x < hit; x++) {
		if (x->done || x->dst != dst)
			continue;
		CHECK(!x->must, "a reply to %08x went out before an older one owed to it (kind %d)", dst,
		      (int)x->kind);
		x->done = true;
	}
	hit->done = true;
}

void host_tx(const uint8_t *f, size_t len)
{
	if (verbose)
		hexdump_frame("tx", f, len);
	CHECK(!replaying && replays_done, "a frame sent before the boot's replay is done (its flush)");
	CHECK(len >= ETH_HLEN && len <= ETH_MAX, "a frame of %zu bytes sent", len);
	CHECK(!memcmp(f + 6, host_mac, 6), "a frame not from the guest's MAC");
	if (be16(f + 12) == 0x0806) {
		check_arp(f, len);
		return;
	}
	CHECK(!booting, "a frame at boot that is not the gratuitous ARP");
	CHECK(be16(f + 12) == 0x0800, "a frame of type %04x", be16(f + 12));
	check_ipv4(f, len);
}

/* ---- the replays at the end ---- */

/* A key or value in a message: its first 48 bytes. */
#define SHOW(len) ((int)((len) > 48 ? 48 : (len)))

static void replayed(int op, const char *key, size_t klen, const char *val, size_t vlen)
{
	size_t i = n_replayed++;

	if (restart_on_disk) {
		/* Sector 1 holds the new start; sector 2 zeros (W2 done) or what
		 * it held, which no record numbered after the restart's is. */
		CHECK(i == 0 && op == HOST_KV_FLUSHALL,
		      "replayed record %zu is %s '%.*s', but sector 1 holds the FLUSHALL record of a restart "
		      "that did not complete", i + 1, op_name(op), (int)klen, key);
		return;
	}
	if (i < n_committed) {
		const struct rec *want = &committed[i];
		CHECK(rec_is(want, op, key, klen, val, vlen),
		      "replayed record %zu is %s '%.*s'='%.*s', not the acknowledged %s '%.*s'='%.*s'", i + 1,
		      op_name(op), SHOW(klen), key, SHOW(vlen), val, op_name(want->op), SHOW(want->kl),
		      (const char *)want->key, SHOW(want->vl), (const char *)want->val);
		return;
	}
	/* Not acknowledged: harmless only if it is of the last write that
	 * reached the disk, after every acknowledged record (it would
	 * override one after a reboot otherwise). */
	CHECK(i - n_committed < n_tail && rec_is(&tail[i - n_committed], op, key, klen, val, vlen),
	      "replay finds record %zu (%s '%.*s'='%.*s'), neither acknowledged (%zu are) nor of the last "
	      "write that reached the disk unacknowledged (%zu records)",
	      i + 1, op_name(op), SHOW(klen), key, SHOW(vlen), val, n_committed, n_tail);
}

/*
 * The guest's replay of the disk as it is (kvlog_replay: reads, then one
 * flush): exactly the acknowledged records, or those and the whole batch
 * of the tail, or the FLUSHALL record alone of a restart that reached
 * sector 1 and did not complete. The replay's flush made what it found
 * durable: that is the log now, the guest's position after it, and a
 * restart due if it ends at a FLUSHALL record past sector 1.
 */
static void check_replay(const char *which)
{
	n_replayed = 0;
	replaying = true;
	replay_reads = 0;
	unsigned done = replays_done;
	long r = host_kv_replay(replayed);
	CHECK(!replaying && replays_done == done + 1, "the %s replay returned without its flush", which);
	CHECK(r >= 0 && (size_t)r == n_replayed, "the %s replay gives %ld (%zu records seen)", which, r,
	      n_replayed);
	if (restart_on_disk) {
		CHECK(n_replayed == 1, "the %s replay gives %zu records of a log started over", which, n_replayed);
		restart_done();
	} else if (n_replayed != n_committed) {
		CHECK(n_tail && n_replayed == n_committed + n_tail,
		      "the %s replay gives %zu records, %zu acknowledged (and %zu of the last write that "
		      "reached the disk unacknowledged)", which, n_replayed, n_committed, n_tail);
		memcpy(committed + n_committed, tail, n_tail * sizeof(*tail));
		n_committed += n_tail;
		last_sector = log_next;
		last_flushall = tail[0].op == HOST_KV_FLUSHALL;
		log_next += tail_sectors;
		log_seq += n_tail;
	}
	/* The tail, if it was not taken, is no batch on the disk. */
	n_tail = 0;
	restart_due = last_flushall && last_sector > 1;
	restart_untried = false;
}

/*
 * After the first replay, one PUT appended as the guest would next
 * (kvlog_append, a record PROBE_KEY = PROBE_VAL): its writes follow the
 * log's rules from where the replay left it (the restart first, if one
 * is due), on the same fault bits; NULL only once its record is
 * durable, disk_full only with no room (the log's next sector its last),
 * io_error only after a failed write or flush.
 */
static void check_probe(void)
{
	memset(&rx, 0, sizeof(rx));
	probing = true;
	probe_written = probe_committed = false;
	const char *why = host_kv_probe(PROBE_KEY, strlen(PROBE_KEY), PROBE_VAL, strlen(PROBE_VAL));
	probing = false;
	CHECK(!inflight.active, "the probe's append left a write not flushed");
	check_restart_tried();
	CHECK(!restart_due || rx.fault, "a restart due after the replay, and the append did not try it");
	if (!why) {
		CHECK(probe_committed, "the append after the replay answers OK, its record not durable");
		return;
	}
	CHECK(!probe_committed, "the append after the replay answers %s, its record durable", why);
	if (!strcmp(why, "io_error"))
		CHECK(rx.fault, "the append after the replay answers io_error, no write or flush failed");
	else
		CHECK(!strcmp(why, "disk_full") && !probe_written && !restart_due &&
			      disk_sectors - log_next <= 1,
		      "the append after the replay answers %s (the log's next sector %llu of %llu)", why,
		      (unsigned long long)log_next, (unsigned long long)disk_sectors);
}

/* What an input allocated goes with it: libFuzzer looks for leaks in an
 * input that mallocs more than it frees. */
static void free_input(void)
{
	for (size_t i = 0; i < n_xs; i++)
		free(xs[i].pkt);
	n_xs = xs_first = 0;
	free(disk);
	disk = NULL;
}

static void reset_input(void)
{
	free_input();
	announced.n = hosts.n = 0;
	n_tcp_peers = 0;
	hq_head = hq_n = 0;
	n_writes = n_flushes = 0;
	n_committed = n_table = n_tail = 0;
	tail_sectors = 0;
	log_next = log_seq = 1;
	last_sector = 0;
	last_flushall = false;
	restart_due = restart_untried = restart_on_disk = false;
	rst = RST_NONE;
	model_gets = model_puts = 0;
	kvs_entries = kvs_data = kvs_data_bound = 0;
	resp_touched = false;
	memset(&inflight, 0, sizeof(inflight));
	memset(&rx, 0, sizeof(rx));
	steps_left = steps_used = 0;
	booting = true;
	announces = 0;
	/* The boot's replay starts the run. */
	replaying = true;
	replay_reads = replays_done = 0;
	after_input = probing = false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	if (n < 2)
		return 0;
	verbose = getenv("FUZZ_GUEST_NET_VERBOSE") != NULL;
	reset_input();
	in = data;
	in_len = n;
	in_pos = 2;
	disk_sectors = 2 + data[0] % 64;
	flags = data[0] & (F_NO_ARP | F_SEALED);
	faults = data[1];
	if (!(disk = calloc(disk_sectors, SECTOR)))
		abort();

	host_kv_run();

	CHECK(replays_done == 1, "the guest did not replay the log at boot (reads, then a flush)");
	CHECK(!booting || announces == 1, "%u gratuitous ARPs at boot, want 1", announces);
	CHECK(in_len - in_pos < 2 && !rx.active && !hq_n && !steps_left,
	      "the guest idled with frames left (at %zu of %zu, %zu ARP answers, %u steps)", in_pos, in_len,
	      hq_n, steps_left);
	check_all_sent();
	check_restart_tried();
	after_input = true;
	check_replay("first");
	check_probe();
	check_replay("second");
	free_input();
	return 0;
}
