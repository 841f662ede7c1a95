#!/usr/bin/env python3
"""Seeds for fuzz_guest_net: the frames a host on the guest's link sends to
workload=kv at 10.0.0.2/24 (kv on UDP 7777, RESP on TCP 6379), as Linux,
ftvm-kv and redis-cli send them: ARP who-has for the guest first
(broadcast, unpadded from a tap and padded to 60 bytes; it also tells
lwIP the client's MAC, so its answers need no ARP of their own), ping
(ICMP echo, 56 bytes of data), kv requests in UDP with a checksum, as
tools/kvclient formats them (reqid <nonce>.<seq hex>.<attempt>, keys k<i>,
values v<nonce>-<op>.<i>), the malformed requests of
tests/integration/test_kv_requests.py, a full log and failed writes and
flushes, frames lwIP drops (fragments, bad checksums, another IP) or
answers with ICMP unreachable or a TCP RST (closed ports, other
protocols), RESP sessions over TCP (lwIP's first ISN is 6510): SET, MSET,
INCR, DEL, FLUSHALL/FLUSHDB, keys and values up to 512 bytes, empty ones
and bytes the kv protocol cannot carry (its GET answers unrepresentable),
MSETs of several sectors, FLUSHALL on a full log (the sector kept for it)
and with either write of its restart of the log failing, or its flush,
the input ending with a restart due, torn writes over an older failed
batch (which only the batch tag tells apart); sessions where the guest must
resolve the client itself (the harness answers its ARP requests) or where
nobody answers ARP, and time passing (ARP entries expiring, TCP timers).

Layout (fuzz/fuzz_guest_net.c): byte 0 the disk's size, 2 + (b % 64)
sectors (the log: sectors 1 on, the last kept for a FLUSHALL record; a kv
PUT takes a sector), bit 6 nobody answers the guest's ARP requests, bit 7
the harness seals the checksums; byte 1 the fault bits (write w fails if
bit w % 4, torn: its first (w / 4) % n of n sectors written; flush f, of
those after a write, if bit 4 + f % 4); then per record a big-endian u16
length and the frame, or a length from 0xf000: (length - 0xefff) steps of
250 ms."""
import os
import struct
import sys

GUEST_MAC = bytes.fromhex("525400123456")
HOST_MAC = bytes.fromhex("525400abcd01")
OTHER_MAC = bytes.fromhex("02000000aa02")
BCAST = b"\xff" * 6
HOST_IP = bytes([10, 0, 0, 1])
GUEST_IP = bytes([10, 0, 0, 2])
OTHER_IP = bytes([10, 0, 0, 3])
PORT = 7777
RESP_PORT = 6379
NONCE = "1f2e3d4c"


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def eth(payload, dst=GUEST_MAC, src=HOST_MAC, etype=0x0800, pad=False):
    f = dst + src + struct.pack("!H", etype) + payload
    if pad and len(f) < 60:
        f += b"\0" * (60 - len(f))
    return f


def arp_request(tpa=GUEST_IP, spa=HOST_IP, sha=HOST_MAC, pad=False, dst=BCAST):
    a = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + sha + spa + b"\0" * 6 + tpa
    return eth(a, dst=dst, src=sha, etype=0x0806, pad=pad)


def ipv4(proto, payload, src=HOST_IP, dst=GUEST_IP, ident=0x1234, frag=0x4000, options=b""):
    ihl = 5 + len(options) // 4
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(payload), ident, frag, 64, proto, 0,
                    src, dst) + options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def udp(data, sport=40001, dport=PORT, src=HOST_IP, dst=GUEST_IP, with_csum=True):
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    if with_csum:
        c = csum(src + dst + struct.pack("!BBH", 0, 17, len(u)) + u) or 0xffff
        u = u[:6] + struct.pack("!H", c) + u[8:]
    return u


def kv(req, sport=40001, **kw):
    if isinstance(req, str):
        req = req.encode("utf-8")
    return eth(ipv4(17, udp(req, sport=sport)), **kw)


def ping(seq=1, ident=0x4242, data=None):
    data = data if data is not None else struct.pack("!Q", 1700000000 + seq) + bytes(range(0x10, 0x38))
    m = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
    return eth(ipv4(1, m, ident=0x100 + seq))


def reqid(seq, attempt=0):
    return "%s.%x.%d" % (NONCE, seq, attempt)


def tcp(sport, dport, seq, ack, flags, data=b"", src=HOST_IP, dst=GUEST_IP, options=b""):
    """A TCP segment (flags: F S R P A as letters) in a frame."""
    bits = sum(v for k, v in (("F", 1), ("S", 2), ("R", 4), ("P", 8), ("A", 16)) if k in flags)
    off = (20 + len(options)) // 4
    t = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, bits, 64240, 0, 0) + options + data
    c = csum(src + dst + struct.pack("!BBH", 0, 6, len(t)) + t)
    t = t[:16] + struct.pack("!H", c) + t[18:]
    return eth(ipv4(6, t, src=src, dst=dst))


ISN = 6510  # lwIP 2.1.3's first initial sequence number (tcp_next_iss), tcp_ticks 0


SEG_MAX = 1400  # of a command's bytes in one segment (the frame: at most 1524 bytes)


def resp_session(commands, sport=45000, seq=1000):
    """A redis-cli connection to port 6379: handshake, one segment per
    command (inline or multibulk bytes; a longer one in pieces of SEG_MAX),
    the client's FIN."""
    mss = b"\x02\x04\x05\xb4"
    f = [tcp(sport, RESP_PORT, seq, 0, "S", options=mss)]
    seq += 1
    f.append(tcp(sport, RESP_PORT, seq, ISN + 1, "A"))
    for c in commands:
        for at in range(0, len(c), SEG_MAX):
            piece = c[at:at + SEG_MAX]
            f.append(tcp(sport, RESP_PORT, seq, ISN + 1, "PA", piece))
            seq += len(piece)
    f.append(tcp(sport, RESP_PORT, seq, ISN + 1, "FA"))
    return f


def multibulk(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def time_passes(ms):
    """Records of 250 ms steps, each at most 4096 of them."""
    steps = (ms + 249) // 250
    out = []
    while steps:
        n = min(steps, 4096)
        out.append(0xefff + n)
        steps -= n
    return out


def seed(frames, sectors=64, faults=0, no_arp=False, sealed=False):
    out = bytes([((sectors - 2) % 64) | (0x40 if no_arp else 0) | (0x80 if sealed else 0), faults])
    for f in frames:
        if isinstance(f, int):
            out += struct.pack("!H", f)
        else:
            out += struct.pack("!H", len(f)) + f
    return out


def main(out):
    os.makedirs(out, exist_ok=True)
    s = {}
    arp = arp_request()
    s["boot"] = seed([])
    s["arp"] = seed([arp_request(), arp_request(pad=True), arp_request(dst=GUEST_MAC),
                     arp_request(tpa=OTHER_IP), arp_request(spa=b"\0\0\0\0"),  # a probe (RFC 5227)
                     arp_request(sha=OTHER_MAC, spa=OTHER_IP)])
    s["ping"] = seed([arp, ping(1), ping(2), ping(3, data=b"")])
    # What ftvm-kv does: PUTs, GETs of written and unwritten keys, a retry.
    session = [arp]
    for i in range(6):
        session.append(kv("PUT %s k%d v%s-%d.%d" % (reqid(2 * i), i, NONCE, i, i), sport=40001 + i))
        session.append(kv("GET %s k%d" % (reqid(2 * i + 1), i)))
    session += [kv("GET %s k99" % reqid(20)), kv("PUT %s k1 v%s-9.1" % (reqid(21, 1), NONCE)),
                kv("PUT %s k1 v%s-9.1" % (reqid(21, 2), NONCE)), kv("GET %s k1" % reqid(22)),
                kv("TIME %s" % reqid(23)), kv("STAT %s" % reqid(24)), kv("STAT st1\n")]
    s["session"] = seed(session)
    s["session-sealed"] = seed(session, sealed=True)
    # No ARP from the client first: lwIP asks for it, the harness answers,
    # and the queued answer goes out then.
    s["put-get"] = seed([kv("PUT r1 key1 val1"), kv("GET g1 key1"), kv("GET g2 nokey"),
                         kv("TIME t1"), kv("STAT s1")])
    s["put-get-sealed"] = seed([kv("PUT r1 key1 val1"), kv("GET g1 key1"), kv("TIME t1"), kv("STAT s1")],
                               sealed=True)
    # Nobody answers lwIP's ARP requests: the answers queue (3 at most,
    # ARP_QUEUE_LEN, the oldest dropped) until the client's own ARP request.
    s["no-arp"] = seed([kv("PUT n1 k1 v1"), kv("GET n2 k1"), kv("PUT n3 k2 v2"), kv("GET n4 k2"),
                        kv("STAT n5"), arp, kv("GET n6 k1")], no_arp=True)
    s["no-arp-expire"] = seed([kv("GET e1 k1"), ping(1)] + time_passes(6000) + [arp, kv("GET e2 k1")],
                              no_arp=True)
    # The client's ARP entry expires (ARP_MAXAGE, 300 s) and is asked again.
    s["arp-expire"] = seed([arp, kv("PUT x1 k1 v1")] + time_passes(280000) + [kv("GET x2 k1")] +
                           time_passes(25000) + [kv("GET x3 k1")])
    # tests/integration/test_kv_requests.py
    # The first: a reqid that ends exactly at the end of the request
    # buffer; its too_long answer read one byte past it (guest printf's
    # %.*s looked at str[prec]; fixed in guest/lib/printf.c).
    bad = ["A" * 135 + " " + "B" * 32, "FOO 1 a", "PUT 2 a", "PUT 3 a b c", "GET 4", "PUT 5 bad/key v", "PUT 6 k " + "v" * 65,
           "PUT 7 " + "k" * 65 + " v", "PUT bad!id k v", "", "GET 9 k\xff", "put 10 k v", "TIME",
           "PUT 11  b", "PUT %s %s %s" % ("i" * 32, "k" * 64, "v" * 64),
           "PUT %s %s %s\n" % ("i" * 32, "k" * 64, "v" * 64), "PUT %s k v" % ("i" * 33),
           "GET 12 " + "k" * 200, "STAT 13 extra", "GET 14 k\r\n", "GET 15 k\n\n"]
    for i, r in enumerate(bad):
        s["bad-%02d" % i] = seed([arp, kv(r)])
    s["bad-all"] = seed([arp] + [kv(r, sport=41000 + i) for i, r in enumerate(bad)])
    s["bad-all-sealed"] = seed([arp] + [kv(r, sport=41000 + i) for i, r in enumerate(bad)], sealed=True)
    # The log: full after one record (3 sectors: its last is kept for
    # FLUSHALL), no room at all (2); a failed write, then a failed flush.
    s["disk-full"] = seed([kv("PUT a1 k1 v1"), kv("PUT a2 k2 v2"), kv("PUT a3 k1 v3"), kv("GET a4 k1"),
                           kv("STAT a5")], sectors=3)
    s["disk-none"] = seed([kv("PUT a1 k1 v1"), kv("GET a2 k1"), kv("STAT a3")], sectors=2)
    s["write-fails"] = seed([arp, kv("PUT w1 k1 v1"), kv("PUT w2 k1 v1"), kv("GET w3 k1")], faults=0x01)
    s["flush-fails"] = seed([arp, kv("PUT f1 k1 v1"), kv("PUT f2 k2 v2"), kv("GET f3 k1"), kv("STAT f4")],
                            faults=0x20)
    s["flush-fails-last"] = seed([arp, kv("PUT f1 k1 v1"), kv("PUT f2 k2 v2")], faults=0x20)
    # Frames lwIP drops, or answers with ICMP or a reset, then one to answer
    # so that the stack is seen to go on.
    dropped = [
        arp,
        eth(ipv4(17, udp(b"GET x1 k"), frag=0x2000)),           # first fragment
        eth(ipv4(17, udp(b"GET x2 k"), frag=0x0001)),           # a later one
        eth(ipv4(17, udp(b"GET x3 k", dport=7778))),            # port unreachable
        eth(ipv4(17, udp(b"GET x4 k", dst=OTHER_IP), dst=OTHER_IP)),  # another IP
        eth(ipv4(17, udp(b"GET x6 k"))[:10] + b"\0\0" + ipv4(17, udp(b"GET x6 k"))[12:]),
        eth(ipv4(6, b"\0" * 20)),                               # TCP, bad checksum
        eth(ipv4(47, b"\0" * 4)),                               # protocol unreachable
        eth(ipv4(99, b"")),                                     # ... quoting less than 28 bytes
        eth(b"\0" * 46, etype=0x86dd),                          # IPv6
        eth(ipv4(1, b"\x00\x00\xff\xff\0\0\0\0")),              # echo reply
        eth(ipv4(17, udp(b"GET x8 k", dst=b"\xff\xff\xff\xff", dport=9), dst=b"\xff\xff\xff\xff")),
    ]
    bad_udp = udp(b"GET x7 k")
    dropped.append(eth(ipv4(17, bad_udp[:6] + bytes([bad_udp[6] ^ 1, bad_udp[7]]) + bad_udp[8:])))
    s["dropped"] = seed(dropped + [kv("GET y1 k")])
    # Accepted though unusual: no UDP checksum, IP options, Ethernet padding,
    # broadcast and other destination MACs (lwIP has no MAC filter), the
    # subnet's broadcast address.
    s["unusual"] = seed([
        arp,
        eth(ipv4(17, udp(b"PUT u1 k v", with_csum=False))),
        eth(ipv4(17, udp(b"GET u2 k"), options=b"\x01\x01\x01\x00")),
        eth(ipv4(17, udp(b"STAT u3")), pad=True),
        kv("GET u4 k", dst=BCAST),
        kv("TIME u5", src=OTHER_MAC),
        kv("GET x5 k", dst=OTHER_MAC),
        eth(ipv4(17, udp(b"GET u6 k", dst=bytes([10, 0, 0, 255])), dst=bytes([10, 0, 0, 255])), dst=BCAST),
    ])
    # TCP to closed ports: SYN, a stray ACK, data with FIN, a RST (no answer).
    s["tcp-closed"] = seed([arp, tcp(40100, 80, 5000, 0, "S"), tcp(40101, 22, 7, 99, "A"),
                            tcp(40102, 8080, 1, 2, "PAF", b"hello"), tcp(40103, 80, 1, 0, "R"),
                            tcp(40104, 6380, 1, 0, "S")])
    # RESP (redis-cli): PING, SET, GET, MSET, MGET, INCR, DBSIZE, then the
    # kv protocol sees RESP's writes.
    cmds = [multibulk("PING"), multibulk("SET", "rk1", "rv1"), multibulk("GET", "rk1"),
            b"MSET mk1 mv1 mk2 mv2 mk3 mv3\r\n", multibulk("MGET", "mk1", "rk1", "nokey"),
            multibulk("INCR", "ctr"), multibulk("INCRBY", "ctr", "41"), b"DBSIZE\r\n",
            multibulk("EXISTS", "mk2"), b"QUIT\r\n"]
    s["resp"] = seed([arp] + resp_session(cmds) + [kv("GET r1 rk1"), kv("GET r2 mk3"), kv("STAT r3")])
    s["resp-sealed"] = seed([arp] + resp_session(cmds) + [kv("GET r1 ctr"), kv("STAT r3")], sealed=True)
    # Two connections, time passing (delayed ACKs, retransmissions,
    # TIME_WAIT) and no FIN from the second.
    c2 = resp_session([multibulk("SET", "a", "1"), multibulk("GET", "a")], sport=45001, seq=90000)[:-1]
    s["resp-timers"] = seed([arp] + resp_session([b"PING\r\n"], sport=45002)[:-1] + c2 +
                            time_passes(2000) + [kv("GET t1 a")] + time_passes(130000) +
                            [kv("STAT t2")], sealed=True)
    # DEL and FLUSHALL: a batch of DEL records for the keys there (once
    # each), FLUSHALL's record at the log's end and the log started over,
    # FLUSHDB ASYNC; inline and pipelined (one segment) too.
    dels = [multibulk("SET", "a", "1"), multibulk("SET", "b", "2"), b"SET c 3\r\n",
            multibulk("DEL", "a", "b", "nokey", "a"), multibulk("GET", "a"), multibulk("DEL", "nokey"),
            multibulk("FLUSHALL"), multibulk("SET", "d", "4"), multibulk("FLUSHDB", "ASYNC"),
            multibulk("SET", "e", "5"), b"SET f 6\r\nDEL f\r\nFLUSHALL SYNC\r\nSET g 7\r\n",
            multibulk("FLUSHALL", "NOW"), b"QUIT\r\n"]
    s["resp-del-flushall"] = seed([arp] + resp_session(dels) + [kv("GET d1 a"), kv("GET d2 c"), kv("GET d3 g"),
                                                                kv("PUT d4 h 8"), kv("STAT d5")])
    s["resp-del-flushall-sealed"] = seed([arp] + resp_session(dels) + [kv("GET d1 g"), kv("STAT d5")],
                                         sealed=True)
    # Keys and values of 0..512 bytes, any bytes: the kv protocol's GET
    # answers what it can carry, else unrepresentable.
    k64, v64 = "k" * 64, "v" * 64
    big = [multibulk("SET", "K" * 512, "V" * 512), multibulk("SET", "empty", ""), multibulk("SET", "sp", "a b"),
           multibulk("SET", "bin", b"\x00\xff\r\n"), multibulk("SET", "long", "x" * 65),
           multibulk("SET", k64, v64), multibulk("SET", "", "emptykey"), multibulk("GET", "K" * 512),
           multibulk("MSET", "m1", "y" * 300, "m2", "", "m3", "z" * 512), multibulk("DEL", "K" * 512, ""),
           b"QUIT\r\n"]
    s["resp-long"] = seed([arp] + resp_session(big) + [kv("GET l1 empty"), kv("GET l2 sp"), kv("GET l3 bin"),
                                                       kv("GET l4 long"), kv("GET l5 " + k64), kv("GET l6 m1"),
                                                       kv("PUT l7 long short"), kv("GET l8 long"), kv("STAT l9")])
    # An MSET of three sectors whose flush fails, then a shorter record at
    # the same place: replay must not take the rest of the failed batch
    # (kvlog-failed-mset-resurfaces in the records of before).
    mset3 = multibulk("MSET", "f1", "a" * 400, "f2", "b" * 400, "f3", "c" * 400)
    s["mset-fails-then-put"] = seed([arp] + resp_session([mset3])[:-1] +
                                    [kv("PUT p1 f2 new"), kv("GET p2 f2"), kv("GET p3 f3")], faults=0x10)
    # Batches of many sectors: 40 pairs of ~500 bytes (41 sectors; the
    # command, in 15 segments, within the connection's 23,360-byte input
    # buffer), then 16 of them again.
    many = multibulk("MSET", *[x for i in range(40) for x in ("m%d" % i, "w" * 480)])
    some = multibulk("MSET", *[x for i in range(16) for x in ("m%d" % i, "u" * 490)])
    s["mset-sectors"] = seed([arp] + resp_session([many, some, multibulk("DEL", "m3", "m4")])[:-1] +
                             [kv("GET s1 m3"), kv("PUT s2 m5 q"), kv("GET s3 m5"), kv("STAT s4")])
    # FLUSHALL on a full log (4 sectors: 1 and 2 for records, 3 kept for
    # the FLUSHALL record), then the log starts over.
    s["flushall-full"] = seed([arp, kv("PUT g1 k1 v1"), kv("PUT g2 k2 v2"), kv("PUT g3 k3 v3")] +
                              resp_session([multibulk("FLUSHALL")])[:-1] +
                              [kv("PUT g4 k4 v4"), kv("GET g5 k1"), kv("GET g6 k4"), kv("PUT g7 k5 v5"),
                               kv("STAT g8")], sectors=4)
    s["flushall-one-sector"] = seed([arp, kv("PUT o1 k1 v1")] + resp_session([multibulk("FLUSHALL"),
                                                                             multibulk("FLUSHALL")])[:-1] +
                                    [kv("STAT o2")], sectors=2)
    # The restart after FLUSHALL fails: its write (the third), or its
    # flush; the next write tries it again first.
    fl = resp_session([multibulk("SET", "a", "1"), multibulk("FLUSHALL")])[:-1]
    s["flushall-restart-write-fails"] = seed([arp] + fl + [kv("PUT r1 b 2"), kv("GET r2 a"), kv("GET r3 b"),
                                                           kv("PUT r4 c 3"), kv("STAT r5")], faults=0x04)
    s["flushall-restart-flush-fails"] = seed([arp] + fl + [kv("GET r1 a"), kv("PUT r2 b 2"), kv("GET r3 b")],
                                             faults=0x40)
    s["flushall-restart-fails-last"] = seed([arp] + fl, faults=0x40)
    # The restart's second write (sector 2 zeroed) fails, or its flush:
    # sector 1 already holds the new start, the restart stays due; then
    # the same with the input ending there (the replay at the end finds
    # the FLUSHALL record at sector 1 alone).
    s["flushall-restart-zero-fails"] = seed([arp] + fl + [kv("PUT z1 b 2"), kv("GET z2 a"), kv("GET z3 b")],
                                            faults=0x08)
    s["flushall-restart-zero-flush-fails"] = seed([arp] + fl + [kv("GET z1 a"), kv("PUT z2 b 2"),
                                                                kv("GET z3 b")], faults=0x80)
    s["flushall-restart-zero-fails-last"] = seed([arp] + fl, faults=0x08)
    # The input ends with the restart never written (its write fails), or
    # with the FLUSHALL record's own flush failed: the replay at the end
    # finds a FLUSHALL past sector 1 and the next write (the harness's
    # probe) starts the log over first.
    s["flushall-restart-pending-at-replay"] = seed([arp] + fl, faults=0x04)
    s["flushall-unflushed-at-replay"] = seed([arp] + fl, faults=0x20)
    # Torn writes (a failed write w keeps its first (w / 4) % n sectors).
    # An MSET of three one-sector records whose flush fails, then another
    # at the same place torn after two sectors: sector 3 is the first
    # one's, numbered on, and only the batch tag tells them apart.
    zy = multibulk("MSET", "z1", "y" * 478, "z2", "y" * 478, "z3", "y" * 478)
    zx = multibulk("MSET", "z1", "x" * 478, "z2", "x" * 478, "z3", "x" * 478)
    fill = [kv("PUT t%d k%d v%d" % (i, i, i), sport=42000 + i) for i in range(9)]
    s["torn-mset-over-failed-mset"] = seed([arp] + fill + resp_session([zy, zx])[:-1], faults=0x84)
    # An MSET of three one-sector records whose flush fails, a PUT over
    # its first sector, then a PUT torn after its record (its zeroed
    # sector not written): the sector after is the MSET's last record,
    # numbered on, and only its tag says it is from inside a batch.
    s["torn-put-before-record-inside-batch"] = seed(
        [arp, kv("PUT a0 k0 v0"), kv("PUT a1 k1 v1"), kv("PUT a2 k1 v1")] + resp_session([zy])[:-1] +
        [kv("PUT b1 kb vb"), kv("PUT c1 kc vc"), kv("GET c2 kc")], faults=0x42)
    # A load: 40 PUTs over 8 keys, a GET after each.
    load = [arp]
    for i in range(40):
        load.append(kv("PUT %s k%d v%s-%d.%d" % (reqid(100 + 2 * i), i % 8, NONCE, i, i % 8)))
        load.append(kv("GET %s k%d" % (reqid(101 + 2 * i), (i * 3) % 8)))
    s["load"] = seed(load)
    for name, data in s.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "corpus-guest_net")
