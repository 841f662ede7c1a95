#!/usr/bin/env python3
"""The failover drill in Redis mode: persistent TCP connections of redis-py
to the guest's RESP port (tests/lib/redis_load.py), never reopened, each
writing and reading back its own keys without pause, while the primary is
killed with SIGKILL KILLS times in each storage mode. Every connection
must survive every failover (0 resets, 0 reconnects), no acknowledged SET
may be lost and no GET stale, and the surviving image, booted alone, must
hold every acknowledged write. The longest wait of a connection around
each kill is printed (p50 and max)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import check, main, require_kvm, skip  # noqa: E402
from drill import REDIS_PYTHON, pct, run_drill  # noqa: E402

KILLS = int(os.environ.get("FTVM_DRILL_KILLS", "20"))


def test(work):
    require_kvm()
    if subprocess.run([REDIS_PYTHON, "-c", "import redis"], stderr=subprocess.DEVNULL).returncode:
        skip("redis-py is not installed (scripts/setup.sh installs python3-redis)")
    for mode in ("shared", "replicated"):
        d = os.path.join(work, mode)
        os.makedirs(d)
        rep = run_drill(d, mode, KILLS, seed=99 if mode == "shared" else 77, service="redis")
        f, s, load = rep["failover_s"], rep["stall_ms"], rep["load"]
        check(load["errors"] == 0 and load["reconnects"] == 0, "connections broke: %s" % load["problems"])
        print("%s (redis): %d kills, first answer p50 %.0f ms, max %.0f ms; longest wait of a persistent "
              "connection per failover p50 %.0f ms, max %.0f ms; %d SETs acknowledged, 0 lost, 0 stale, "
              "0 resets" % (mode, rep["kills"], pct(f, 50) * 1000, max(f) * 1000, pct(s, 50), max(s),
                            load["sets_acked"]))


main(test)
