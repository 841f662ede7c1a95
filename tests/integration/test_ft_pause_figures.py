#!/usr/bin/env python3
"""info migrate's pause_us is the checkpoint's own pause, counted from when
the guest stopped:

- under the epoch policy, while the operator holds the guest with `stop`
  (1 s here), checkpoints go on with the timer; none of them reports the
  operator's stop as its pause (before the fix each counted from the
  `stop`: pause_us max ~1 s);
- under load, every pause is positive and below the heartbeat timeout,
  and the guest answers again after `cont`."""
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
            a = Node(topo, "A", work, "p0", img, "shared", False, policy="epoch:20")
            nodes.append(a)
            wait_ready(a)
            b = Node(topo, "B", work, "p0", img, "shared", True)
            nodes.append(b)
            a.protect_to("B")
            r = client.run("put", "before-stop", "1")
            check(r.returncode == 0, "PUT before the stop: %s" % r.stderr)
            e0 = a.migrate_info()["epochs"]
            a.ctl("stop")
            time.sleep(1.0)
            a.ctl("cont")
            i = a.migrate_info()
            took = i["epochs"] - e0
            print("1 s of `stop` under epoch:20: %d checkpoints meanwhile; pause_us %s" % (took, i["pause_us"]))
            check(took >= 10, "checkpoints did not go on during the stop (%d)" % took)
            check(i["pause_us"]["max"] < 200_000,
                  "a checkpoint counted the operator's stop as its pause: %s" % i["pause_us"])
            check(i["pause_us"]["p50"] > 0, "no pause measured: %s" % i["pause_us"])
            r = client.run("put", "after-cont", "2")
            check(r.returncode == 0, "PUT after cont: %s" % r.stderr)
            r = client.run("get", "before-stop")
            check(r.returncode == 0 and "1" in r.stdout, "GET after cont: %s %s" % (r.stdout, r.stderr))
        finally:
            close_all(client, nodes)


main(test)
