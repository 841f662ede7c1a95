#!/usr/bin/env python3
"""Seeds for fuzz_guest_net: the frames a host on the guest's link sends to
workload=kv at 10.0.0.2/24 (port 7777), as Linux and ftvm-kv send them:
ARP who-has for the guest (broadcast, unpadded from a tap and padded to 60
bytes), ping (ICMP echo, 56 bytes of data), kv requests in UDP with a
checksum, as tools/kvclient formats them (reqid <nonce>.<seq hex>.<attempt>,
keys k<i>, values v<nonce>-<op>.<i>), the malformed requests of
tests/integration/test_kv_requests.py, a full log and failed writes and
flushes, and frames the stack must drop (fragments, other ports, bad
checksums, frames for another MAC or IP).

Layout (fuzz/fuzz_guest_net.c): byte 0 the disk's size, 2 + (b % 64)
sectors; byte 1 the fault bits (write w fails if bit w % 4, flush f if bit
4 + f % 4); then per frame a big-endian u16 length and the frame."""
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


def seed(frames, sectors=64, faults=0):
    out = bytes([(sectors - 2) % 64, faults])
    for f in frames:
        out += struct.pack("!H", len(f)) + f
    return out


def main(out):
    os.makedirs(out, exist_ok=True)
    s = {}
    s["boot"] = seed([])
    s["arp"] = seed([arp_request(), arp_request(pad=True), arp_request(dst=GUEST_MAC),
                     arp_request(tpa=OTHER_IP)])
    s["ping"] = seed([arp_request(), ping(1), ping(2), ping(3, data=b"")])
    # What ftvm-kv does: PUTs, GETs of written and unwritten keys, a retry.
    session = [arp_request()]
    for i in range(6):
        session.append(kv("PUT %s k%d v%s-%d.%d" % (reqid(2 * i), i, NONCE, i, i), sport=40001 + i))
        session.append(kv("GET %s k%d" % (reqid(2 * i + 1), i)))
    session += [kv("GET %s k99" % reqid(20)), kv("PUT %s k1 v%s-9.1" % (reqid(21, 1), NONCE)),
                kv("PUT %s k1 v%s-9.1" % (reqid(21, 2), NONCE)), kv("GET %s k1" % reqid(22)),
                kv("TIME %s" % reqid(23)), kv("STAT %s" % reqid(24)), kv("STAT st1\n")]
    s["session"] = seed(session)
    s["put-get"] = seed([kv("PUT r1 key1 val1"), kv("GET g1 key1"), kv("GET g2 nokey"),
                         kv("TIME t1"), kv("STAT s1")])
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
        s["bad-%02d" % i] = seed([kv(r)])
    s["bad-all"] = seed([kv(r, sport=41000 + i) for i, r in enumerate(bad)])
    # The log: full after one record; a failed write, then a failed flush.
    s["disk-full"] = seed([kv("PUT a1 k1 v1"), kv("PUT a2 k2 v2"), kv("PUT a3 k1 v3"), kv("GET a4 k1"),
                           kv("STAT a5")], sectors=2)
    s["write-fails"] = seed([kv("PUT w1 k1 v1"), kv("PUT w2 k1 v1"), kv("GET w3 k1")], faults=0x01)
    s["flush-fails"] = seed([kv("PUT f1 k1 v1"), kv("PUT f2 k2 v2"), kv("GET f3 k1"), kv("STAT f4")],
                            faults=0x20)
    s["flush-fails-last"] = seed([kv("PUT f1 k1 v1"), kv("PUT f2 k2 v2")], faults=0x20)
    # Frames to drop, then one to answer so that the stack is seen to go on.
    dropped = [
        eth(ipv4(17, udp(b"GET x1 k"), frag=0x2000)),           # first fragment
        eth(ipv4(17, udp(b"GET x2 k"), frag=0x0001)),           # a later one
        eth(ipv4(17, udp(b"GET x3 k", dport=7778))),            # no one there
        eth(ipv4(17, udp(b"GET x4 k", dst=OTHER_IP), dst=OTHER_IP)),  # another IP
        kv("GET x5 k", dst=OTHER_MAC),
        eth(ipv4(17, udp(b"GET x6 k"))[:10] + b"\0\0" + ipv4(17, udp(b"GET x6 k"))[12:]),
        eth(ipv4(6, b"\0" * 20)),                               # TCP
        eth(b"\0" * 46, etype=0x86dd),                          # IPv6
        eth(ipv4(1, b"\x00\x00\xff\xff\0\0\0\0")),              # echo reply
    ]
    bad_udp = udp(b"GET x7 k")
    dropped.append(eth(ipv4(17, bad_udp[:6] + bytes([bad_udp[6] ^ 1, bad_udp[7]]) + bad_udp[8:])))
    s["dropped"] = seed(dropped + [kv("GET y1 k")])
    # Accepted though unusual: no UDP checksum, IP options, Ethernet padding,
    # a broadcast destination MAC.
    s["unusual"] = seed([
        eth(ipv4(17, udp(b"PUT u1 k v", with_csum=False))),
        eth(ipv4(17, udp(b"GET u2 k"), options=b"\x01\x01\x01\x00")),
        eth(ipv4(17, udp(b"STAT u3")), pad=True),
        kv("GET u4 k", dst=BCAST),
        kv("TIME u5", src=OTHER_MAC),
    ])
    # A load: 40 PUTs over 8 keys, a GET after each.
    load = [arp_request()]
    for i in range(40):
        load.append(kv("PUT %s k%d v%s-%d.%d" % (reqid(100 + 2 * i), i % 8, NONCE, i, i % 8)))
        load.append(kv("GET %s k%d" % (reqid(101 + 2 * i), (i * 3) % 8)))
    s["load"] = seed(load)
    for name, data in s.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "corpus-guest_net")
