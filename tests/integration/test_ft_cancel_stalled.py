#!/usr/bin/env python3
"""migrate_cancel ends protection towards a secondary that has stalled:
its role thread reads nothing more (a hung disk, a stuck process) while
its link thread still sends heartbeats, so the primary never sees it as
lost. Over TLS (PSK), as the drills run.

1. The primary waits for an ACK that never comes (a kv PUT is held):
   migrate_cancel returns within its bound, the CANCEL is reported
   unconfirmed, the primary runs unprotected and the held PUT is
   answered.
2. The primary is blocked in a send: the dirty workload makes checkpoints
   of tens of MiB, uncompressed, and the stalled secondary's socket
   buffers fill. Without shutting the link the send never returns and
   protection never ends. migrate_cancel shuts it: the primary is
   unprotected within the CANCEL's time plus a second, says so in its
   reply, and the guest runs on (its output is no longer held)."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import FTVM_KV, GUEST_IP, KV_PORT, check, main, require_kvm  # noqa: E402
from drill import Client, Node, Topology, close_all, make_image, make_psk, wait_ready  # noqa: E402

PAGES, RATE = 16384, 50000
DIRTY = "workload=dirty pages=%d rate=%d ip=%s/24 port=%d" % (PAGES, RATE, GUEST_IP, KV_PORT)


def stat(topo, timeout=30):
    r = subprocess.run(topo.cmd("C", FTVM_KV, "--server", "%s:%d" % (GUEST_IP, KV_PORT), "--json", "stat"),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    return json.loads([l for l in r.stdout.splitlines() if l.strip()][-1])


def cancel(a, st_before):
    """migrate_cancel on a; returns (seconds it took, its reply, the state after)."""
    hb = st_before["heartbeat_ms"] + st_before["heartbeat_timeout_ms"]
    t = time.monotonic()
    r = a.ctl("migrate_cancel")
    took = time.monotonic() - t
    st = a.wait_state(("unprotected",), 5)
    print("  migrate_cancel took %.2f s (heartbeat %d + timeout %d ms): %s"
          % (took, st_before["heartbeat_ms"], st_before["heartbeat_timeout_ms"], r))
    print("  primary: %s (%s)" % (st["state"], st["last_error"]))
    check(took < hb / 1000.0 + 3.0, "migrate_cancel took %.1f s on a stalled peer" % took)
    check(st["held_outputs"] == 0, "output still held after cancel: %s" % st)
    return took, r, st


def waiting_on_ack(work, topo, tls):
    img = make_image(os.path.join(work, "ack.img"))
    client = Client(topo, work)
    nodes = []
    try:
        a = Node(topo, "A", work, "ack", img, "shared", False, tls=tls)
        nodes.append(a)
        wait_ready(a)
        # No --failover-on-peer-loss here: nothing should promote B.
        b = Node(topo, "B", work, "ack", img, "shared", False, tls=tls,
                 extra=["--incoming", "tcp:10.99.0.2:4444"])
        nodes.append(b)
        st = a.protect_to("B")
        check(client.run("put", "before", "1").returncode == 0, "PUT under protection failed")
        b.ctl("migrate_set_parameter", "x-inject", "stall-receive")
        put = subprocess.Popen(topo.cmd("C", FTVM_KV, "--server", "%s:%d" % (GUEST_IP, KV_PORT),
                                        "put", "held", "2"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        mid = a.migrate_info()
        print("1. stalled secondary, a PUT waiting on its ACK: primary %s, %d outputs held"
              % (mid["state"], mid["held_outputs"]))
        check(mid["state"] == "protected" and put.poll() is None,
              "the stall was not a stall: %s, put %s" % (mid["state"], put.poll()))
        _, r, st = cancel(a, st)
        check("CANCEL" in st["last_error"] or "read nothing" in st["last_error"],
              "the primary does not say the cancel went unconfirmed: %s" % st["last_error"])
        out, err = put.communicate(timeout=20)
        check(put.returncode == 0, "the held PUT was not answered after the cancel: %s" % err)
        r = client.run("get", "held")
        check(r.returncode == 0 and "2" in r.stdout, "the held PUT did not land: %s" % r.stdout)
    finally:
        close_all(None, nodes)


def blocked_in_send(work, topo, tls):
    nodes = []
    try:
        a = Node(topo, "A", work, "send", make_image(os.path.join(work, "a.img")), "replicated", False,
                 policy="epoch:100", extra=["--no-compress"], append=DIRTY, tls=tls)
        nodes.append(a)
        wait_ready(a)
        b = Node(topo, "B", work, "send", make_image(os.path.join(work, "b.img")), "replicated", False,
                 policy="epoch:100", append=DIRTY, tls=tls,
                 extra=["--incoming", "tcp:10.99.0.2:4444"])
        nodes.append(b)
        st = a.protect_to("B")
        b.ctl("migrate_set_parameter", "x-inject", "stall-receive")
        time.sleep(2.0)
        mid = a.migrate_info()
        print("2. stalled secondary, checkpoints of up to %d pages uncompressed: primary %s at epoch %d"
              % (PAGES, mid["state"], mid["epoch"]))
        check(mid["state"] == "protected", "the primary saw the stalled peer as lost: %s" % mid["last_error"])
        _, r, st = cancel(a, st)
        check("read nothing" in json.dumps(r) and "read nothing" in st["last_error"],
              "the link was not shut down, or nobody says so: reply %s, error %s" % (r, st["last_error"]))
        s0 = stat(topo)
        time.sleep(0.5)
        s1 = stat(topo)
        rate = (int(s1["dirtied"]) - int(s0["dirtied"])) * 1e9 / (int(s1["ns"]) - int(s0["ns"]))
        print("  after the cancel the guest dirties %.0f pages/s and answers" % rate)
        check(rate > 0, "the guest does not run after the cancel")
    finally:
        close_all(None, nodes)


def test(work):
    require_kvm()
    tls = make_psk(work)
    with Topology() as topo:
        waiting_on_ack(work, topo, tls)
    with Topology() as topo:
        blocked_in_send(work, topo, tls)


if __name__ == "__main__":
    main(test)
