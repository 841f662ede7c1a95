#!/usr/bin/env python3
"""How protection grows with guest size, measured in one run on this machine
over the drill topology's replication link (veth between two namespaces),
replicated storage.

For each guest RAM size (default 128M 1G 4G 8G 16G; a size is left out,
with the reason, when this machine cannot hold both sides), with a sparse
disk of 4x RAM of which RAM/4 (at most 2 GiB) holds data, and a guest that
has written RAM/8 of its RAM (at most 1 GiB) before protection:
  time to protected (migrate -> protected), the sync's throughput;
  checkpoint pause p50/p99 with the dirty workload at ~10 and ~1,000 dirty
  pages a checkpoint (epoch:20, 500 and 50,000 pages/s);
  RSS of the primary and the secondary while protected.
Then, for the smallest size, 8G and the largest, the pause at ~10 dirty
pages for each way of collecting the dirty log (ring, clear, bitmap), and
the ratios to the smallest: checkpoint cost should follow the dirty pages,
not the RAM size.

docs/scaling.md explains how to read them.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from ftvmtest import GUEST_IP, KV_PORT, require_kvm  # noqa: E402
from drill import Node, Topology, make_image, wait_ready  # noqa: E402

SIZES = ["128M", "1G", "4G", "8G", "16G"]
LOW, HIGH = (500, 1024), (50000, 4096)	# (pages/s, working set): ~10, ~1,000 pages a checkpoint at 20 ms


def mib(size):
    n, unit = int(size[:-1]), size[-1].upper()
    return n * {"M": 1, "G": 1024}[unit]


def warm_mib(size):
    return min(mib(size) // 8, 1024)


def rss_mib(node):
    with open("/proc/%d/status" % node.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def write_data(path, offset_mib, data_mib):
    """data_mib of incompressible data at offset_mib: what the sync reads."""
    blk = os.urandom(1 << 20)
    with open(path, "r+b") as f:
        f.seek(offset_mib << 20)
        for i in range(data_mib):
            f.write(blk[i % 4093:] + blk[:i % 4093])
        f.flush()
        os.fsync(f.fileno())


class Pair:
    """A primary and its secondary, protected, running the dirty workload."""

    def __init__(self, topo, work, tag, size, rate, region, mode="auto", data_mib=None, warm=0):
        disk = 4 * mib(size)
        self.imgs = [make_image(os.path.join(work, "%s-%s.img" % (tag, h)), disk) for h in "AB"]
        data = data_mib if data_mib is not None else min(mib(size) // 4, 2048)
        if data:
            write_data(self.imgs[0], disk // 4, data)
        app = "workload=dirty pages=%d rate=%d warm=%d ip=%s/24 port=%d" % (region, rate, warm, GUEST_IP, KV_PORT)
        extra = ("--dirty-log", mode)
        self.a = self.b = None
        self.a = Node(topo, "A", work, tag, self.imgs[0], "replicated", False, memory=size,
                      policy="epoch:20", extra=extra, append=app)
        self.b = Node(topo, "B", work, tag, self.imgs[1], "replicated", True, memory=size,
                      policy="epoch:20", extra=extra, append=app)
        wait_ready(self.a, 120)
        t = time.monotonic()
        st = self.a.protect_to("B")
        self.protect_s = time.monotonic() - t
        self.sync = st

    def run(self, seconds):
        time.sleep(seconds)
        i = self.a.migrate_info()
        return {"pause_us": i["pause_us"], "pages": i["pages_per_checkpoint"], "epochs": i["epochs"],
                "dirty_log": i.get("dirty_log", "?"), "rss_primary_mib": rss_mib(self.a),
                "rss_secondary_mib": rss_mib(self.b)}

    def close(self):
        for n in (self.a, self.b):
            if n:
                n.close()
        for p in self.imgs:
            os.unlink(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=SIZES)
    ap.add_argument("--seconds", type=float, default=3.0, help="dirty run per measurement")
    ap.add_argument("--modes", nargs="+", default=["ring", "clear", "bitmap"])
    ap.add_argument("--json")
    a = ap.parse_args()
    require_kvm()
    work = tempfile.mkdtemp(prefix="ftvm-bench-scale-", dir="/var/tmp")
    out = {"sizes": {}, "modes": {}}
    sizes = []
    for s in a.sizes:
        # Both sides back what the guest touched (a few MiB here) plus the
        # disk data in the page cache; the rest of guest RAM is never backed.
        need = 2 * warm_mib(s) + 2 * min(mib(s) // 4, 2048) + 1024
        if need > mem_available_mib():
            print("%s: left out: needs about %d MiB, %d MiB available" % (s, need, mem_available_mib()))
            continue
        sizes.append(s)
    with Topology() as topo:
        print("replicated storage, disk 4x RAM (sparse, RAM/4 of data, at most 2 GiB), guest wrote RAM/8 "
              "(at most 1 GiB), dirty workload, epoch:20")
        print("%-6s %9s %9s %10s %10s %22s %22s %10s %10s" % (
            "RAM", "RAM used", "disk data", "protected", "sync GiB/s", "pause ~10 p50/p99", "pause ~1000 p50/p99",
            "RSS pri", "RSS sec"))
        for s in sizes:
            row = {}
            for label, (rate, region) in (("low", LOW), ("high", HIGH)):
                p = Pair(topo, work, "s%s%s" % (s, label), s, rate, region,
                         data_mib=None if label == "low" else 0,
                         warm=warm_mib(s) * 256 if label == "low" else 0)
                try:
                    f = p.run(a.seconds)
                    if label == "low":
                        row.update(protect_s=p.protect_s, sync_gib_s=p.sync.get("sync_gib_per_s", 0),
                                   disk_data_mib=min(mib(s) // 4, 2048))
                    row[label] = f
                finally:
                    p.close()
            out["sizes"][s] = row
            lo, hi = row["low"], row["high"]
            print("%-6s %5d MiB %5d MiB %8.2f s %10.2f %7d/%6d us (%3d) %7d/%6d us (%4d) %6.0f MiB %6.0f MiB" % (
                s, warm_mib(s), row["disk_data_mib"], row["protect_s"], row["sync_gib_s"],
                lo["pause_us"]["p50"], lo["pause_us"]["p99"], lo["pages"]["p50"],
                hi["pause_us"]["p50"], hi["pause_us"]["p99"], hi["pages"]["p50"],
                max(lo["rss_primary_mib"], hi["rss_primary_mib"]),
                max(lo["rss_secondary_mib"], hi["rss_secondary_mib"])), flush=True)

        if len(sizes) >= 2:
            cmp = [sizes[0]] + [s for s in ("8G",) if s in sizes[1:-1]] + [sizes[-1]]
            print("\npause at ~10 dirty pages by dirty-log mode (disk without data, RAM untouched), "
                  "ratio to %s" % cmp[0])
            print("%-8s" % "mode" + "".join("%18s" % (s + " p50/p99") for s in cmp)
                  + "".join("%10s" % (s + "/" + cmp[0]) for s in cmp[1:]))
            for m in a.modes:
                r = {}
                for s in cmp:
                    p = Pair(topo, work, "m%s%s" % (m, s), s, LOW[0], LOW[1], mode=m, data_mib=0)
                    try:
                        r[s] = p.run(a.seconds)
                    finally:
                        p.close()
                base = max(1, r[cmp[0]]["pause_us"]["p50"])
                ratios = {s: r[s]["pause_us"]["p50"] / base for s in cmp[1:]}
                out["modes"][m] = {"pause": r, "ratio_p50": ratios}
                print("%-8s" % m + "".join("%10d/%6d us" % (r[s]["pause_us"]["p50"], r[s]["pause_us"]["p99"])
                                           for s in cmp)
                      + "".join("%9.2fx" % ratios[s] for s in cmp[1:]), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
