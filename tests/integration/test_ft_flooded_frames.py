#!/usr/bin/env python3
"""Frames the LAN delivers to the secondary's host. A bridge that does not
know (or has forgotten) where the guest's MAC lives floods its frames to
every port, the secondary's tap included; the primary's guest processes
them, and the secondary's tap keeps its copies. If the secondary delivered
them to its guest after a failover, old requests would run a second time,
late: an old PUT would undo newer acknowledged writes (what the cluster
drills saw). The secondary must drop what reached its tap before it took
over.

The test puts such frames on the secondary's host bridge by hand (from the
LAN side, so the host bridge floods them to the tap, as a real switch
would): PUT requests for keys the client then overwrites, with values
nobody acknowledged. After the failover no key may hold such a value, and
nothing acknowledged may be lost."""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import GUEST_IP, KV_PORT, check, main, require_kvm, sh  # noqa: E402
from drill import GUEST_MAC, Client, Node, Topology, close_all, make_image, wait_ready  # noqa: E402

FRAMES = 20

SENDER = r"""
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
dst = bytes.fromhex(sys.argv[2].replace(":", ""))
src = bytes.fromhex("02ab00000001")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for i, payload in enumerate(sys.argv[5:]):
    data = payload.encode()
    udp = struct.pack("!HHHH", 40000 + i, int(sys.argv[4]), 8 + len(data), 0) + data
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                     socket.inet_aton("10.0.0.1"), socket.inet_aton(sys.argv[3]))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s.send(dst + src + b"\x08\x00" + ip + udp)
"""


def failover(old, new, client):
    t = time.monotonic()
    old.kill()
    new.ctl("cont")
    new.wait_state(("failed-over",), 10)
    return client.probe_until_answer(t)


def test(work):
    require_kvm()
    with Topology() as topo:
        img = make_image(os.path.join(work, "shared.img"))
        client = Client(topo, work)
        nodes = []

        def secondary(h, tag):
            n = Node(topo, h, work, tag, img, "shared", False,
                     extra=["--incoming", "tcp:%s:4444" % ("10.99.0.1" if h == "A" else "10.99.0.2")])
            nodes.append(n)
            return n
        try:
            a = Node(topo, "A", work, "g0", img, "shared", False)
            nodes.append(a)
            wait_ready(a)
            b = secondary("B", "g1")
            a.protect_to("B")
            # keys written once and acknowledged: f0..f19 = good
            for i in range(FRAMES):
                check(client.run("put", "f%d" % i, "good").returncode == 0, "PUT f%d" % i)
            client.start_load(seconds=3600, keys=50)
            time.sleep(1.0)
            # The guest runs on B for a while: B's host bridge learns that the
            # guest's MAC is behind its tap (and remembers it, ageing 300 s).
            failover(a, b, client)
            a2 = secondary("A", "g2")
            b.protect_to("A")
            time.sleep(1.0)
            failover(b, a2, client)
            b2 = secondary("B", "g3")
            a2.protect_to("B")
            # Requests for the guest's MAC arriving at host B (a LAN that
            # still sends B the guest's traffic): B's bridge forwards them to
            # the tap of B's VMM, a secondary now. Values nobody acknowledged.
            # (B's bridge learnt from the RARP of the last failover that the
            # MAC is behind its LAN port; a switch with a stale entry, or one
            # that floods, delivers anyway: say so to B's bridge.)
            # (after the new primary's announce rounds, which last 1.55 s
            # from its failover: a later RARP would move the entry back)
            time.sleep(1.6)
            sh("bridge", "-n", topo.ns["B"], "fdb", "replace", GUEST_MAC, "dev", "tapB", "master", "static")
            payloads = ["PUT flood%d f%d flooded-%d" % (i, i, i) for i in range(FRAMES)]
            sh("ip", "netns", "exec", topo.ns["lan"], "python3", "-c", SENDER, "lanB", GUEST_MAC, GUEST_IP,
               str(KV_PORT), *payloads)
            time.sleep(1.0)
            sh("bridge", "-n", topo.ns["B"], "fdb", "del", GUEST_MAC, "dev", "tapB", "master")
            took = failover(a2, b2, client)
            dropped = [l for l in b2.errors().splitlines() if "dropped" in l]
            print("failover to the host that got the frames: first answer after %.0f ms; %s"
                  % (took * 1000, dropped[-1] if dropped else "the secondary dropped them while it waited"))
            time.sleep(0.5)
            st, v = client.finish()
            flooded = []
            for i in range(FRAMES):
                r = client.run("get", "f%d" % i)
                if r.stdout.strip() != "good":
                    flooded.append((i, r.stdout.strip()))
            print("client: %d PUTs acknowledged, %d lost; keys that lost their acknowledged value to a "
                  "flooded request: %d" % (st["puts_acked"], v["lost"], len(flooded)))
            check(not flooded, "requests that reached the secondary's tap ran after the failover: %s" % flooded)
        finally:
            close_all(client, nodes)


main(test)
