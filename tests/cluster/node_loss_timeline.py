#!/usr/bin/env python3
"""node_loss_timeline - where the time goes when the primary's node is lost.

Runs only the "node" drill of test_cluster_drills.py (the real agent, VMM,
kv guest, client load, ftvmd), N times, and after each reads the survivors'
corosync and pacemaker logs and the fence agent's log, and prints a
timeline relative to the kill: token lost, new membership, Pacemaker sees
the node lost, election (when the DC was lost), join, scheduler, fencing
requested / agent started / done / confirmed, promote, first client answer.
At the end: the median of every step, for "the DC was lost" and "it was not".

    python3 tests/cluster/node_loss_timeline.py --drills 6 \\
        [--consensus 600] [--token 1000] [--prop join-integration-timeout=...]

Options:
  --prop NAME=VALUE   `pcs property set` after up (repeatable)
  --totem KEY=VALUE   more corosync totem settings (repeatable)
  --json FILE         append one JSON line per drill (the timeline)
FTVM_CLUSTER_KEEP=1 keeps /var/tmp/ftvm-cluster/<id>.
"""
import argparse
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_cluster_drills as D  # noqa: E402
from cluster import Cluster, ClusterError  # noqa: E402

# (label, log, regex): first match after the kill on any survivor (the DC's
# lines for the controller's steps). {lost} is the lost node's name.
EVENTS = [
    ("token lost", "corosync", r"A processor failed, forming new configuration"),
    ("membership", "corosync", r"A new membership \(.*\) was formed.*Members left"),
    ("pcmk: node lost", "pacemaker", r"pacemaker-controld.*Node {lost} state is now lost"),
    ("election start", "pacemaker", r"pacemaker-controld.*State transition \S+ -> S_ELECTION"),
    ("elected (integration)", "pacemaker", r"pacemaker-controld.*State transition S_ELECTION -> S_INTEGRATION"),
    ("finalize join", "pacemaker", r"pacemaker-controld.*State transition S_INTEGRATION -> S_FINALIZE_JOIN"),
    ("-> policy engine", "pacemaker", r"pacemaker-controld.*State transition \S+ -> S_POLICY_ENGINE"),
    ("re-asking for the CIB", "pacemaker", r"pacemaker-controld.*Re-asking for the CIB"),
    ("scheduler: fence", "pacemaker", r"pacemaker-schedulerd.*(Scheduling|Cluster) node {lost} will be fenced"),
    ("fencing requested", "pacemaker", r"pacemaker-controld.*Requesting fencing \(\w+\) targeting node {lost}"),
    ("fence agent start", "fence", "start"),
    ("fence agent killed", "fence", "killed"),
    ("fence agent done", "fence", "done"),
    ("fencing confirmed", "pacemaker", r"pacemaker-controld.*(Peer|Node) {lost} was (terminated|fenced)"),
    ("pre-notify promote", "pacemaker", r"pacemaker-controld.*Initiating notify operation \S+_pre_notify_promote"),
    ("promote initiated", "pacemaker", r"pacemaker-controld.*Initiating promote operation"),
    ("promote done", "pacemaker", r"pacemaker-controld.*Result of promote operation for \S+ on \S+: ok"),
    ("first answer", "prober", None),
]
TS = re.compile(r"^(\w{3} +\d+ \d\d:\d\d:\d\d(?:\.\d+)?) ")


def parse_ts(s, year):
    main, _, frac = s.partition(".")
    t = time.mktime(time.strptime("%d %s" % (year, main), "%Y %b %d %H:%M:%S"))
    return t + (float("0." + frac) if frac else 0.0)


def read_log(path, since, until):
    year = time.localtime().tm_year
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = TS.match(line)
                if not m:
                    continue
                t = parse_ts(m.group(1), year)
                if since - 1 <= t <= until:
                    out.append((t, line.rstrip("\n")))
    except OSError:
        pass
    return out


def timeline(c, lost, t_wall, t_mono, first_answer_mono, until_wall):
    """{label: seconds after the kill} of the first occurrence of every event."""
    lines = {"corosync": [], "pacemaker": []}
    for n in c.nodes:
        if n.name == lost:
            continue
        for w in lines:
            lines[w] += [(t, n.name, l) for t, l in read_log(n.log_path(w), t_wall, until_wall)]
    for w in lines:
        lines[w].sort()
    fence = [e for e in c.fence_log() if e.get("target") == lost and e.get("time", 0) >= t_wall - 0.01]
    out, raw = {}, {}
    for label, w, rx in EVENTS:
        if w == "fence":
            ev = [e for e in fence if e.get("event") == rx]
            if ev:
                out[label] = ev[0]["time"] - t_wall
            continue
        if w == "prober":
            out[label] = first_answer_mono - t_mono
            continue
        r = re.compile(rx.format(lost=re.escape(lost)))
        for t, node, l in lines[w]:
            if t >= t_wall - 0.002 and r.search(l):
                out[label] = t - t_wall
                raw[label] = "%s %s" % (node, l[l.find("("):][:160] if "(" in l else l[:160])
                break
    return out, raw


def median(v):
    v = sorted(v)
    if not v:
        return None
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drills", type=int, default=5)
    ap.add_argument("--token", type=int, default=D.TOKEN)
    ap.add_argument("--consensus", type=int, default=D.CONSENSUS)
    ap.add_argument("--coefficient", type=int, default=D.COEF)
    ap.add_argument("--prop", action="append", default=[])
    ap.add_argument("--totem", action="append", default=[])
    ap.add_argument("--json")
    ap.add_argument("--agent", default=os.environ.get("FTVM_CLUSTER_AGENT"),
                    help="another ocf:ftvm:ftvm than ra/ftvm (default $FTVM_CLUSTER_AGENT)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--debug", help="PCMK_debug for the daemons (e.g. pacemaker-controld)")
    ap.add_argument("--no-ftvmd", action="store_true", help="do not start ftvmd in the nodes")
    ap.add_argument("--no-pcmk-sampler", action="store_true",
                    help="no crm_mon every 30 ms (the sampler's Pacemaker half; the VMM half stays)")
    a = ap.parse_args()
    path = ":".join([os.path.dirname(D.FTVM), os.path.dirname(D.FTVMCTL), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    totem_extra = dict(kv.split("=", 1) for kv in a.totem)
    env = {"PATH": path}
    if a.debug:
        env["PCMK_debug"] = a.debug
    c = Cluster(nodes=3, token=a.token, consensus=a.consensus, token_coefficient=a.coefficient,
                totem_extra=totem_extra, daemon_env=env, on_node_start=None if a.no_ftvmd else D.start_ftvmd,
                log=D.log, ocf_agents=[("ftvm", "ftvm", a.agent)] if a.agent else None)
    if a.no_ftvmd:
        D.ftvmd_running = lambda n: True
    rows = []
    sampler = prober = load = None
    ok = False
    try:
        c.up(timeout=120, before_start=D.build_network)
        totem = c.runtime_totem()
        D.log("corosync runtime totem: token %s consensus %s" % (totem.get("token"), totem.get("consensus")))
        if a.prop:
            c.pcs(["property", "set"] + a.prop)
            D.log("pcs property set %s" % " ".join(a.prop))
        c.wait_for(lambda: all(D.ftvmd_running(n) for n in c.nodes), 20, what="ftvmd in every node")
        work = os.path.join(c.state_dir, "client")
        os.makedirs(work)
        c.pcs("resource create %s ocf:ftvm:ftvm config=%s node_addrs='%s' watcher_fifo=%s "
              "op monitor interval=2s role=Promoted timeout=20s op monitor interval=3s role=Unpromoted timeout=20s "
              "promotable notify=true promoted-max=1"
              % (D.RSC, c.vm_conf, " ".join("%s=%s%d" % (n.name, D.REP_NET, n.index) for n in c.nodes), D.FIFO))
        sampler = D.Sampler(c)
        if a.no_pcmk_sampler:
            sampler.threads = sampler.threads[:1]
        sampler.start()
        prober = D.Prober(c.client_ns)
        prober.start()
        load = D.Load(c.client_ns, work)
        drills = D.Drills(c, load, prober, sampler)
        c.wait_for(drills.settled, 120, 0.1, what="the VM Promoted and protected")
        load.start()
        kill = c.kill_node
        for i in range(1, a.drills + 1):
            info = {}
            c.wait_for(drills.settled, 120, 0.1, what="settled")
            info["dc"] = c.crm_mon().dc

            def kill_node(n, _info=info):
                _info["wall"] = time.time()
                t = kill(n)
                _info["mono"] = t
                return t
            c.kill_node = kill_node
            try:
                r = drills.run_one("node", i)
            finally:
                c.kill_node = kill
            first = r["failover"] + info["mono"]
            tl, raw = timeline(c, r["node"], info["wall"], info["mono"], first, info["wall"] + 30)
            dc_lost = info["dc"] == r["node"]
            row = {"i": i, "lost": r["node"], "dc": info["dc"], "dc_lost": dc_lost, "new": r["new"], "t": tl}
            rows.append(row)
            print("---- drill %d: %s lost (DC %s%s) -> %s" % (i, r["node"], info["dc"],
                                                           ", the DC was lost" if dc_lost else "", r["new"]))
            for label, _, _ in EVENTS:
                if label in tl:
                    print("  %6.0f ms  %-22s %s" % (tl[label] * 1000, label, raw.get(label, "") if a.verbose else ""))
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(dict(row, props=a.prop, totem=totem_extra, consensus=a.consensus,
                                            token=a.token)) + "\n")
        load.stop()
        load.verify()
        D.check(not sampler.violations, "violations: %s" % sampler.violations)
        ok = True
    except (D.Failure, ClusterError) as e:
        print("FAIL: %s" % e, flush=True)
        c.keep_state = True
    finally:
        if sampler:
            sampler.halt()
        if prober:
            prober.stop.set()
        if load and load.proc and load.proc.poll() is None:
            load.proc.kill()
        c.down()
    for name, sel in (("DC lost", True), ("DC not lost", False)):
        rs = [r for r in rows if r["dc_lost"] == sel]
        if not rs:
            continue
        print("==== %s: %d drills (median ms, min-max)" % (name, len(rs)))
        for label, _, _ in EVENTS:
            v = [r["t"][label] for r in rs if label in r["t"]]
            if v:
                print("  %-22s %6.0f  (%4.0f-%4.0f) n=%d" % (label, median(v) * 1000, min(v) * 1000, max(v) * 1000,
                                                           len(v)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
