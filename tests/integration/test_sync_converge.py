#!/usr/bin/env python3
"""A pre-copy that converges although the guest dirties pages faster than
the link carries them.

The dirty workload rewrites a 64 MiB working set at 50,000 pages/s
(200 MB/s); pages go uncompressed (--no-compress: incompressible guest
data) over a link throttled to 400 Mbit/s (tc tbf, ~50 MB/s). Left alone,
every pre-copy round would resend the whole working set until the round
limit (30 rounds, ~40 s). With the auto-converge throttle:
1. protection is reached in fewer rounds than the limit, and info migrate
   reports the rounds and the throttle used (and the ftvm log says why);
2. the throttle is lifted once protected: the guest dirties pages at its
   own pace again;
3. the workload's pages on the secondary match (verified by a failover:
   the guest's counter carries on from the checkpoint)."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import FTVM_KV, GUEST_IP, KV_PORT, check, main, require_kvm  # noqa: E402
from drill import REP_IP, REP_PORT, Node, Topology, close_all, make_image, wait_ready  # noqa: E402

PAGES, RATE = 16384, 50000
APPEND = "workload=dirty pages=%d rate=%d ip=%s/24 port=%d" % (PAGES, RATE, GUEST_IP, KV_PORT)


def stat(topo):
    r = subprocess.run(topo.cmd("C", FTVM_KV, "--server", "%s:%d" % (GUEST_IP, KV_PORT), "--json", "stat"),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    return json.loads([l for l in r.stdout.splitlines() if l.strip()][-1])


def dirty_rate(topo, seconds=1.0):
    s0 = stat(topo)
    time.sleep(seconds)
    s1 = stat(topo)
    return (int(s1["dirtied"]) - int(s0["dirtied"])) * 1e9 / (int(s1["ns"]) - int(s0["ns"]))


def test(work):
    require_kvm()
    with Topology() as topo:
        nodes = []
        try:
            a = Node(topo, "A", work, "p", make_image(os.path.join(work, "a.img")), "replicated", False,
                     policy="epoch:50", extra=["--no-compress"], append=APPEND)
            nodes.append(a)
            wait_ready(a)
            free = dirty_rate(topo)
            print("unprotected: the guest dirties %.0f pages/s" % free)
            check(free > RATE * 0.5, "the dirty workload runs at %.0f pages/s, not near %d" % (free, RATE))
            subprocess.run(topo.cmd("A", "tc", "qdisc", "add", "dev", "repA", "root", "tbf", "rate", "400mbit",
                                    "burst", "256kbit", "latency", "100ms"), check=True)
            b = Node(topo, "B", work, "s", make_image(os.path.join(work, "b.img")), "replicated", True,
                     policy="epoch:50", append=APPEND)
            nodes.append(b)
            t = time.monotonic()
            a.ctl("migrate", "-d", "-k", "tcp:%s:%d" % (REP_IP["B"], REP_PORT))
            st = a.wait_state(("protected", "unprotected"), 120)
            took = time.monotonic() - t
            print("protected in %.1f s: %d rounds, throttle %d %%, %d RAM pages sent; first checkpoint %d pages"
                  % (took, st["sync_rounds"], st["sync_throttle_percent"], st["sync_ram_pages"],
                     st["pages_per_checkpoint"]["max"]))
            log = [l for l in a.errors().splitlines() if "throttling" in l]
            print("ftvm log:\n  " + "\n  ".join(log[-4:]))
            check(st["state"] == "protected", "not protected: %s" % st["last_error"])
            check(st["sync_rounds"] < 30, "the pre-copy ran to the round limit (%d rounds): it did not converge"
                  % st["sync_rounds"])
            check(st["sync_throttle_percent"] >= 20 and log,
                  "converged without a throttle (%d %%): the test's link is not the bottleneck"
                  % st["sync_throttle_percent"])
            check(a.ctl("info", "status")["status"] == "running", "the guest does not run")

            # 2: the throttle is lifted.
            prot = dirty_rate(topo, 2.0)
            print("protected: the guest dirties %.0f pages/s (%.0f%% of unprotected)" % (prot, 100 * prot / free))
            check(prot > free * 0.25, "the guest stays slowed down after the sync: %.0f pages/s" % prot)

            # 3: the secondary holds the workload's state: its count goes on
            # from the last checkpoint (at most a second of work lost).
            before = int(stat(topo)["dirtied"])
            a.kill()
            b.wait_state(("failed-over",), 20)
            after = int(stat(topo)["dirtied"])
            print("after failover: the guest's count is %d (%d just before the kill)" % (after, before))
            check(before - RATE <= after, "the secondary resumed from an old state: %d < %d" % (after, before))
            check(dirty_rate(topo, 0.5) > 0, "the guest does not run on the secondary")
        finally:
            close_all(None, nodes)


if __name__ == "__main__":
    main(test)
