#!/usr/bin/env python3
"""Held output is bounded whatever the policy, and a checkpoint's output
list may be larger than one message:

- epoch policy with a 10 s epoch and held-output-limit 4096: 16 clients
  writing at once pass the bound, which forces checkpoints: their PUTs are
  answered in well under the epoch (median p50 < 1 s, forced_checkpoints > 0);
- x-outputs-chunk 256: every checkpoint's output list travels in many
  OUTPUTS messages, which the secondary joins; protection holds, and after
  the primary is killed the secondary resumes with nothing acknowledged
  lost."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import FTVM_KV, GUEST_IP, KV_PORT, check, main, require_kvm  # noqa: E402
from drill import Client, Node, Topology, close_all, make_image, wait_ready  # noqa: E402

CLIENTS = 16


def parallel_loads(topo, work, ops, tag):
    procs = []
    for i in range(CLIENTS):
        acks = os.path.join(work, "%s%d.acks" % (tag, i))
        cmd = topo.cmd("C", FTVM_KV, "--server", "%s:%d" % (GUEST_IP, KV_PORT), "--deadline-ms", "120000",
                       "--json", "load", "--ops", str(ops), "--keys", "20", "--key-prefix", "%s%d-" % (tag, i),
                       "--read-ratio", "0.3", "--seed", str(i + 1), "--ack-log", acks)
        procs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), acks))
    out = []
    for p, acks in procs:
        so, se = p.communicate(timeout=300)
        lines = [l for l in so.splitlines() if l.startswith("{")]
        check(lines, "a load printed nothing: %s" % se[-300:])
        out.append((json.loads(lines[-1]), acks))
    return out


def test(work):
    require_kvm()
    with Topology() as topo:
        img = make_image(os.path.join(work, "shared.img"))
        client = Client(topo, work)
        nodes = []
        try:
            a = Node(topo, "A", work, "g0", img, "shared", False, policy="epoch:10000")
            nodes.append(a)
            wait_ready(a)
            b = Node(topo, "B", work, "g0", img, "shared", True)
            nodes.append(b)
            a.ctl("migrate_set_parameter", "held-output-limit", "4096")
            a.ctl("migrate_set_parameter", "x-outputs-chunk", "256")
            a.protect_to("B")
            t = time.monotonic()
            loads = parallel_loads(topo, work, 30, "h")
            took = time.monotonic() - t
            sa = a.migrate_info()
            p50 = sorted(s["latency_p50_us"] for s, _ in loads)[CLIENTS // 2]
            print("%d clients x 30 ops under epoch:10000: %.1f s, median client p50 %.1f ms; %d checkpoints, %d "
                  "forced by the held-output bound (%d bytes)" % (CLIENTS, took, p50 / 1000, sa["epochs"],
                                                              sa["forced_checkpoints"], sa["held_output_limit"]))
            check(sa["state"] == "protected", "protection ended: %s" % sa)
            check(sa["forced_checkpoints"] > 0, "the held-output bound forced no checkpoint: %s" % sa)
            # While the clients overlap the bound is what releases their
            # answers; only the last few, alone under it, wait for the epoch.
            check(p50 < 1_000_000, "held output waited for the 10 s epoch (median p50 %.1f ms)" % (p50 / 1000))
            for s, _ in loads:
                check(s["result"] == "pass", "a load failed: %s" % s)
            # The secondary has joined every split list: kill the primary.
            a.kill()
            b.wait_state(("failed-over",), 10)
            for _, acks in loads:
                client.acks = acks
                v = client.verify()
                check(v["lost"] == 0 and v["wrong"] == 0, "lost after failover: %s" % v)
            print("after failover: every client's acknowledged writes read back")
        finally:
            close_all(client, nodes)


main(test)
