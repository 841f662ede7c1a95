#!/usr/bin/env python3
"""redis-benchmark against the kv guest's RESP service, unprotected and
under each protection policy, in one run on this machine (the drill
topology; the link over TLS with a pre-shared key):

  redis-benchmark -t set,get,incr with -c 1, -c 8, -c 50 and -P 1, -P 16:
  requests per second, latency p50/p99 (ms), and the throughput as a ratio
  of the unprotected run of the same row.

A SET or INCR is answered only once its record is flushed to the guest's
disk (and, protected, once the checkpoint holding it is on the secondary);
a GET is a read. docs/benchmarks.md explains how to read the table.
"""
import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from ftvmtest import GUEST_IP, require_kvm  # noqa: E402
from drill import Topology, make_psk  # noqa: E402
from bench_ft import start_pair  # noqa: E402

POLICIES = ["unprotected", "event", "epoch:10", "epoch:20", "hybrid:200:20"]
ROWS = [(c, p) for c in (1, 8, 50) for p in (1, 16)]


def bench(topo, clients, pipeline, n):
    r = subprocess.run(topo.cmd("C", "redis-benchmark", "-h", GUEST_IP, "-t", "set,get,incr", "-n", str(n),
                                "-c", str(clients), "-P", str(pipeline), "--csv"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    out = {}
    for row in csv.DictReader(io.StringIO(r.stdout)):
        out[row["test"]] = {"rps": float(row["rps"]), "p50_ms": float(row["p50_latency_ms"]),
                            "p99_ms": float(row["p99_latency_ms"])}
    if len(out) < 3:
        raise SystemExit("redis-benchmark: %s" % r.stdout[-800:])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=5000, help="requests per test and row (-n)")
    ap.add_argument("--json")
    a = ap.parse_args()
    require_kvm()
    work = tempfile.mkdtemp(prefix="ftvm-bench-redis-")
    tls = make_psk(work)
    res = {}
    with Topology() as topo:
        for pol in POLICIES:
            # A 2 GiB log: every SET and INCR is a record.
            n1, n2 = start_pair(topo, work, "r-" + pol.replace(":", "_"), pol, None, tls=tls, disk_mb=2048)
            try:
                for c, p in ROWS:
                    res[(pol, c, p)] = bench(topo, c, p, a.requests)
            finally:
                for node in (n1, n2):
                    if node:
                        node.close()
    print("redis-benchmark -t set,get,incr -n %d against the kv guest; rps, p50/p99 ms, ratio to unprotected"
          % a.requests)
    for test in ("SET", "GET", "INCR"):
        print("\n%s" % test)
        print("%-16s" % "policy" + "".join("%26s" % ("-c %d -P %d" % cp) for cp in ROWS))
        for pol in POLICIES:
            cells = []
            for c, p in ROWS:
                r, base = res[(pol, c, p)][test], res[("unprotected", c, p)][test]
                cells.append("%7.0f %5.1f/%5.1f %4.2fx" % (r["rps"], r["p50_ms"], r["p99_ms"], r["rps"] / base["rps"]))
            print("%-16s" % pol + "".join("%26s" % x for x in cells))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"%s|c%d|P%d" % k: v for k, v in res.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
