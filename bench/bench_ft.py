#!/usr/bin/env python3
"""Protection figures, measured in one run on this machine over the
replication link of the drill topology (veth between two namespaces):

for the kv and dirty workloads, unprotected vs event vs epoch (3 intervals)
vs hybrid:
  pause per checkpoint (p50/p99/max), added kv latency (p50/p99 over the
  unprotected run), kv throughput as a ratio of unprotected, pages and
  bytes per checkpoint with and without LZ4, dirty pages/s the guest keeps;
the replication link plaintext against TLS 1.3 (a pre-shared key), event
policy, 1 client: pause, added latency, throughput, in the same run;
and failover time (SIGKILL of the primary -> first answer from the
secondary, --failover-on-peer-loss).

docs/benchmarks.md explains how to read them.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from ftvmtest import GUEST_IP, KV_PORT, require_kvm  # noqa: E402
from drill import Client, Node, Topology, make_image, make_psk, pct, wait_ready  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot import cdf_of, cdf_png  # noqa: E402

POLICIES = ["unprotected", "event", "epoch:10", "epoch:20", "epoch:50", "hybrid:200:20"]



def start_pair(topo, work, tag, policy, workload, tls=None, disk_mb=64):
    """A guest on A with the workload (None: the kv default), protected to
    B under policy unless it is "unprotected"; (primary, secondary or None)."""
    img = make_image(os.path.join(work, tag + ".img"), disk_mb)
    a = Node(topo, "A", work, tag, img, "shared", False,
             policy=policy if policy != "unprotected" else "event",
             append=workload, tls=tls)
    wait_ready(a)
    b = None
    if policy != "unprotected":
        b = Node(topo, "B", work, tag, img, "shared", True, append=workload, tls=tls)
        a.protect_to("B")
    return a, b


def tls_table(topo, work, client, seconds, kv_append, out):
    """Plaintext against TLS on the same workload, alternated to spread
    the machine's noise over both."""
    psk = make_psk(work, "bench.psk")
    print("replication link: plaintext vs TLS 1.3 (pre-shared key), event policy, 1 client, "
          "%.0f s each, 3 rounds" % seconds)
    runs = {"unprotected": [], "plaintext": [], "tls": []}
    cipher = ""
    for r in range(3):
        for label in runs:
            pol = "unprotected" if label == "unprotected" else "event"
            n1, n2 = start_pair(topo, work, "tls%d-%s" % (r, label), pol, kv_append,
                                tls=psk if label == "tls" else None)
            try:
                kv_run(client, 0.3)
                s = kv_run(client, seconds)
                f = ckpt_figures(n1 if n2 else None)
                if label == "tls":
                    cipher = n1.migrate_info()["cipher"]
            finally:
                for n in (n1, n2):
                    if n:
                        n.close()
            runs[label].append((s, f))
    def med(label, key):
        return sorted(x[0][key] for x in runs[label])[1]
    def med_pause(label, q):
        return sorted(x[1]["pause_us"][q] for x in runs[label])[1]
    base = med("unprotected", "throughput_ops_s")
    base_p50, base_p99 = med("unprotected", "latency_p50_us"), med("unprotected", "latency_p99_us")
    print("%-12s %9s %7s %14s %14s %16s" % ("link", "ops/s", "ratio", "lat p50/p99", "added p50/p99", "pause p50/p99"))
    res = {}
    for label in runs:
        tput, p50, p99 = med(label, "throughput_ops_s"), med(label, "latency_p50_us"), med(label, "latency_p99_us")
        pause = "%6d/%6d us" % (med_pause(label, "p50"), med_pause(label, "p99")) if label != "unprotected" else "-"
        res[label] = {"ops_s": tput, "lat_p50_us": p50, "lat_p99_us": p99, "added_p50_us": p50 - base_p50}
        print("%-12s %9.0f %6.2fx %6d/%6d us %6d/%6d us %16s" % (
            label, tput, tput / base, p50, p99, p50 - base_p50, p99 - base_p99, pause), flush=True)
    added_plain, added_tls = res["plaintext"]["added_p50_us"], res["tls"]["added_p50_us"]
    print("TLS (%s): added latency p50 %d us against %d us plaintext: %+.0f %% (medians of 3)"
          % (cipher, added_tls, added_plain, 100.0 * (added_tls - added_plain) / max(1, added_plain)))
    out["tls"] = {"cipher": cipher, "runs": res}
    print()


def one_failover(topo, work, client, tag, workload):
    """A fresh event-policy pair under kv load, its primary SIGKILLed:
    (seconds to the first answer from the secondary, acknowledged writes
    lost)."""
    n1, n2 = start_pair(topo, work, tag, "event", workload)
    try:
        client.acks = os.path.join(work, tag + ".acks")
        client.start_load(seconds=3600, keys=100)
        time.sleep(0.7)
        t = time.monotonic()
        n1.kill()
        took = client.probe_until_answer(t)
        client.stop_load()
        return took, client.verify()["lost"]
    finally:
        if client.load and client.load.poll() is None:
            client.load.kill()
            client.load.wait(10)
        for n in (n1, n2):
            n.close()


def kv_run(client, seconds, clients=1):
    """`clients` concurrent closed-loop clients for `seconds`; throughput
    is their sum, latency percentiles are the worst client's."""
    import subprocess
    tag = int(time.monotonic() * 1000)
    procs = [subprocess.Popen(client.topo.cmd("C", client_bin(), "--server", "%s:%d" % (GUEST_IP, KV_PORT),
                                              "--json", "load", "--duration-ms", str(int(seconds * 1000)), "--keys", "500",
                                              "--read-ratio", "0.5", "--key-prefix", "b%d-%d" % (tag, i)),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for i in range(clients)]
    res = [json.loads([l for l in p.communicate(timeout=600)[0].splitlines() if l.strip()][-1]) for p in procs]
    out = dict(res[0])
    out["throughput_ops_s"] = sum(r["throughput_ops_s"] for r in res)
    for k in ("latency_p50_us", "latency_p99_us", "stale_reads", "wrong_answers", "gave_up"):
        out[k] = max(r[k] for r in res)
    return out


def client_bin():
    from ftvmtest import FTVM_KV
    return FTVM_KV


def stat(client):
    r = client.run("--json", "stat")
    return json.loads([l for l in r.stdout.splitlines() if l.strip()][-1])


def ckpt_figures(a):
    if a is None:
        return {}
    i = a.migrate_info()
    ep = max(i["epochs"], 1)
    return {"epochs": i["epochs"], "pause_us": i["pause_us"], "pages_per_ckpt": i["pages_per_checkpoint"],
            "raw_kib_per_ckpt": i["page_bytes_raw"] / ep / 1024, "lz4_kib_per_ckpt": i["page_bytes_sent"] / ep / 1024,
            "output_latency_us": i["output_latency_us"], "compression_ratio": i["compression_ratio"]}


def fmt_pause(f):
    if not f:
        return "%-22s" % "-"
    p = f["pause_us"]
    return "%5d/%5d/%6d us" % (p["p50"], p["p99"], p["max"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="kv run length per policy")
    ap.add_argument("--clients", type=int, default=8, help="concurrent kv clients for the throughput table")
    ap.add_argument("--dirty-rate", type=int, default=50000, help="dirty workload pages/s (default 50000)")
    ap.add_argument("--dirty-seconds", type=float, default=3.0)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--only", choices=["tls"], help="only this table")
    ap.add_argument("--plot", default="ftvm-bench-latency.png",
                    help="PNG of the 1-client latency CDFs per policy (default ./ftvm-bench-latency.png)")
    a = ap.parse_args()
    require_kvm()
    work = tempfile.mkdtemp(prefix="ftvm-bench-ft-")
    out = {"kv": {}, "dirty": {}}
    kv_append = "workload=kv ip=%s/24 port=%d" % (GUEST_IP, KV_PORT)
    with Topology() as topo:
        client = Client(topo, work)
        if a.only == "tls":
            tls_table(topo, work, client, a.seconds, kv_append, out)
            return 0
        tls_table(topo, work, client, a.seconds, kv_append, out)
        cdfs = {}
        for nclients in (1, a.clients):
            print("kv workload, %d closed-loop client(s), 50%% PUT (write + flush before OK), %.0f s each"
                  % (nclients, a.seconds))
            print("%-14s %9s %7s %14s %14s %22s %9s %10s %10s" % (
                "policy", "ops/s", "ratio", "lat p50/p99", "added p50/p99", "pause p50/p99/max",
                "pages/ck", "KiB/ck", "LZ4 KiB/ck"))
            base = None
            for pol in POLICIES:
                n1, n2 = start_pair(topo, work, "kv%d-%s" % (nclients, pol.replace(":", "_")), pol, kv_append)
                try:
                    kv_run(client, 0.3)
                    s = kv_run(client, a.seconds, nclients)
                    f = ckpt_figures(n1 if pol != "unprotected" else None)
                finally:
                    for n in (n1, n2):
                        if n:
                            n.close()
                if base is None:
                    base = s
                out["kv"]["%d:%s" % (nclients, pol)] = {"load": s, "ckpt": f}
                if nclients == 1:
                    cdfs[pol] = cdf_of(s)
                print("%-14s %9.0f %6.2fx %6d/%6d us %6d/%6d us %22s %9s %10s %10s" % (
                    pol, s["throughput_ops_s"], s["throughput_ops_s"] / base["throughput_ops_s"],
                    s["latency_p50_us"], s["latency_p99_us"],
                    s["latency_p50_us"] - base["latency_p50_us"], s["latency_p99_us"] - base["latency_p99_us"],
                    fmt_pause(f), f.get("pages_per_ckpt", {}).get("p50", "-"),
                    "%.0f" % f["raw_kib_per_ckpt"] if f else "-", "%.0f" % f["lz4_kib_per_ckpt"] if f else "-"),
                    flush=True)
            print()
            if nclients == 1:
                print(cdf_png(os.path.abspath(a.plot), "kv, 1 closed-loop client, 50% PUT: request latency by policy",
                              cdfs))
                print()

        dirty_append = "workload=dirty pages=16384 rate=%d ip=%s/24 port=%d" % (a.dirty_rate, GUEST_IP, KV_PORT)
        print("\ndirty workload: 16384-page working set written at %d pages/s (guest's own pace)" % a.dirty_rate)
        print("%-14s %12s %22s %9s %10s %10s" % ("policy", "pages/s", "pause p50/p99/max", "pages/ck",
                                                 "KiB/ck", "LZ4 KiB/ck"))
        for pol in POLICIES:
            n1, n2 = start_pair(topo, work, "dirty-" + pol.replace(":", "_"), pol, dirty_append)
            try:
                time.sleep(0.5)
                s0 = stat(client)
                time.sleep(a.dirty_seconds)
                s1 = stat(client)
                f = ckpt_figures(n1 if pol != "unprotected" else None)
            finally:
                for n in (n1, n2):
                    if n:
                        n.close()
            rate = (int(s1["dirtied"]) - int(s0["dirtied"])) * 1e9 / (int(s1["ns"]) - int(s0["ns"]))
            out["dirty"][pol] = {"pages_per_s": rate, "ckpt": f}
            print("%-14s %12.0f %22s %9s %10s %10s" % (
                pol, rate, fmt_pause(f), f.get("pages_per_ckpt", {}).get("p50", "-"),
                "%.0f" % f["raw_kib_per_ckpt"] if f else "-", "%.0f" % f["lz4_kib_per_ckpt"] if f else "-"),
                flush=True)

        print("\nfailover: SIGKILL of the primary -> first answer from the secondary (--failover-on-peer-loss), "
              "event policy, kv load running")
        times = [one_failover(topo, work, client, "fo%d" % i, kv_append)[0] for i in range(a.kills)]
        out["failover_ms"] = [t * 1000 for t in times]
        print("failover over %d kills: p50 %.0f ms, max %.0f ms" % (len(times), pct(times, 50) * 1000,
                                                                  max(times) * 1000))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
