#!/usr/bin/env python3
"""Protection of guests of real size (issue: scale).

1. An 8 GiB guest with a 16 GiB sparse replicated disk, of which 2 GiB
   hold data, that has written 1 GiB of its RAM and goes on dirtying a
   little: protected within 20 s. Then the same with a 16 GiB guest, when
   this machine can hold both sides (it is skipped, saying why, if not).
   Both sides' RSS stays near what the guest touched: neither holds a
   second copy of guest RAM.
2. A kill drill on the 8 GiB guest (kv workload, replicated storage, the
   disk 16 GiB with 2 GiB of data, re-protection after every kill): 0
   acknowledged writes lost."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import GUEST_IP, KV_PORT, check, main, require_kvm, skip  # noqa: E402
from drill import REP_IP, REP_PORT, Node, Topology, close_all, make_image, run_drill, wait_ready  # noqa: E402

DISK_MB = 16 << 10
DATA_MB = 2 << 10
WARM_PAGES = 1 << 18	# 1 GiB of guest RAM written before protection
LIMIT_S = 20.0


def fill(path, data_mb=DATA_MB):
    """data_mb of incompressible data, in 64 MiB runs spread over the image."""
    blk = os.urandom(1 << 20)
    runs = data_mb // 64
    stride = (DISK_MB - 128) // runs
    with open(path, "r+b") as f:
        for r in range(runs):
            f.seek((64 + r * stride) << 20)
            for i in range(64):
                f.write(blk[i * 61 % 4093:] + blk[:i * 61 % 4093])
        f.flush()
        os.fsync(f.fileno())


def rss_mib(node):
    with open("/proc/%d/status" % node.proc.pid) as f:
        return next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS:"))


def available_mib():
    with open("/proc/meminfo") as f:
        return next(int(l.split()[1]) // 1024 for l in f if l.startswith("MemAvailable:"))


def protect_big(topo, work, memory, log):
    img_a = make_image(os.path.join(work, "big-%s-a.img" % memory), DISK_MB)
    fill(img_a)
    img_b = make_image(os.path.join(work, "big-%s-b.img" % memory), DISK_MB)
    app = "workload=dirty warm=%d pages=1024 rate=1000 ip=%s/24 port=%d" % (WARM_PAGES, GUEST_IP, KV_PORT)
    nodes = []
    try:
        a = Node(topo, "A", work, "big" + memory, img_a, "replicated", False, memory=memory,
                 policy="epoch:20", append=app)
        nodes.append(a)
        wait_ready(a, 60)
        nodes.append(Node(topo, "B", work, "big" + memory, img_b, "replicated", True, memory=memory,
                          policy="epoch:20", append=app))
        t = time.monotonic()
        st = a.protect_to("B")
        took = time.monotonic() - t
        time.sleep(2)
        i = a.migrate_info()
        rp, rs = rss_mib(a), rss_mib(nodes[1])
        log("%s guest, %d MiB of RAM and %d MiB of a %d MiB disk written: protected in %.2f s (%.2f GiB/s, "
            "%d rounds, throttle %d %%, %d MiB RAM and %d MiB disk skipped unread); pause p50 %d us p99 %d us "
            "at %d pages; RSS primary %d MiB, secondary %d MiB"
            % (memory, WARM_PAGES >> 8, DATA_MB, DISK_MB, took, st["sync_gib_per_s"], st["sync_rounds"],
               st["sync_throttle_percent"], st["sync_ram_pages_unread"] >> 8, st["sync_disk_bytes_unread"] >> 20,
               i["pause_us"]["p50"], i["pause_us"]["p99"], i["pages_per_checkpoint"]["p50"], rp, rs))
        check(took <= LIMIT_S, "%s guest: protected in %.1f s, more than %.0f s" % (memory, took, LIMIT_S))
        # The guest touched 1 GiB; each side may hold it once, not twice.
        touched = WARM_PAGES >> 8
        for who, rss in (("primary", rp), ("secondary", rs)):
            check(rss < touched * 1.5 + 256, "%s RSS %d MiB for %d MiB the guest touched" % (who, rss, touched))
        check(i["state"] == "protected", "not protected 2 s on: %s" % i["state"])
    finally:
        close_all(None, nodes)
        for p in (img_a, img_b):
            os.unlink(p)


def test(work):
    require_kvm()
    st = os.statvfs(work)
    free_mib = st.f_bavail * st.f_frsize >> 20
    if free_mib < 3 * DATA_MB + 2048:
        skip("the images' data needs about %d MiB of disk in %s, %d MiB free" % (3 * DATA_MB + 2048, work, free_mib))
    with Topology() as topo:
        protect_big(topo, work, "8G", print)
        # 16 GiB on both sides: each backs what its guest touched (1 GiB)
        # and the page cache holds the images' data.
        need = 2 * (WARM_PAGES >> 8) + 2 * DATA_MB + 2048
        if available_mib() < need:
            print("SKIP 16G: needs about %d MiB of available memory, this machine has %d"
                  % (need, available_mib()))
        else:
            protect_big(topo, work, "16G", print)
    rep = run_drill(work, "replicated", 3, seed=11, memory="8G", disk_mb=DISK_MB, fill=fill)
    print("kill drill, 8 GiB guest: %d kills, failover p50 %.0f ms; %d PUTs acknowledged, %d lost"
          % (rep["kills"], sorted(rep["failover_s"])[len(rep["failover_s"]) // 2] * 1000,
             rep["load"]["puts_acked"], rep["verify"]["lost"]))


if __name__ == "__main__":
    main(test)
