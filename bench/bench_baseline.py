#!/usr/bin/env python3
"""Unprotected baselines that the ft issue's protected figures are compared
against, measured in one run on this machine (docs/benchmarks.md explains
how to read them):

  boot      wall time from spawning ftvm to the guest's ready line (N boots)
  kv        request latency p50/p99/p99.9/max and throughput of one
            closed-loop client over the tap (50% PUT, each PUT written and
            flushed to the disk image before OK)
  dirty     pages/s the dirty workload writes, for a small and a large
            working set (what a checkpoint would have to ship)
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from ftvmtest import GUEST_IP, KV_PORT, NetNS, Vm, kv, make_disk, require_kvm  # noqa: E402


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def bench_boot(work, ns, n):
    walls, guest_ms = [], []
    for i in range(n):
        disk = make_disk(os.path.join(work, "boot%d.img" % i), 16)
        vm = Vm(work, ns, name="boot%d" % i, disk=disk)
        try:
            secs, line = vm.wait_ready()
            walls.append(secs * 1000)
            for w in line.split():
                if w.startswith("boot_ms="):
                    guest_ms.append(float(w[8:]))
            vm.quit()
        finally:
            vm.close()
    return {"boots": n, "wall_ms_p50": pct(walls, 50), "wall_ms_p90": pct(walls, 90),
            "wall_ms_max": max(walls), "guest_boot_ms_p50": pct(guest_ms, 50) if guest_ms else None}


def bench_kv(work, ns, ops):
    disk = make_disk(os.path.join(work, "kv.img"), 256)
    vm = Vm(work, ns, name="kv", disk=disk)
    try:
        vm.wait_ready()
        kv(ns, "load", "--ops", "500", "--keys", "100", "--key-prefix", "warm")
        res = {}
        for label, ratio in (("mixed50", "0.5"), ("get_only", "1.0"), ("put_only", "0.0")):
            r, s = kv(ns, "load", "--ops", str(ops), "--keys", "1000", "--read-ratio", ratio,
                      "--key-prefix", label, "--json", json_out=True)
            res[label] = {k: s[k] for k in ("ops", "throughput_ops_s", "latency_p50_us",
                                            "latency_p99_us", "latency_p999_us", "latency_max_us",
                                            "stale_reads", "retries")}
        vm.quit()
        return res
    finally:
        vm.close()


def guest_stat(ns):
    r = kv(ns, "--json", "stat")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_dirty(work, ns, pages, seconds):
    vm = Vm(work, ns, name="dirty%d" % pages, memory="512M",
            append="workload=dirty pages=%d rate=0 ip=%s/24 port=%d" % (pages, GUEST_IP, KV_PORT))
    try:
        vm.wait_ready()
        time.sleep(0.5)
        a = guest_stat(ns)
        time.sleep(seconds)
        b = guest_stat(ns)
        vm.quit()
    finally:
        vm.close()
    d_pages = int(b["dirtied"]) - int(a["dirtied"])
    d_ns = int(b["ns"]) - int(a["ns"])
    return {"working_set_pages": pages, "pages_per_s": d_pages * 1e9 / d_ns, "seconds": d_ns / 1e9}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boots", type=int, default=10)
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--dirty-seconds", type=float, default=3.0)
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args()
    require_kvm()
    work = tempfile.mkdtemp(prefix="ftvm-bench-")
    out = {}
    with NetNS("bench") as ns:
        out["boot"] = bench_boot(work, ns, a.boots)
        b = out["boot"]
        print("boot   %d boots: wall p50 %.0f ms  p90 %.0f ms  max %.0f ms  (guest's own boot p50 %s ms)"
              % (b["boots"], b["wall_ms_p50"], b["wall_ms_p90"], b["wall_ms_max"], b["guest_boot_ms_p50"]),
              flush=True)
        out["kv"] = bench_kv(work, ns, a.ops)
        for label, s in out["kv"].items():
            print("kv     %-9s %6d ops  %7.0f ops/s  latency us: p50 %5d  p99 %5d  p99.9 %5d  max %6d"
                  % (label, s["ops"], s["throughput_ops_s"], s["latency_p50_us"], s["latency_p99_us"],
                     s["latency_p999_us"], s["latency_max_us"]), flush=True)
        out["dirty"] = []
        for pages in (1000, 65536):
            d = bench_dirty(work, ns, pages, a.dirty_seconds)
            out["dirty"].append(d)
            print("dirty  working set %6d pages: %.3g pages/s (over %.1f s)"
                  % (pages, d["pages_per_s"], d["seconds"]), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
