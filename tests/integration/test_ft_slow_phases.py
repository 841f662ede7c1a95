#!/usr/bin/env python3
"""The link stays alive through phases in which a role thread sends
nothing for longer than the heartbeat timeout: heartbeats come from the
link's own thread (ft/link.c).

1. a capture that keeps the guest paused for three heartbeat timeouts (a
   big guest's capture, or a slow read of the sync's last disk blocks):
   the secondary must not declare its primary silent;
2. a commit on the secondary that takes three heartbeat timeouts before
   its ACK (a big checkpoint applied to a slow disk): the primary must not
   declare its secondary silent.
In both, protection holds (the pair stays protected and receiving) and
the kv write that made the checkpoint is acknowledged once it is
committed, and reads back."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import check, main, require_kvm  # noqa: E402
from drill import REP_IP, REP_PORT, Client, Node, Topology, close_all, make_image, wait_ready  # noqa: E402


def slow(work, who, inject):
    with Topology() as topo:
        img = make_image(os.path.join(work, inject + ".img"))
        client = Client(topo, work)
        nodes = []
        try:
            a = Node(topo, "A", work, inject, img, "shared", False)
            nodes.append(a)
            wait_ready(a)
            b = Node(topo, "B", work, inject, img, "shared", False,
                     extra=["--incoming", "tcp:%s:%d" % (REP_IP["B"], REP_PORT)])
            nodes.append(b)
            a.ctl("migrate", "-d", "-k", "tcp:%s:%d" % (REP_IP["B"], REP_PORT))
            a.wait_state(("protected",), 30)
            timeout_ms = a.migrate_info()["heartbeat_timeout_ms"]
            {"primary": a, "secondary": b}[who].ctl("migrate_set_parameter", "x-inject", inject)
            t = time.monotonic()
            r = client.run("--deadline-ms", "10000", "put", "slow", inject)
            took = time.monotonic() - t
            sa, sb = a.migrate_info(), b.migrate_info()
            print("%s %s: the PUT took %.2f s (heartbeat timeout %d ms); primary %s, secondary %s at %d"
                  % (who, inject, took, timeout_ms, sa["state"], sb["state"], sb["committed_epoch"]))
            check(r.returncode == 0, "the PUT was not acknowledged: %s %s" % (r.stdout, r.stderr))
            check(took >= 3 * timeout_ms / 1000 * 0.9, "the %s did not happen (%.2f s)" % (inject, took))
            check(sa["state"] == "protected" and sb["state"] == "receiving",
                  "protection did not survive a %s: primary %s (%s), secondary %s (%s)"
                  % (inject, sa["state"], sa["last_error"], sb["state"], sb["last_error"]))
            g = client.run("--deadline-ms", "5000", "get", "slow")
            check(g.returncode == 0 and g.stdout.strip() == inject, "GET after the %s: %r" % (inject, g.stdout))
        finally:
            close_all(client, nodes)


def test(work):
    require_kvm()
    slow(work, "primary", "slow-capture")
    slow(work, "secondary", "slow-commit")


if __name__ == "__main__":
    main(test)
