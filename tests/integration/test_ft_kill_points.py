#!/usr/bin/env python3
"""The primary dies at chosen points of a checkpoint transaction (after
BEGIN, between two PAGES messages, just before COMMIT, just after COMMIT
before the ACK). Each time the secondary must resume from the right
checkpoint (the one before, or for after-COMMIT the one just committed),
discard what was incomplete, and lose nothing that was acknowledged."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import Failure, check, main, require_kvm  # noqa: E402
from drill import Client, Node, Topology, make_image, wait_ready  # noqa: E402


def one(work, point, delta_cache_mib=None):
    tag = point if delta_cache_mib is None else "%s-delta%d" % (point, delta_cache_mib)
    with Topology() as topo:
        img = make_image(os.path.join(work, tag + ".img"))
        client = Client(topo, work)
        client.acks = os.path.join(work, tag + ".acks")
        a = b = None
        try:
            a = Node(topo, "A", work, tag, img, "shared", False)
            wait_ready(a)
            b = Node(topo, "B", work, tag, img, "shared", True)
            if delta_cache_mib is not None:
                a.ctl("migrate_set_parameter", "delta-cache-mib", str(delta_cache_mib))
            a.protect_to("B")
            info = a.migrate_info()
            check(info["delta_cache_mib"] == (16 if delta_cache_mib is None else delta_cache_mib),
                  "delta-cache-mib: %s" % info["delta_cache_mib"])
            client.start_load(seconds=3600, keys=50)
            time.sleep(0.5)
            pre = a.migrate_info()
            if delta_cache_mib == 0:
                check(pre["pages_delta"] == 0 and pre["pages_whole"] > 0, "delta-cache-mib 0: %s" % pre)
            else:
                check(pre["pages_delta"] > pre["pages_whole"], "dirty pages did not go as deltas: %s" % pre)
            try:
                a.ctl("migrate_set_parameter", "x-inject", point)
            except Failure as e:
                # The point may come before the answer leaves (a slow
                # host, ThreadSanitizer): the VMM is gone by design.
                if "monitor closed the connection" not in str(e):
                    raise
            a.proc.wait(20)   # the primary kills itself at the point
            m = re.search(r"injected death \(\d+\) at epoch (\d+)", a.errors())
            check(m, "%s: the primary did not die at the injection point: %s" % (point, a.errors()[-500:]))
            died_in = int(m.group(1))
            fo = b.wait_state(("failed-over",), 10)
            if point == "die-after-commit":
                want, discarded = died_in, 0
            else:
                want, discarded = died_in - 1, 1
            print("%-18s primary died in checkpoint %d; secondary resumed checkpoint %d, discarded %d (%s); "
                  "pages sent before: %d as deltas, %d whole"
                  % (point, died_in, fo["committed_epoch"], fo["discarded_epochs"], fo["last_error"],
                     pre["pages_delta"], pre["pages_whole"]))
            check(fo["committed_epoch"] == want,
                  "%s: secondary resumed checkpoint %d, expected %d" % (point, fo["committed_epoch"], want))
            check(fo["discarded_epochs"] == discarded,
                  "%s: %d checkpoints discarded, expected %d" % (point, fo["discarded_epochs"], discarded))
            if discarded:
                check(fo["last_discarded_epoch"] == died_in, "%s: discarded the wrong checkpoint" % point)
            client.probe_until_answer(time.monotonic())
            time.sleep(0.3)
            rc, s = client.stop_load()
            check(s["stale_reads"] == 0 and s["wrong_answers"] == 0 and s["gave_up"] == 0,
                  "%s: client saw %s" % (point, s))
            v = client.verify()
            check(v["lost"] == 0 and v["wrong"] == 0 and v["checked"] > 0,
                  "%s: acknowledged writes lost: %s" % (point, v))
        finally:
            if client.load and client.load.poll() is None:
                client.load.kill()
            for n in (a, b):
                if n:
                    n.close()


def test(work):
    require_kvm()
    for point in ("die-after-begin", "die-mid-pages", "die-before-commit", "die-after-commit"):
        one(work, point)
    # Pages sent whole (no copies kept for deltas), as before version 4.
    one(work, "die-mid-pages", delta_cache_mib=0)


main(test)
