#!/usr/bin/env python3
"""The failover drill: the primary is killed with SIGKILL at random moments
under kv load, KILLS times in each storage mode (shared image, replicated
images); after each failover protection is restored to a new secondary.
Zero acknowledged writes lost, zero stale reads, and the surviving disk
image, booted alone, holds everything the guest acknowledged."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import main, require_kvm  # noqa: E402
from drill import pct, run_drill  # noqa: E402

KILLS = int(os.environ.get("FTVM_DRILL_KILLS", "20"))


def test(work):
    require_kvm()
    for mode in ("shared", "replicated"):
        d = os.path.join(work, mode)
        os.makedirs(d)
        rep = run_drill(d, mode, KILLS, seed=1234 if mode == "shared" else 4321)
        f = rep["failover_s"]
        print("%s: %d kills, failover (kill -> first answer) p50 %.0f ms, max %.0f ms; "
              "%d PUTs acknowledged, 0 lost" % (mode, rep["kills"], pct(f, 50) * 1000, max(f) * 1000,
                                                rep["load"]["puts_acked"]))


main(test)
