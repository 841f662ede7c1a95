#!/usr/bin/env python3
"""ftvm's main demo: the kill-the-primary failover drill, on one machine.

Three network namespaces stand for two hosts and a client: host A and host
B, each with a tap for the guest on its own bridge, joined to the client by
a LAN bridge, and joined to each other by a replication link. The kv guest
runs on host A, protected to host B (`migrate -d -k`). A client writes and
reads without pause; the primary VMM is killed with SIGKILL at random
moments; the secondary takes over on its own (--failover-on-peer-loss),
announces the guest's MAC, and protection is restored towards a new
secondary on the dead host. At the end the client's acknowledged writes
are read back from the running guest and from the surviving disk image.

--service redis: the client is four persistent redis-py connections to the
guest's Redis port instead (never reopened): each must survive every kill.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from ftvmtest import Failure, require_kvm  # noqa: E402
from drill import pct, run_drill  # noqa: E402


def say(msg):
    print("drill: " + msg, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=10, help="primary kills per storage mode (default 10)")
    ap.add_argument("--mode", choices=("shared", "replicated", "both"), default="both")
    ap.add_argument("--policy", default="event", help="event | epoch[:MS] | hybrid[:US[:MS]]")
    ap.add_argument("--service", choices=("kv", "redis"), default="kv",
                    help="kv: the UDP protocol (ftvm-kv); redis: persistent TCP connections (redis-py)")
    a = ap.parse_args()
    require_kvm()
    modes = ("shared", "replicated") if a.mode == "both" else (a.mode,)
    results = []
    for mode in modes:
        work = tempfile.mkdtemp(prefix="ftvm-drill-%s-" % mode)
        say("=== storage mode %s, policy %s, %d kills (files in %s)" % (mode, a.policy, a.kills, work))
        rep = run_drill(work, mode, a.kills, policy=a.policy, log=say, service=a.service)
        results.append(rep)
    say("=== summary")
    ok = True
    for rep in results:
        s, f = rep["load"], rep["failover_s"]
        info = rep["final_primary"]
        lost = rep["verify"]["lost"] + rep["verify_disk"]["lost"]
        ok = ok and lost == 0 and s["stale_reads"] == 0
        say("%-10s kills %d | acknowledged writes %d | lost writes %d | stale reads %d | "
            "failover p50 %.0f ms max %.0f ms" % (rep["mode"], rep["kills"], s["puts_acked"], lost,
                                                 s["stale_reads"], pct(f, 50) * 1000, max(f) * 1000))
        if rep["service"] == "redis":
            ok = ok and s["errors"] == 0 and s["reconnects"] == 0
            st = rep["stall_ms"]
            say("%-10s redis: %d resets or errors, %d reconnects | longest wait per failover p50 %.0f ms "
                "max %.0f ms" % ("", s["errors"], s["reconnects"], pct(st, 50), max(st)))
            continue
        say("%-10s pause per checkpoint p50 %d us p99 %d us max %d us | added output latency p50 %d us "
            "p99 %d us | client latency p50 %d us p99 %d us | %.0f ops/s"
            % ("", info["pause_us"]["p50"], info["pause_us"]["p99"], info["pause_us"]["max"],
               info["output_latency_us"]["p50"], info["output_latency_us"]["p99"],
               s["latency_p50_us"], s["latency_p99_us"], s["throughput_ops_s"]))
    say("result: %s" % ("PASS - nothing acknowledged was lost" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print("drill: FAILED: %s" % e)
        sys.exit(1)
