#!/usr/bin/env python3
"""Frames that arrive while a checkpoint is captured. The kv load waits for
each answer, so while the primary captures a checkpoint no request of its
is in flight; here a second client sends a request every millisecond
regardless of answers, so virtio-net RX runs (in the I/O thread) during
captures. A frame delivered between the dirty-log collection and the
device-state save would be in the checkpoint's device state but not in its
pages: after a failover to that checkpoint the guest reads a used-ring
entry that is not there and re-processes the stale contents of an old
buffer (an old PUT comes back). The primary is killed KILLS times at random
moments; nothing acknowledged may be lost and no read may be stale."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import main, require_kvm  # noqa: E402
from drill import pct, run_drill  # noqa: E402

KILLS = int(os.environ.get("FTVM_DRILL_KILLS", "20"))


def test(work):
    require_kvm()
    rep = run_drill(work, "shared", KILLS, seed=777, noise=True, min_gap=0.2, max_gap=0.8)
    f = rep["failover_s"]
    print("shared, a request every ms besides the kv load: %d kills, failover p50 %.0f ms, max %.0f ms; "
          "%d PUTs acknowledged, 0 lost, 0 stale reads" % (rep["kills"], pct(f, 50) * 1000, max(f) * 1000,
                                                         rep["load"]["puts_acked"]))


main(test)
