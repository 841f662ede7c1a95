#!/usr/bin/env python3
"""Progress of the initial sync, where operators watch it.

A replicated pair whose image holds 192 MiB of data (the rest sparse) and
whose replication link is throttled (tc tbf, 400 Mbit/s), so that the sync
takes seconds:
1. `info migrate` during the sync: sync_percent rises, the bytes left
   fall, the rate and the ETA are given; the image's holes and the RAM the
   guest never touched are counted as skipped unread;
2. `ftvmctl SOCKET migrate -d -k URI --wait` piped: plain lines with a
   rising percentage, then "protected", exit 0;
3. the same on a terminal (a pty): one redrawn bar;
4. --wait towards a port nobody listens on: exit 1 with the reason."""
import os
import pty
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import FTVMCTL, check, main, require_kvm  # noqa: E402
from drill import REP_IP, REP_PORT, Node, Topology, close_all, make_image, wait_ready  # noqa: E402

DATA_MB = 192
DISK_MB = 2048


def data_image(path):
    """DISK_MB sparse, with DATA_MB of incompressible data from 256 MiB on."""
    make_image(path, DISK_MB)
    with open(path, "r+b") as f:
        f.seek(256 << 20)
        for _ in range(DATA_MB):
            f.write(os.urandom(1 << 20))
    return path


def secondary(topo, work, tag):
    return Node(topo, "B", work, tag, make_image(os.path.join(work, tag + "-b.img"), DISK_MB), "replicated",
                False, extra=["--incoming", "tcp:%s:%d" % (REP_IP["B"], REP_PORT)])


def migrate_cmd(a):
    return [FTVMCTL, a.sock, "migrate", "-d", "-k", "tcp:%s:%d" % (REP_IP["B"], REP_PORT), "--wait"]


def test(work):
    require_kvm()
    with Topology() as topo:
        nodes = []
        try:
            a = Node(topo, "A", work, "p", data_image(os.path.join(work, "a.img")), "replicated", False)
            nodes.append(a)
            wait_ready(a)
            subprocess.run(topo.cmd("A", "tc", "qdisc", "add", "dev", "repA", "root", "tbf", "rate", "400mbit",
                                    "burst", "256kbit", "latency", "100ms"), check=True)

            # 1 and 2: piped --wait while info migrate is sampled.
            nodes.append(secondary(topo, work, "s1"))
            out = {}

            def run_wait():
                r = subprocess.run(migrate_cmd(a), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   timeout=300)
                out["rc"], out["stdout"], out["stderr"] = r.returncode, r.stdout, r.stderr

            t = threading.Thread(target=run_wait)
            t.start()
            samples = []
            while t.is_alive():
                st = a.migrate_info()
                if st["state"] == "syncing":
                    samples.append(st)
                time.sleep(0.1)
            t.join()
            mid = [s for s in samples if 0 < s["sync_percent"] < 99]
            print("info migrate: %d samples while syncing, %d in between; percent %s; left (MiB) %s; "
                  "eta (ms) %s; GiB/s %s" % (
                      len(samples), len(mid), [s["sync_percent"] for s in mid][::4],
                      [s["sync_remaining_bytes"] >> 20 for s in mid][::4], [s["sync_eta_ms"] for s in mid][::4],
                      ["%.2f" % s["sync_gib_per_s"] for s in mid][::4]))
            check(len(mid) >= 3, "too few samples during the sync to see progress: %s" % samples[-3:])
            pct = [s["sync_percent"] for s in mid]
            left = [s["sync_remaining_bytes"] for s in mid]
            check(pct == sorted(pct) and pct[-1] > pct[0], "sync_percent did not rise: %s" % pct)
            check(left[-1] < left[0], "the bytes left did not fall: %s" % left)
            going = [s for s in mid if s["sync_remaining_bytes"] > 0]
            check(len(going) >= 3 and all(s["sync_eta_ms"] > 0 and s["sync_gib_per_s"] > 0 for s in going),
                  "no ETA or rate while bytes were left: %s" % going[:1])
            last = mid[-1]
            check(last["sync_total_bytes"] >= DATA_MB << 20, "sync_total_bytes %d < the image's data"
                  % last["sync_total_bytes"])
            check(last["sync_disk_bytes_unread"] >= (DISK_MB - DATA_MB - 64) << 20,
                  "the image's holes were read: %d bytes skipped" % last["sync_disk_bytes_unread"])
            check(last["sync_ram_pages_unread"] > 0, "every RAM page was read")
            lines = out["stdout"].splitlines()
            print("ftvmctl --wait (piped), rc %d:\n  %s" % (out["rc"], "\n  ".join(lines[-6:])))
            check(out["rc"] == 0, "ftvmctl --wait: rc %d: %s" % (out["rc"], out["stderr"]))
            syncing = [int(l.split()[1].rstrip("%")) for l in lines if l.startswith("syncing ")]
            check(len(syncing) >= 3 and syncing == sorted(syncing), "piped progress lines: %s" % lines)
            check(lines[-1].startswith("protected: synced in"), "no final line: %s" % lines[-1:])
            check(a.migrate_info()["state"] == "protected", "not protected after --wait")

            # 3: on a terminal.
            a.ctl("migrate_cancel")
            a.wait_state(("unprotected",), 20)
            nodes[-1].close()
            nodes.append(secondary(topo, work, "s2"))
            master, slave = pty.openpty()
            p = subprocess.Popen(migrate_cmd(a), stdout=slave, stderr=slave)
            os.close(slave)
            tty = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                tty += chunk
            rc = p.wait(300)
            os.close(master)
            text = tty.decode(errors="replace")
            print("ftvmctl --wait (terminal), rc %d: %d redraws, last: %r" % (rc, text.count("\r"),
                                                                              text.split("\r")[-1][-120:]))
            check(rc == 0 and text.count("\r") >= 3 and "[####" in text and "protected: synced in" in text,
                  "no progress bar on a terminal: %r" % text[-400:])

            # 4: nobody listens.
            a.ctl("migrate_cancel")
            a.wait_state(("unprotected",), 20)
            nodes[-1].close()
            r = subprocess.run(migrate_cmd(a), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=60)
            print("ftvmctl --wait with no secondary: rc %d: %s" % (r.returncode, r.stderr.strip()))
            check(r.returncode == 1 and "protection did not start" in r.stderr, "rc %d: %s"
                  % (r.returncode, r.stderr))
        finally:
            close_all(None, nodes)


if __name__ == "__main__":
    main(test)
