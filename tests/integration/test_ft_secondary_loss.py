#!/usr/bin/env python3
"""Killing the secondary: the primary keeps serving (within 1 s), reports
UNPROTECTED and releases what it held; a new `migrate -d -k` protects it
again to a fresh secondary, which then takes over on the next primary
failure with nothing acknowledged lost."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import check, main, require_kvm  # noqa: E402
from drill import Client, Node, Topology, close_all, make_image, wait_ready  # noqa: E402


def test(work):
    require_kvm()
    with Topology() as topo:
        img = make_image(os.path.join(work, "shared.img"))
        client = Client(topo, work)
        nodes = []
        try:
            a = Node(topo, "A", work, "g0", img, "shared", False)
            nodes.append(a)
            wait_ready(a)
            b = Node(topo, "B", work, "g0", img, "shared", True)
            nodes.append(b)
            a.protect_to("B")
            client.start_load(seconds=3600, keys=100)
            time.sleep(0.8)
            t = time.monotonic()
            b.kill()
            back = client.probe_until_answer(t)
            st = a.wait_state(("unprotected",), 5)
            gone = time.monotonic() - t
            print("secondary killed: primary answered after %.0f ms, unprotected after %.0f ms (%s)"
                  % (back * 1000, gone * 1000, st["last_error"]))
            check(back < 1.0, "primary took %.0f ms to serve after losing its secondary" % (back * 1000))
            check(st["held_outputs"] == 0, "outputs still held while unprotected: %s" % st)
            time.sleep(0.5)   # unprotected service continues
            b2 = Node(topo, "B", work, "g1", img, "shared", True)
            nodes.append(b2)
            st = a.protect_to("B")
            print("re-protected: sync %d ms, epoch %d" % (st["sync_ms"], st["epoch"]))
            time.sleep(0.8)
            t = time.monotonic()
            a.kill()
            took = client.probe_until_answer(t)
            fo = b2.wait_state(("failed-over",), 10)
            print("primary killed: new secondary resumed checkpoint %d, answered after %.0f ms"
                  % (fo["committed_epoch"], took * 1000))
            s, v = client.finish()
            print("verify: %d keys, %d lost" % (v["checked"], v["lost"]))
        finally:
            close_all(client, nodes)


main(test)
