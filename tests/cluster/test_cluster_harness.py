#!/usr/bin/env python3
"""Validates the cluster harness with a stand-in promotable resource.

A real 3-node corosync + pacemaker cluster (tests/cluster/cluster.py) with
fencing by ra/fence_ftvm_ns, and `ocf:pacemaker:Stateful` as a promotable
clone in the place of ocf:ftvm:ftvm. Drills:

 1. node loss: every process of the Promoted node is SIGKILLed; the node
    must be fenced and a new Promoted appear on another node;
 2. partition of the Promoted node (fencing works): the majority fences it
    and promotes elsewhere;
 3. partition of an Unpromoted node with its fencing held: the minority has
    no quorum and stops its instance (no-quorum-policy=stop), the majority
    keeps its one Promoted;
 4. partition of the Promoted node with its fencing held: the minority
    demotes and stops; the majority does NOT promote until the fencing is
    released and succeeds.

All along, a sampler reads the real state of every instance (the Stateful
agent's state file in each node's private /run) every 20 ms: never two
Promoted. Prints the measured times. Exit 77 if not root or packages are
missing.
"""
import calendar
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cluster import Cluster, ClusterError, missing_requirements  # noqa: E402

RSC = "st"
STATE = "/run/Stateful-%s.state" % RSC
HOLD_S = 12  # how long fencing is held in drills 3 and 4


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def real_state(node):
    """The instance's state on node as its agent recorded it in the node's
    private /run: Promoted, Unpromoted, Stopped, or "down" (no node)."""
    try:
        with open(node.path(STATE)) as f:
            return f.read().strip() or "Stopped"
    except (ClusterError, OSError):
        return "down" if not node.is_up() else "Stopped"


class Sampler(threading.Thread):
    """Reads every node's real instance state (Promoted/Unpromoted/Stopped/
    down) every `period` s; records changes and the most Promoted seen at once."""

    def __init__(self, cluster, period=0.02):
        super().__init__(daemon=True)
        self.c, self.period = cluster, period
        self.stop_ev = threading.Event()
        self.max_promoted = 0
        self.bad = []
        self.changes = []
        self.last = {}
        self.lock = threading.Lock()

    def run(self):
        while not self.stop_ev.is_set():
            now = {n.name: real_state(n) for n in self.c.nodes}
            t = time.monotonic()
            with self.lock:
                p = sorted(k for k, v in now.items() if v == "Promoted")
                self.max_promoted = max(self.max_promoted, len(p))
                if len(p) > 1:
                    self.bad.append((t, now))
                for k, v in now.items():
                    if self.last.get(k) != v:
                        self.changes.append((t, k, v))
                self.last = now
            self.stop_ev.wait(self.period)

    def when(self, node, state, after):
        """First time at/after `after` the node's instance entered state."""
        with self.lock:
            for t, k, v in self.changes:
                if t >= after and k == node and v == state:
                    return t
        return None

    def current(self):
        with self.lock:
            return dict(self.last)

    def stop(self):
        self.stop_ev.set()
        self.join(5)


def steady(c, timeout=90):
    """Waits for all nodes online, 1 Promoted + 2 Unpromoted, in the view of
    every node and in the real states. Returns the Promoted node's name."""
    def ok():
        names = [n.name for n in c.nodes]
        st = None
        for n in c.nodes:
            st = n.crm_mon()
            if not st.quorate or st.online() != names:
                return None
            roles = st.roles(RSC)
            if sorted(roles.values()) != ["Promoted", "Unpromoted", "Unpromoted"]:
                return None
        real = {n.name: real_state(n) for n in c.nodes}
        if sorted(real.values()) != ["Promoted", "Unpromoted", "Unpromoted"]:
            return None
        return st.promoted(RSC)[0]
    return c.wait_for(ok, timeout, 0.5, what="3 nodes online, 1 Promoted and 2 Unpromoted")


def majority_view(c, exclude):
    for n in c.nodes:
        if n.name != exclude and n.is_up():
            try:
                st = n.crm_mon(timeout=10)
                if st.quorate:
                    return st
            except ClusterError:
                pass
    return None


def fenced_in_history(c, target, wall0):
    """The successful fence event of target completed at/after wall0 (time.time())
    in `stonith_admin --history '*' --verbose` of a quorate node, or None.
    (The fencers keep their history in memory: a restarted node gets it back
    from its peers only some seconds after joining, so check it per drill.)"""
    for e in c.fence_history():
        if e.get("target") == target and e.get("status") == "success":
            try:
                done = calendar.timegm(time.strptime(e["completed"], "%Y-%m-%d %H:%M:%SZ"))
            except (KeyError, ValueError):
                continue
            if done >= int(wall0):
                return e
    return None


def fence_done(c, target, after_mono):
    """monotonic time at which the agent finished killing target after after_mono."""
    for e in c.fence_log():
        if e.get("target") == target and e.get("event") == "done" and e.get("result") == "success" \
                and e["monotonic"] >= after_mono:
            return e
    return None


def drill_node_loss(c, s, times):
    p = steady(c)
    print("-- drill 1: node loss of the Promoted node %s" % p)
    wall0 = time.time()
    t0 = c.kill_node(p)
    maj = c.wait_for(lambda: (lambda st: st if st and p not in st.online() else None)(majority_view(c, p)),
                     30, 0.2, what="the survivors to see %s gone" % p)
    t_lost = time.monotonic()
    # (until the fencing, crm_mon still shows the lost node's instance as Promoted)
    st = c.wait_for(lambda: (lambda st: st if st and st.promoted(RSC) and p not in st.promoted(RSC) else None)(
        majority_view(c, p)), 60, 0.2, what="a new Promoted")
    t_prom = time.monotonic()
    new = st.promoted(RSC)
    check(new and p not in new and len(new) == 1, "after node loss the Promoted is %s" % new)
    fe = c.wait_for(lambda: fence_done(c, p, t0), 30, 0.2, what="the fence agent to kill %s" % p)
    ev = c.wait_for(lambda: fenced_in_history(c, p, wall0), 30, 0.5, what="fence history: %s fenced" % p)
    real_prom = s.when(new[0], "Promoted", t0)
    check(fe["monotonic"] <= (real_prom or t_prom), "promoted before the fencing completed")
    times["node loss -> seen offline"] = t_lost - t0
    times["node loss -> fenced (agent done)"] = fe["monotonic"] - t0
    times["node loss -> new Promoted (real state)"] = (real_prom or t_prom) - t0
    times["node loss -> new Promoted (crm_mon)"] = t_prom - t0
    print("   %s killed; survivors saw it gone after %.1f s, fenced (%s by %s, %s) after %.1f s, "
          "new Promoted on %s after %.1f s (crm_mon: %.1f s)"
          % (p, t_lost - t0, ev.get("action"), ev.get("delegate"), ev.get("status"), fe["monotonic"] - t0,
             new[0], (real_prom or t_prom) - t0, t_prom - t0))
    took = c.restart_node(p, timeout=90)
    times["restart of a fenced node -> online"] = took
    steady(c)
    print("   %s restarted, back online after %.1f s; steady again" % (p, took))


def drill_partition_promoted(c, s, times):
    p = steady(c)
    print("-- drill 2: partition of the Promoted node %s (fencing works)" % p)
    wall0 = time.time()
    t0 = c.partition(p)
    fe = c.wait_for(lambda: fence_done(c, p, t0), 60, 0.2, what="the majority to fence %s" % p)
    st = c.wait_for(lambda: (lambda st: st if st and st.promoted(RSC) and p not in st.promoted(RSC) else None)(
        majority_view(c, p)), 60, 0.2, what="a new Promoted in the majority")
    new = st.promoted(RSC)
    check(len(new) == 1 and p not in new, "majority Promoted: %s" % new)
    check(not c.node(p).is_up(), "%s still up after being fenced" % p)
    real_prom = s.when(new[0], "Promoted", t0)
    check(real_prom is not None and fe["monotonic"] <= real_prom, "promoted before the fencing completed")
    ev = c.wait_for(lambda: fenced_in_history(c, p, wall0), 30, 0.5, what="fence history: %s fenced" % p)
    times["partition of Promoted -> fenced"] = fe["monotonic"] - t0
    times["partition of Promoted -> new Promoted"] = real_prom - t0
    print("   majority fenced %s (%s by %s) after %.1f s and promoted %s after %.1f s"
          % (p, ev.get("action"), ev.get("delegate"), fe["monotonic"] - t0, new[0], real_prom - t0))
    c.heal(p)
    c.restart_node(p, timeout=90)
    steady(c)
    print("   healed and restarted; steady again")


def drill_partition_held(c, s, times, promoted):
    p = steady(c)
    st = c.crm_mon()
    victim = p if promoted else [n for n, r in sorted(st.roles(RSC).items()) if r == "Unpromoted"][0]
    tag = "3" if not promoted else "4"
    print("-- drill %s: partition of the %s node %s with its fencing held %d s"
          % (tag, "Promoted" if promoted else "Unpromoted", victim, HOLD_S))
    c.hold_fencing(victim)
    wall0 = time.time()
    t0 = c.partition(victim)
    v = c.node(victim)
    # the minority loses quorum and stops its instance
    c.wait_for(lambda: not v.crm_mon(timeout=10).quorate, 30, 0.2, what="%s to lose quorum" % victim)
    t_noq = time.monotonic()
    c.wait_for(lambda: s.current().get(victim) == "Stopped", 30, 0.1, what="%s to stop its instance" % victim)
    t_stop = s.when(victim, "Stopped", t0)
    vst = v.crm_mon(timeout=10)
    check(not vst.quorate, "minority quorate")
    check(victim not in vst.running_on(RSC), "minority view still runs %s: %s" % (RSC, vst.roles(RSC)))
    times["partition (%s) -> minority lost quorum" % ("Promoted" if promoted else "Unpromoted")] = t_noq - t0
    times["partition (%s) -> minority stopped its instance" % ("Promoted" if promoted else "Unpromoted")] = \
        t_stop - t0
    print("   minority %s: no quorum after %.1f s, instance stopped after %.1f s"
          % (victim, t_noq - t0, t_stop - t0))
    # the majority: while the fencing hangs
    while time.monotonic() < t0 + HOLD_S:
        mst = majority_view(c, victim)
        check(mst is not None, "the majority lost quorum")
        prom = mst.promoted(RSC)
        if promoted:
            check(not prom or prom == [victim],
                  "majority promoted %s while %s was not fenced yet" % (prom, victim))
        else:
            check(prom == [p], "majority Promoted changed: %s (was %s)" % (prom, p))
        check(c.node(victim).is_up(), "%s was fenced although its fencing is held" % victim)
        time.sleep(0.5)
    real = s.current()
    check(not fence_done(c, victim, t0), "fenced while held")
    if promoted:
        check("Promoted" not in real.values(), "a Promoted while the old one is unfenced: %s" % real)
        print("   majority: no Promoted during the %d s the fencing hangs (the old one is not known dead)"
              % HOLD_S)
    else:
        print("   majority kept its Promoted %s during the %d s the fencing hangs" % (p, HOLD_S))
    t_rel = time.monotonic()
    c.release_fencing(victim)
    fe = c.wait_for(lambda: fence_done(c, victim, t0), 60, 0.1, what="%s fenced after release" % victim)
    c.wait_for(lambda: fenced_in_history(c, victim, wall0), 30, 0.5, what="fence history: %s fenced" % victim)
    if promoted:
        c.wait_for(lambda: [k for k, x in s.current().items() if x == "Promoted"], 60, 0.1,
                   what="a new Promoted after the fencing")
        new = [k for k, x in s.current().items() if x == "Promoted"]
        t_prom = s.when(new[0], "Promoted", t_rel)
        check(victim not in new, "the fenced node is Promoted")
        times["fencing released -> new Promoted"] = t_prom - t_rel
        print("   released: %s fenced after %.2f s, %s Promoted after %.1f s"
              % (victim, fe["monotonic"] - t_rel, new[0], t_prom - t_rel))
    else:
        print("   released: %s fenced after %.2f s" % (victim, fe["monotonic"] - t_rel))
    c.heal(victim)
    c.restart_node(victim, timeout=90)
    steady(c)
    print("   healed and restarted; steady again")


def main():
    why = missing_requirements()
    if why:
        print("SKIP: " + "; ".join(why))
        return 77
    times = {}
    t_all = time.monotonic()
    token = int(os.environ.get("FTVM_CLUSTER_TOKEN", "3000"))
    with Cluster(nodes=3, token=token) as c:
        try:
            c.up(timeout=90)
            times["up (start -> quorate)"] = c.timings["quorate"]
            times["up (start -> fencing configured)"] = c.timings["up"]
            t = time.monotonic()
            for cmd in ("resource create %s ocf:pacemaker:Stateful promotable notify=true" % RSC,
                        "resource update %s op monitor interval=3s role=Promoted timeout=20s "
                        "op monitor interval=4s role=Unpromoted timeout=20s" % RSC):
                print("pcs " + cmd)
                c.pcs(cmd)
            p = steady(c, 60)
            times["resource create -> 1 Promoted + 2 Unpromoted"] = time.monotonic() - t
            print("steady: Promoted on %s after %.1f s" % (p, times["resource create -> 1 Promoted + 2 Unpromoted"]))
            s = Sampler(c)
            s.start()
            try:
                drill_node_loss(c, s, times)
                drill_partition_promoted(c, s, times)
                drill_partition_held(c, s, times, promoted=False)
                drill_partition_held(c, s, times, promoted=True)
            finally:
                s.stop()
            check(not s.bad, "two Promoted at once: %s" % s.bad[:3])
            check(s.max_promoted == 1, "most Promoted at once: %d" % s.max_promoted)
            kills = [e for e in c.fence_log() if e.get("event") == "done" and e.get("result") == "success"]
            print("fence agent: " + "; ".join("%s %s by %s" % (e["action"], e["target"], e["executor"])
                                               for e in kills))
            check(len(kills) == 4, "expected 4 fencings, the agent did %d" % len(kills))
        except (Failure, ClusterError):
            print(c.logs(25))
            c.keep_state = True
            raise
    print("\ntimes (token %d ms):" % token)
    for k, v in times.items():
        print("  %-50s %6.1f s" % (k, v))
    print("never two Promoted (real states sampled every 20 ms); whole test %.0f s" % (time.monotonic() - t_all))
    print("PASS")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Failure, ClusterError) as e:
        print("FAIL: %s" % e)
        sys.exit(1)
