#!/usr/bin/env python3
"""migrate_cancel stops protection cleanly (held output released, the
secondary drops its state and waits, protection can start again), and a
silent link (no FIN: the replication interface goes down) is noticed
through the heartbeat timeout on both sides: the primary goes
unprotected, and a secondary started with --failover-on-peer-loss takes
over on its own."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import check, main, require_kvm  # noqa: E402
from drill import Client, Node, Topology, make_image, wait_ready  # noqa: E402


def test(work):
    require_kvm()
    with Topology() as topo:
        img = make_image(os.path.join(work, "shared.img"))
        client = Client(topo, work)
        nodes = []
        try:
            a = Node(topo, "A", work, "c", img, "shared", False)
            nodes.append(a)
            wait_ready(a)
            b = Node(topo, "B", work, "c", img, "shared", True,
                     extra=["--heartbeat-ms", "50", "--heartbeat-timeout-ms", "300"])
            nodes.append(b)
            a.ctl("migrate_set_parameter", "heartbeat-ms", "50")
            a.ctl("migrate_set_parameter", "heartbeat-timeout-ms", "300")
            a.protect_to("B")
            r = client.run("--json", "load", "--ops", "300", "--keys", "30", "--ack-log", client.acks)
            check(r.returncode == 0, "load: %s" % r.stdout[-300:])

            # migrate_cancel: clean stop, nothing held, the secondary forgets.
            a.ctl("migrate_cancel")
            sa = a.wait_state(("unprotected",), 5)
            sb = b.wait_state(("waiting",), 5)
            print("after migrate_cancel: primary %s (%s), secondary %s, committed %d"
                  % (sa["state"], sa["last_error"], sb["state"], sb["committed_epoch"]))
            check(sa["held_outputs"] == 0, "outputs still held after cancel: %s" % sa)
            check(sb["committed_epoch"] == 0, "secondary kept a state after cancel: %s" % sb)
            r = b.ctl("cont", check_rc=False)
            check("error" in r or r.get("failover") != "done", "cont after cancel must refuse: %s" % r)
            r = client.run("put", "after-cancel", "1")
            check(r.returncode == 0, "unprotected primary does not serve")

            # Protect again, then silence the link.
            st = a.protect_to("B")
            print("protected again: epoch %d" % st["epoch"])
            client.run("put", "k2", "v2")
            t = time.monotonic()
            topo.cut_replication("A")
            sb = b.wait_state(("failed-over",), 5)
            tb = time.monotonic() - t
            sa = a.wait_state(("unprotected",), 5)
            ta = time.monotonic() - t
            print("silent link: secondary failed over after %.0f ms (%s); primary unprotected after %.0f ms (%s)"
                  % (tb * 1000, sb["last_error"], ta * 1000, sa["last_error"]))
            check("heartbeat timeout" in sb["last_error"], "secondary: %s" % sb["last_error"])
            check("heartbeat timeout" in sa["last_error"], "primary: %s" % sa["last_error"])
            check(0.25 < tb < 2.0, "secondary noticed the silence after %.0f ms (timeout 300)" % (tb * 1000))
        finally:
            for n in nodes:
                n.close()


main(test)
