#!/usr/bin/env python3
"""Failover drills of ocf:ftvm:ftvm on a real 3-node corosync + Pacemaker
cluster (tests/cluster/cluster.py), with the real VMM, the kv guest, a kv
client under load, and ftvmd running in every node.

Drills (FTVM_CLUSTER_DRILLS of each, default 5), interleaved:
  kill       SIGKILL of the primary's VMM process
  node       loss of the whole primary node (power cut; fenced, restarted):
             the secondary's ftvmd takes over as soon as corosync says the
             node is gone (local takeover), Pacemaker follows
  partition  every link of the primary node cut (cluster LAN, VM LAN,
             replication): the same local takeover; the majority fences the
             old primary; healed and restarted
  lan        only the primary node's cluster LAN cut: its VM LAN and its
             replication link stay up. The same local takeover; the old
             primary, still on the LAN and still linked to its secondary,
             gets no more ACKs and must release nothing (checked); fenced
  isolate    every link of the *secondary's* node cut: the takeover must
             not happen (that node has no quorum); the primary revokes it
             through ftvmd and serves on; the isolated node is fenced
  mce        a machine check injected on the primary's node (a line on its
             ftvmd FIFO): ftvmd hands the VM over and fails the instance
  link       only the in-sync secondary's replication link cut: no failover;
             the primary holds its output until its event hook has marked
             that secondary stale in the CIB (ftvm-vm-stale), then serves on
             unprotected; the stale secondary is never promoted, Pacemaker
             restarts it, the primary is protected again by the cluster

After each: a new Promoted serves, the client lost nothing (ack log +
`ftvm-kv verify`), the lost node is back, protection is restored by the
cluster itself. A sampler checks all along that there is never more than
one Promoted: in Pacemaker's view, and for real (at most one VMM that is a
primary *releasing output*: alone, or protected with its released-output
count growing; one that holds every output, revoking its lost secondary or
stopped, or whose secondary took over so that no ACK comes, does not count
however long its guest runs).

Environment: FTVM_CLUSTER_DRILLS (5), FTVM_CLUSTER_TOKEN (1000 ms),
FTVM_CLUSTER_CONSENSUS (600 ms), FTVM_CLUSTER_TOKEN_COEFFICIENT (0),
FTVM_CLUSTER_KINDS=kill,node,... runs only those kinds,
FTVM_CLUSTER_KEEP=1 keeps the state directory, FTVM_CLUSTER_AGENT=PATH runs
another ocf:ftvm:ftvm than ra/ftvm. Exit 77 (skip) when the
machine cannot run it.
"""
import ctypes
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from cluster import Cluster, ClusterError, missing_requirements, sh as csh, wait_for  # noqa: E402
from ftvmtest import BUILD, FTVM, FTVM_KV, FTVMCTL, GUEST, GUEST_IP, KV_PORT  # noqa: E402

SRC = os.path.dirname(os.path.dirname(HERE))
FTVM_RA = os.path.join(SRC, "ra", "ftvm")
FTVMD = next((p for p in (os.path.join(BUILD, "ftvmd"), os.path.join(BUILD, "ra", "ftvmd")) if os.path.exists(p)),
             os.path.join(BUILD, "ftvmd"))
RSC = "vm"
VM_NAME = "vm1"
STATE = "/run/ftvm"
SOCK = STATE + "/" + VM_NAME + ".sock"
FIFO = "/run/ftvmd.mce"
CLIENT_IP = "10.0.0.1"
GUEST_MAC = "52:54:00:12:34:56"
REP_NET = "10.99.0."
DRILLS = int(os.environ.get("FTVM_CLUSTER_DRILLS", "5"))
TOKEN = int(os.environ.get("FTVM_CLUSTER_TOKEN", "1000"))
CONSENSUS = os.environ.get("FTVM_CLUSTER_CONSENSUS", "600")
CONSENSUS = int(CONSENSUS) if CONSENSUS not in ("", "default") else None
COEF = os.environ.get("FTVM_CLUSTER_TOKEN_COEFFICIENT", "0")
COEF = int(COEF) if COEF not in ("", "default") else None
ALL_KINDS = ("kill", "mce", "node", "partition", "lan", "link", "isolate")
KINDS = ALL_KINDS
if os.environ.get("FTVM_CLUSTER_KINDS"):	# a subset, e.g. "node,partition" (a longer soak of a few kinds)
    KINDS = tuple(k for k in ALL_KINDS if k in os.environ["FTVM_CLUSTER_KINDS"].split(","))
CONTROL = "/run/ftvmd-%s.sock" % RSC
# The decisions on protection sessions: on the node's own "disk" (its
# /var/lib/pacemaker survives a power cut, as a real node's would).
DECISIONS = "/var/lib/pacemaker/ftvmd-%s.state" % RSC

T0 = time.monotonic()


def log(msg):
    print("[%7.2f] %s" % (time.monotonic() - T0, msg), flush=True)


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def skip(why):
    print("SKIP: " + why, flush=True)
    sys.exit(77)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] if v else float("nan")


# ---------------------------------------------------------------- the VMM's monitor, from the machine

def vmm_query(node, timeout=1.0):
    """{"migrate": {...}, "status": {...}} of the node's VMM, through its
    monitor socket (seen from the machine through /proc/<holder>/root).
    None when the node is down or no VMM answers."""
    try:
        path = node.path(SOCK)
    except ClusterError:
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    buf = b""
    try:
        s.connect(path)
        s.sendall(b"json\ninfo migrate\ninfo status\n")
        while True:
            lines = [l for l in buf.split(b"\n") if l.strip()]
            answers = [l[l.index(b"{"):] for l in lines if b"{" in l]
            if len(answers) >= 3 and buf.endswith(b"\n"):
                break
            d = s.recv(65536)
            if not d:
                return None
            buf += d
        out = [json.loads(a) for a in answers[1:3]]
        if "return" not in out[0] or "return" not in out[1]:
            return None
        return {"migrate": out[0]["return"], "status": out[1]["return"], "t": time.monotonic()}
    except (OSError, ValueError):
        return None
    finally:
        s.close()


def vmm_cmds(node, cmds, timeout=5.0):
    """Runs monitor commands (JSON mode) on the node's VMM; their answers."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(node.path(SOCK))
    s.sendall(("json\n" + "".join(c + "\n" for c in cmds)).encode())
    buf = b""
    while True:
        answers = [l[l.index(b"{"):] for l in buf.split(b"\n") if b"{" in l]
        if len(answers) >= len(cmds) + 1 and buf.endswith(b"\n"):
            break
        d = s.recv(65536)
        if not d:
            raise Failure("%s: the VMM closed its monitor" % node.name)
        buf += d
    s.close()
    return [json.loads(a) for a in answers[1:len(cmds) + 1]]


def ram_check(c, prim, q):
    """FTVM_CLUSTER_RAMCHECK=1: the primary is paused, checkpointed once
    more (epoch policy), and its memory compared page by page with its
    secondary's: after that checkpoint they must be equal."""
    peer = q["migrate"]["peer"]
    sec = [n for n in c.nodes if peer.startswith(REP_NET + "%d:" % n.index)][0]
    policy = q["migrate"].get("policy", "event")
    vmm_cmds(prim, ["stop", "migrate_set_policy epoch:20"])
    try:
        time.sleep(0.4)
        vmm_cmds(prim, ["x-ram-crc /run/ftvm/ram.crc"])
        vmm_cmds(sec, ["x-ram-crc /run/ftvm/ram.crc"])
        qp, qs = vmm_query(prim), vmm_query(sec)
    finally:
        vmm_cmds(prim, ["migrate_set_policy " + policy, "cont"])
    def load(n):
        with open(n.path("/run/ftvm/ram.crc")) as f:
            return dict(l.split() for l in f.read().splitlines())
    a, b = load(prim), load(sec)
    diff = sorted(int(k) for k in set(a) | set(b) if a.get(k) != b.get(k))
    log("ram check: %s (epoch %s, acked %s) vs %s (committed %s): %d pages, %d differ %s"
        % (prim.name, qp["migrate"].get("epoch"), qp["migrate"].get("acked_epoch"), sec.name,
           qs["migrate"].get("committed_epoch"), len(a), len(diff), diff[:16]))
    check(not diff, "memory of %s and its secondary %s differ in %d pages: %s" % (prim.name, sec.name, len(diff), diff[:32]))


RAMCHECK = os.environ.get("FTVM_CLUSTER_RAMCHECK") == "1"


def serving_primary(q):
    """A VMM that is primary, not handed over, and whose guest runs."""
    return (q is not None and q["migrate"].get("role") == "primary" and q["migrate"].get("state") != "handed-over"
            and q["status"].get("status") == "running")


# A primary whose output can never leave: it holds all of it until its
# lost secondary is revoked (revoking-peer), or for good (stopped), or it
# handed the guest over.
HOLDING = ("revoking-peer", "stopped", "handing-over", "handed-over")
# A primary alone: its output passes through.
ALONE = ("unprotected", "failed-over")


def answering(q, before):
    """Does this serving primary release output? Alone, yes; holding for
    good, no; protected (or syncing), only if it released something since
    the sample `before` of the same VMM (a primary whose secondary took
    over gets no more ACKs: its output stays held, its guest runs on)."""
    if not serving_primary(q):
        return False
    st = q["migrate"].get("state")
    if st in HOLDING:
        return False
    if st in ALONE:
        return True
    if before is None or before["migrate"].get("session") != q["migrate"].get("session"):
        return True  # no earlier sample to compare with: count it
    return q["migrate"].get("released_outputs", 0) > before["migrate"].get("released_outputs", 0)


# ---------------------------------------------------------------- a UDP prober in the client namespace

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def socket_in_netns(ns, *args):
    """A socket created in network namespace ns (setns in a short-lived
    thread: the namespace is per thread; the socket keeps it)."""
    res = {}

    def work():
        try:
            fd = os.open("/run/netns/" + ns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            res["s"] = socket.socket(*args)
        except Exception as e:  # noqa: BLE001
            res["e"] = e
    t = threading.Thread(target=work)
    t.start()
    t.join()
    if "e" in res:
        raise res["e"]
    return res["s"]


class Prober(threading.Thread):
    """TIME requests to the guest every `period` s; records when answers
    arrive (time.monotonic()). Measures failover: injection -> first answer
    after the interruption."""

    def __init__(self, ns, period=0.005):
        super().__init__(daemon=True)
        self.s = socket_in_netns(ns, socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((CLIENT_IP, 0))
        self.s.setblocking(False)
        self.period = period
        self.answers = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.seq = 0

    def run(self):
        import select
        nxt = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= nxt:
                self.seq += 1
                try:
                    self.s.sendto(b"TIME p%d" % self.seq, (GUEST_IP, KV_PORT))
                except OSError:
                    pass
                nxt = now + self.period
            r, _, _ = select.select([self.s], [], [], max(0.0, nxt - time.monotonic()))
            if r:
                while True:
                    try:
                        d = self.s.recv(512)
                    except OSError:
                        break
                    if d.startswith(b"TIME p"):
                        t = time.monotonic()
                        with self.lock:
                            self.answers.append(t)
                            if len(self.answers) > 200000:
                                del self.answers[:100000]

    def after(self, t):
        with self.lock:
            return [a for a in self.answers if a > t]

    def failover(self, t_inj, t_end):
        """(seconds from t_inj to the first answer after the longest gap in
        [t_inj, t_end], that gap) — for a kill the gap starts at the
        injection; for a handover the old primary may answer a little longer."""
        pts = [t_inj] + [a for a in self.after(t_inj) if a <= t_end]
        if len(pts) < 2:
            return None, None
        best = max(range(1, len(pts)), key=lambda i: pts[i] - pts[i - 1])
        return pts[best] - t_inj, pts[best] - pts[best - 1]


# ---------------------------------------------------------------- the "never two Promoted" sampler

def explained(qs):
    """Drops from the answering primaries an old primary that only releases
    what its taker explains: the secondary of its session took over from
    checkpoint C (failed-over, committed_epoch C), and the old one's
    acknowledged checkpoint is at most C. Such frames were acknowledged
    before the takeover; the new primary re-issues them too (design.md:
    re-issue is safe). An acknowledged checkpoint past C would be state the
    new primary does not have: that stays a violation."""
    takers = [q for _, q in qs if q["migrate"].get("state") == "failed-over"]
    out = []
    for n, q in qs:
        m = q["migrate"]
        if m.get("state") in ("protected", "syncing") and any(
                t["migrate"].get("session") == m.get("session")
                and m.get("acked_epoch", 0) <= t["migrate"].get("committed_epoch", 0) for t in takers):
            continue
        out.append((n, q))
    return out


class Sampler:
    def __init__(self, c, period=0.03):
        self.c = c
        self.period = period
        self.violations = []
        self.samples = {"vmm": 0, "pcmk": 0}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._vmm, daemon=True),
                        threading.Thread(target=self._pcmk, daemon=True)]

    def start(self):
        for t in self.threads:
            t.start()

    def halt(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def _vmm(self):
        """At most one primary that *answers* (releases output): a primary
        may keep its guest running while it holds every output (its
        secondary took over, or it is revoking one), which is what makes a
        local takeover safe; it must not release any."""
        last = {}
        while not self.stop.wait(self.period):
            try:
                qs = []
                now = {}
                for n in self.c.nodes:
                    q = vmm_query(n)
                    now[n.name] = q
                    if answering(q, last.get(n.name)):
                        qs.append((n, q))
                self.samples["vmm"] += 1
                qs = explained(qs)
                if len(qs) >= 2:
                    # Read in order A then B: if A still answers after B was
                    # seen answering, both did at once.
                    a, qa = qs[0]
                    again = vmm_query(a)
                    if (answering(again, qa) or (again and again["migrate"].get("state") in ALONE
                                                 and serving_primary(again))) and \
                            len(explained([(a, again)] + qs[1:])) >= 2:
                        self.violations.append("two answering primary VMMs: %s" % (
                            [(n.name, {k: q["migrate"].get(k) for k in ("state", "session", "acked_epoch",
                                                                           "committed_epoch", "released_outputs")})
                             for n, q in qs] + [("again", a.name, again and again["migrate"].get("state"))]))
                        log("VIOLATION: " + self.violations[-1])
                last = {k: v for k, v in now.items() if v is not None}
            except Exception as e:  # noqa: BLE001
                log("sampler (vmm) error: %r" % e)

    def _pcmk(self):
        while not self.stop.wait(self.period):
            try:
                st = self.c.crm_mon(timeout=10)
            except ClusterError:
                continue
            except Exception as e:  # noqa: BLE001
                log("sampler (pcmk) error: %r" % e)
                continue
            self.samples["pcmk"] += 1
            p = st.promoted(RSC)
            if len(p) > 1:
                self.violations.append("Pacemaker (%s's view) shows %d Promoted: %s" % (st.via, len(p), st))
                log("VIOLATION: " + self.violations[-1])


# ---------------------------------------------------------------- the kv client

class Load:
    """ftvm-kv load in the client namespace, appending to one ack log."""

    def __init__(self, ns, work):
        self.ns, self.work = ns, work
        self.acks = os.path.join(work, "acks.log")
        self.proc = None
        self.n = 0
        self.totals = {"ops": 0, "puts_acked": 0}

    def kv(self, *args, timeout=300):
        return subprocess.run(["ip", "netns", "exec", self.ns, FTVM_KV, "--server", "%s:%d" % (GUEST_IP, KV_PORT)]
                              + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=timeout)

    def start(self):
        self.n += 1
        self.out = os.path.join(self.work, "load%d.json" % self.n)
        self.err = os.path.join(self.work, "load%d.stderr" % self.n)
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, FTVM_KV, "--server", "%s:%d" % (GUEST_IP, KV_PORT),
                 "--deadline-ms", "60000", "--json", "load", "--duration-ms", "3600000", "--keys", "200",
                 "--rate", "300", "--seed", str(random.randint(1, 1 << 30)), "--ack-log", self.acks],
                stdout=o, stderr=e, stdin=subprocess.DEVNULL)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("the kv load did not stop on SIGINT")
        with open(self.out) as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        if not lines:
            with open(self.err) as f:
                raise Failure("the kv load printed nothing (rc %s): %s" % (self.proc.returncode, f.read()[-2000:]))
        s = json.loads(lines[-1])
        for k in self.totals:
            self.totals[k] += s.get(k, 0)
        check(s.get("stale_reads", 0) == 0 and s.get("wrong_answers", 0) == 0, "stale or wrong reads: %s" % s)
        check(s.get("gave_up", 0) == 0, "kv requests gave up: %s" % s)
        return s

    def verify(self):
        r = self.kv("--json", "verify", "--ack-log", self.acks)
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        if not lines:
            raise Failure("verify printed nothing (rc %d): %s" % (r.returncode, r.stderr))
        v = json.loads(lines[-1])
        check(v.get("lost", 1) == 0 and v.get("wrong", 1) == 0 and r.returncode == 0,
              "acknowledged writes lost or wrong: %s %s" % (v, r.stderr.strip()))
        return v


# ---------------------------------------------------------------- the cluster's network and daemons

def build_network(c):
    """VM LAN (bridge vmlan; in each node br0 = {tap0, lan0}), replication
    LAN (bridge rep; rep0 = 10.99.0.N/24), the client namespace on the VM LAN."""
    vm = c.add_bridge("vmlan")
    rep = c.add_bridge("rep")
    for n in c.nodes:
        n.attach(vm, "lan0")
        n.ip("link", "add", "br0", "type", "bridge")
        n.ip("link", "set", "br0", "type", "bridge", "ageing_time", "30000")
        n.ip("tuntap", "add", "tap0", "mode", "tap")
        n.ip("link", "set", "tap0", "master", "br0")
        n.ip("link", "set", "lan0", "master", "br0")
        for d in ("tap0", "br0"):
            n.ip("link", "set", d, "up")
        n.attach(rep, "rep0", addr="%s%d/24" % (REP_NET, n.index))
    cli = c.add_namespace(c.prefix + "-cli")
    csh(["ip", "link", "add", "pcli", "netns", c.switch_ns, "type", "veth", "peer", "name", "eth0", "netns", cli])
    csh(["ip", "-n", c.switch_ns, "link", "set", "pcli", "master", "vmlan"])
    csh(["ip", "-n", c.switch_ns, "link", "set", "pcli", "up"])
    csh(["ip", "-n", cli, "addr", "add", CLIENT_IP + "/24", "dev", "eth0"])
    csh(["ip", "-n", cli, "link", "set", "eth0", "up"])
    c.client_ns = cli
    # the VM: a config file and a shared disk image every node sees
    d = os.path.join(c.state_dir, "vm")
    os.makedirs(d)
    img = os.path.join(d, VM_NAME + ".img")
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    c.vm_conf = os.path.join(d, VM_NAME + ".conf")
    with open(c.vm_conf, "w") as f:
        f.write("name=%s\nkernel=%s\nappend='workload=kv ip=%s/24 port=%d'\nmemory=256M\nsmp=1\n"
                "drive=%s\ndrive_mode=shared\ntap=tap0\nmac=%s\nftvm=%s\nftvmctl=%s\nftvmd=%s\ntest_mode=1\n"
                % (VM_NAME, GUEST, GUEST_IP, KV_PORT, img, GUEST_MAC, FTVM, FTVMCTL, FTVMD))


def start_ftvmd(c, node):
    """ftvmd in the node (at every start of the node: after a fencing the
    node comes back without it). Logs in the node's state directory."""
    out = open(os.path.join(node.dir, "ftvmd.out"), "a")
    node.popen([FTVMD, "--resource", RSC, "--socket", SOCK, "--mce-fifo", FIFO, "--control", CONTROL,
                "--state-file", DECISIONS, "--log", os.path.join(node.dir, "ftvmd.log")],
               stdout=out, stderr=subprocess.STDOUT)
    out.close()


def ftvmd_running(node):
    return bool(node.pgrep(FTVMD + " --resource"))


# ---------------------------------------------------------------- the drills

class EventWait:
    """`ftvmctl --events --until WHAT` on a node's VMM, subscribed before
    the drill injects anything: the VMM's own REVOKED event, not a figure
    left from an earlier revocation."""

    def __init__(self, node, until, timeout=30):
        self.until, self.timeout = until, timeout
        self.p = subprocess.Popen([FTVMCTL, node.path(SOCK), "--events", "--until", until, "--timeout", str(timeout)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.p.stdout.readline()   # the SNAPSHOT: subscribed
        if not first.startswith('{"event":"SNAPSHOT"'):
            raise Failure("%s: ftvmctl --events: %r %s" % (node.name, first, self.p.stderr.read()))

    def result(self):
        """The event that ended the wait (its data), or a Failure."""
        try:
            out, err = self.p.communicate(timeout=self.timeout + 10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise Failure("ftvmctl --events --until %s did not end" % self.until)
        lines = [json.loads(l) for l in out.splitlines() if l.strip()]
        if self.p.returncode != 0 or not lines:
            raise Failure("no %s event (exit %d): %s %s" % (self.until, self.p.returncode, lines[-3:], err))
        return lines[-1]


class Drills:
    def __init__(self, c, load, prober, sampler):
        self.c, self.load, self.prober, self.sampler = c, load, prober, sampler
        self.results = {k: [] for k in ALL_KINDS}

    def primary(self):
        """(node, query) of the one serving primary VMM, or (None, None)."""
        found = [(n, q) for n in self.c.nodes for q in [vmm_query(n)] if serving_primary(q)]
        if len(found) == 1:
            return found[0]
        return None, None

    def settled(self):
        """The cluster is whole: all nodes online, Pacemaker shows one
        Promoted and two Unpromoted, the Promoted node's VMM is a primary
        protected by another node, ftvmd runs in every node."""
        st = self.c.crm_mon()
        names = [n.name for n in self.c.nodes]
        if st.online() != sorted(names) or not st.quorate:
            raise ClusterError("not all online: %r" % st)
        roles = st.roles(RSC)
        if sorted(roles.values()) != ["Promoted", "Unpromoted", "Unpromoted"]:
            raise ClusterError("roles %s" % roles)
        pn = st.promoted(RSC)[0]
        q = vmm_query(self.c.node(pn))
        if not serving_primary(q) or q["migrate"].get("state") != "protected":
            raise ClusterError("primary on %s: %s" % (pn, q and q["migrate"]))
        if not all(ftvmd_running(n) for n in self.c.nodes):
            raise ClusterError("ftvmd not running everywhere")
        failed = [r for r in st.resources if r.get("failed")]
        if failed:
            raise ClusterError("failed instances: %s" % failed)
        return self.c.node(pn), q

    def verify_and_settle(self, kind, i, r):
        """After a drill that kept the primary: the client lost nothing,
        the cluster cleans up and settles, never two answering primaries."""
        c = self.c
        s_ = self.load.stop()
        v = self.load.verify()
        log("drill %s %d: re-protected after %.2f s; client %d ops, %d PUTs acknowledged; verify: %d keys, 0 lost"
            % (kind, i, r["reprotected"], s_.get("ops", 0), s_.get("puts_acked", 0), v.get("checked", 0)))
        self.load.start()
        c.pcs("resource cleanup %s" % RSC, check=False)
        c.nodes[0].run(["crm_resource", "--wait", "--timeout", "90s"], timeout=120, check=False)
        c.wait_for(self.settled, 120, 0.1, what="the cluster settled after drill %s %d" % (kind, i))
        check(not self.sampler.violations, "more than one Promoted: %s" % self.sampler.violations)
        self.results[kind].append(r)
        return r

    def run_link(self, i):
        """The secondary's replication link is cut; the primary must stay,
        revoke that secondary before it releases output, and be protected
        again; the stale secondary must never be promoted."""
        c = self.c
        prim, q0 = c.wait_for(self.settled, 120, 0.1, what="a settled cluster before drill link %d" % i)
        time.sleep(random.uniform(0.3, 1.5))
        session = q0["migrate"]["session"]
        sec = [n for n in c.nodes if q0["migrate"]["peer"].startswith(REP_NET + "%d:" % n.index)]
        check(len(sec) == 1, "secondary of %s: peer %s" % (prim.name, q0["migrate"]["peer"]))
        sec = sec[0]
        rep = [l for l in sec.links if l.ifname == "rep0"]
        r = {"kind": "link", "node": sec.name, "primary": prim.name}
        revoked = EventWait(prim, "REVOKED")
        t = c.partition(sec, links=rep)
        # the primary revokes (output held meanwhile), then serves on alone
        ev = revoked.result()
        check(ev["event"] == "REVOKED" and ev["data"]["session"] == session,
              "%s's revocation of its secondary %s: %s" % (prim.name, sec.name, ev))
        r["revoke_ms"] = ev["data"]["revoke_ms"]
        t_rel = time.monotonic()
        c.wait_for(lambda: self.prober.after(t_rel), 10, 0.005, what="answers after the revocation")
        fo, gap = self.prober.failover(t, time.monotonic())
        r.update(failover=fo, gap=gap)
        stale = prim.run(["crm_attribute", "-N", sec.name, "-n", "ftvm-%s-stale" % RSC, "-l", "forever",
                          "-G", "-q"], check=False).stdout.strip()
        check(stale == session, "%s not marked stale: ftvm-%s-stale=%r, session %s" % (sec.name, RSC, stale, session))
        log("drill link %d: %s's replication cut; %s revoked it (output held %d ms, longest client gap %.0f ms); "
            "ftvm-%s-stale=%s on %s" % (i, sec.name, prim.name, r["revoke_ms"], gap * 1000, RSC, stale, sec.name))
        # protected again (towards the third node, or the restarted one once healed)
        c.wait_for(lambda: (lambda q: serving_primary(q) and q["migrate"].get("state") == "protected"
                            and q["migrate"]["session"] != session)(vmm_query(prim)),
                   120, 0.05, what="re-protection of %s after the link cut" % prim.name)
        r["reprotected"] = time.monotonic() - t
        check(c.crm_mon().promoted(RSC) == [prim.name], "the Promoted instance moved on a link cut")
        c.heal(sec, links=rep)
        return self.verify_and_settle("link", i, r)

    def run_isolate(self, i):
        """Every link of the secondary's node cut. Its ftvmd sees the other
        two nodes leave, but has no quorum: it must not take over. The
        primary's revocation goes through ftvmd on the majority side; the
        primary serves on, unprotected, then protected by the third node."""
        c = self.c
        prim, q0 = c.wait_for(self.settled, 120, 0.1, what="a settled cluster before drill isolate %d" % i)
        time.sleep(random.uniform(0.3, 1.5))
        session = q0["migrate"]["session"]
        sec = [n for n in c.nodes if q0["migrate"]["peer"].startswith(REP_NET + "%d:" % n.index)]
        check(len(sec) == 1, "secondary of %s: peer %s" % (prim.name, q0["migrate"]["peer"]))
        sec = sec[0]
        log_at = os.path.getsize(os.path.join(sec.dir, "ftvmd.log"))
        r = {"kind": "isolate", "node": sec.name, "primary": prim.name}
        revoked = EventWait(prim, "REVOKED")
        t = c.partition(sec)
        ev = revoked.result()
        check(ev["event"] == "REVOKED" and ev["data"]["session"] == session,
              "%s's revocation of its isolated secondary %s: %s" % (prim.name, sec.name, ev))
        r["revoke_ms"] = ev["data"]["revoke_ms"]
        t_rel = time.monotonic()
        c.wait_for(lambda: self.prober.after(t_rel), 10, 0.005, what="answers after the revocation")
        fo, gap = self.prober.failover(t, time.monotonic())
        r.update(failover=fo, gap=gap)
        # the isolated node's ftvmd said no, and never took over
        c.wait_for(lambda: [e for e in c.fence_log() if e.get("target") == sec.name and e.get("event") == "done"
                            and e.get("monotonic", 0) > t], 60, 0.1, what="fencing of %s" % sec.name)
        with open(os.path.join(sec.dir, "ftvmd.log")) as f:
            f.seek(log_at)
            flog = f.read()
        check("no quorum: no takeover" in flog, "%s's ftvmd did not refuse the takeover: %s" % (sec.name, flog[-2000:]))
        check("took over session" not in flog, "%s's ftvmd took over while isolated: %s" % (sec.name, flog[-2000:]))
        check(c.crm_mon().promoted(RSC) == [prim.name], "the Promoted instance moved when the secondary was isolated")
        log("drill isolate %d: %s isolated; its ftvmd refused to take over (no quorum); %s revoked it through "
            "ftvmd (output held %d ms, longest client gap %.0f ms)" % (i, sec.name, prim.name, r["revoke_ms"], gap * 1000))
        c.heal(sec)
        c.restart_node(sec, timeout=90)
        c.wait_for(lambda: (lambda q: serving_primary(q) and q["migrate"].get("state") == "protected"
                            and q["migrate"]["session"] != session)(vmm_query(prim)),
                   120, 0.05, what="re-protection of %s after the isolation" % prim.name)
        r["reprotected"] = time.monotonic() - t
        return self.verify_and_settle("isolate", i, r)

    def run_one(self, kind, i):
        c = self.c
        if kind == "link":
            return self.run_link(i)
        if kind == "isolate":
            return self.run_isolate(i)
        old, q0 = c.wait_for(self.settled, 120, 0.1, what="a settled cluster before drill %s %d" % (kind, i))
        if RAMCHECK:
            ram_check(c, old, q0)
        time.sleep(random.uniform(0.3, 1.5))  # inject at a random moment of the checkpoint cycle
        r = {"kind": kind, "node": old.name}
        # ---- inject
        if kind == "kill":
            pid = [p for p in old.pgrep("--monitor unix:" + SOCK)]
            check(len(pid) == 1, "%s: VMM pids %s" % (old.name, pid))
            t = time.monotonic()
            os.kill(pid[0], signal.SIGKILL)
        elif kind == "node":
            if i % 2 == 0:
                # Every other node loss begins with its VMM: killed 50 ms
                # before the node, its ftvmd may still say "VMM gone" to
                # the others (a node failing in steps).
                pid = [p for p in old.pgrep("--monitor unix:" + SOCK)]
                check(len(pid) == 1, "%s: VMM pids %s" % (old.name, pid))
                t_vmm = time.monotonic()
                os.kill(pid[0], signal.SIGKILL)
                time.sleep(0.05)
                r["vmm_first"] = True
            t = c.kill_node(old)
            if r.get("vmm_first"):
                t = t_vmm  # the failure began with the VMM
        elif kind == "partition":
            t = c.partition(old)
        elif kind == "lan":
            t = c.partition(old, links=[l for l in old.links if l.ifname == "cl0"])
        else:
            fd = os.open(old.path(FIFO), os.O_WRONLY | os.O_NONBLOCK)
            t = time.monotonic()
            os.write(fd, b"mce bank=4 status=uncorrected drill=%d\n" % i)
            os.close(fd)
        # ---- a new primary serves
        def new_primary():
            for n in c.nodes:
                if n is old:
                    continue
                q = vmm_query(n)
                if serving_primary(q):
                    return n, q
            return None
        logs_at = {n.name: os.path.getsize(os.path.join(n.dir, "ftvmd.log")) for n in c.nodes if n is not old}
        new, _ = c.wait_for(new_primary, 60, 0.01, what="a new serving primary after %s on %s" % (kind, old.name))
        t_new = time.monotonic()
        first = c.wait_for(lambda: self.prober.after(t_new), 30, 0.005, what="an answer from the new primary")[0]
        fo, gap = self.prober.failover(t, first)
        r.update(new=new.name, failover=fo, gap=gap, new_primary_seen=t_new - t)
        log("drill %s %d: %s -> %s: first answer after the interruption %.0f ms after the injection "
            "(longest gap %.0f ms)" % (kind, i, old.name, new.name, fo * 1000, gap * 1000))
        if kind == "lan":
            # the old primary is still on the VM LAN and its guest may run:
            # it must release nothing now that its secondary took over
            q1 = vmm_query(old)
            time.sleep(0.5)
            q2 = vmm_query(old)
            if q1 and q2:
                check(not answering(q2, q1) or q2["migrate"].get("session") != q1["migrate"].get("session"),
                      "the old primary %s released output after the takeover: %s -> %s"
                      % (old.name, q1["migrate"].get("released_outputs"), q2["migrate"].get("released_outputs")))
                r["old_state"] = q2["migrate"].get("state")
                log("drill lan %d: the old primary %s is %s, released %s outputs in 0.5 s (none may leave)"
                    % (i, old.name, r["old_state"], q2["migrate"].get("released_outputs", 0)
                       - q1["migrate"].get("released_outputs", 0)))
            else:
                # fenced already; the sampler watched it until then
                log("drill lan %d: the old primary %s is gone (fenced)" % (i, old.name))
        if kind in ("node", "partition", "lan"):
            # the secondary's ftvmd took over itself (not Pacemaker's promote)
            with open(os.path.join(new.dir, "ftvmd.log")) as f:
                f.seek(logs_at[new.name])
                flog = f.read()
            r["local_takeover"] = "took over session" in flog
            check(r["local_takeover"], "%s: no local takeover by %s's ftvmd: %s" % (kind, new.name, flog[-1500:]))
        # Pacemaker agrees
        c.wait_for(lambda: c.crm_mon().promoted(RSC) == [new.name], 60, 0.1,
                   what="Pacemaker to show %s Promoted" % new.name)
        r["pcmk_promoted"] = time.monotonic() - t
        # ---- protection restored by the cluster itself (the new primary's
        # post-promote notify protects towards a waiting Unpromoted node)
        def protected():
            q = vmm_query(new)
            return serving_primary(q) and q["migrate"].get("state") == "protected" and q
        qp = c.wait_for(protected, 120, 0.02, what="re-protection of %s" % new.name)
        r["reprotected"] = time.monotonic() - t
        r["peer"] = qp["migrate"].get("peer")
        log("drill %s %d: Pacemaker Promoted %s after %.2f s; protected (peer %s) after %.2f s"
            % (kind, i, new.name, r["pcmk_promoted"], r["peer"], r["reprotected"]))
        # ---- the lost node back
        if kind in ("node", "partition", "lan"):
            c.wait_for(lambda: [e for e in c.fence_log() if e.get("target") == old.name and e.get("event") == "done"
                                and e.get("monotonic", 0) > t], 60, 0.1, what="fencing of %s" % old.name)
            fl = [e for e in c.fence_log() if e.get("target") == old.name and e.get("event") == "done"
                  and e.get("monotonic", 0) > t]
            r["fenced"] = fl[0]["monotonic"] - t
            if kind in ("partition", "lan"):
                c.heal(old)
            c.restart_node(old, timeout=90)
        # ---- the client lost nothing
        s = self.load.stop()
        v = self.load.verify()
        r.update(ops=s.get("ops"), puts=s.get("puts_acked"), verified=v.get("checked"))
        log("drill %s %d: client %d ops, %d PUTs acknowledged, 0 stale/wrong; verify: %d keys, 0 lost"
            % (kind, i, s.get("ops", 0), s.get("puts_acked", 0), v.get("checked", 0)))
        self.load.start()
        # ---- failures cleaned up, the whole cluster settled again
        c.wait_for(lambda: all(n.is_up() for n in c.nodes), 30, what="all nodes up")
        if any(x.get("failed") for x in c.crm_mon().resources) or kind in ("kill", "mce"):
            c.pcs("resource cleanup %s" % RSC, check=False)
        # no transition in flight (e.g. the re-probes of the cleanup) when
        # the next drill starts
        c.nodes[0].run(["crm_resource", "--wait", "--timeout", "90s"], timeout=120, check=False)
        c.wait_for(self.settled, 120, 0.1, what="the cluster settled after drill %s %d" % (kind, i))
        r["settled"] = time.monotonic() - t
        check(not self.sampler.violations, "more than one Promoted: %s" % self.sampler.violations)
        self.results[kind].append(r)
        return r


def report(c, drills, totem, t_test):
    res = drills.results
    tok = totem.get("token")
    print("\n==== cluster drills: corosync token %s ms (configured %d, token_coefficient %s), consensus %s ms"
          % (tok, TOKEN, "default 650" if COEF is None else COEF, totem.get("consensus")))
    print("%-10s %3s %12s %12s %14s %14s %10s" % ("drill", "n", "failover p50", "failover max", "reprotect p50",
                                                 "reprotect max", "fenced p50"))
    for k in KINDS:
        rs = res[k]
        if not rs or k in ("link", "isolate"):
            continue
        fo = [r["failover"] for r in rs]
        rp = [r["reprotected"] for r in rs]
        fe = [r["fenced"] for r in rs if "fenced" in r]
        print("%-10s %3d %10.0f ms %10.0f ms %12.0f ms %12.0f ms %10s" % (
            k, len(rs), pct(fo, 50) * 1000, max(fo) * 1000, pct(rp, 50) * 1000, max(rp) * 1000,
            ("%.0f ms" % (pct(fe, 50) * 1000)) if fe else "-"))
    if res["link"]:
        rs = res["link"]
        print("link cut of the secondary (no failover): %d drills; output held while revoking p50 %.0f ms max %.0f ms; "
              "longest client gap p50 %.0f ms max %.0f ms; re-protected p50 %.1f s max %.1f s"
              % (len(rs), pct([r["revoke_ms"] for r in rs], 50), max(r["revoke_ms"] for r in rs),
                 pct([r["gap"] for r in rs], 50) * 1000, max(r["gap"] for r in rs) * 1000,
                 pct([r["reprotected"] for r in rs], 50), max(r["reprotected"] for r in rs)))
    print("kv client: %d ops, %d PUTs acknowledged, none lost (verified after every drill)"
          % (drills.load.totals["ops"], drills.load.totals["puts_acked"]))
    print("sampler: %d VMM samples, %d Pacemaker samples, %d violations"
          % (drills.sampler.samples["vmm"], drills.sampler.samples["pcmk"], len(drills.sampler.violations)))
    goals = []
    if res["mce"]:
        m = max(r["failover"] for r in res["mce"])
        goals.append("machine check: failover <= 100 ms with nothing lost: max %.0f ms -> %s"
                     % (m * 1000, "MET" if m <= 0.1 else "NOT MET"))
    cons = totem.get("consensus") or 0
    lim = (tok + cons) / 1000.0 + 0.3
    for k, what in (("node", "node loss"), ("partition", "partition"), ("lan", "cluster LAN cut")):
        if res[k]:
            fo = [r["failover"] for r in res[k]]
            p50 = pct(fo, 50)
            goals.append("%s: failover p50 <= token (%d ms) + consensus (%d ms) + 300 ms = %.2f s: p50 %.2f s, "
                         "max %.2f s (%d drills, local takeover in %d) -> %s"
                         % (what, tok, cons, lim, p50, max(fo), len(fo),
                            sum(1 for r in res[k] if r.get("local_takeover")), "MET" if p50 <= lim else "NOT MET"))
    if res["isolate"]:
        rs = res["isolate"]
        goals.append("isolated secondary: no takeover in %d of %d drills; the primary revoked it through ftvmd, "
                     "output held p50 %.0f ms max %.0f ms" % (len(rs), len(rs), pct([r["revoke_ms"] for r in rs], 50),
                                                              max(r["revoke_ms"] for r in rs)))
    for g in goals:
        print("goal: " + g)
    print("test run time %.0f s" % t_test)
    print(json.dumps({"totem": {"token": tok, "consensus": totem.get("consensus")}, "results": res}, default=str))


def main():
    why = missing_requirements()
    if why:
        skip("; ".join(why))
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        skip("/dev/kvm is not available")
    for p in (FTVM, FTVMCTL, FTVM_KV, GUEST, FTVMD, FTVM_RA):
        if not os.path.exists(p):
            skip("%s missing (build with ./scripts/build.sh; ftvmd needs libcpg-dev libvotequorum-dev libqb-dev)" % p)
    random.seed(int(os.environ.get("FTVM_CLUSTER_SEED", str(int(time.time())))))
    path = ":".join([os.path.dirname(FTVM), os.path.dirname(FTVMCTL), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    t_start = time.monotonic()
    agent = os.environ.get("FTVM_CLUSTER_AGENT")  # another ocf:ftvm:ftvm to try (default ra/ftvm)
    c = Cluster(nodes=3, token=TOKEN, consensus=CONSENSUS, token_coefficient=COEF, daemon_env={"PATH": path},
                on_node_start=start_ftvmd, log=log, ocf_agents=[("ftvm", "ftvm", agent)] if agent else None)
    if agent:
        log("resource agent: %s" % agent)
    ok = False
    sampler = prober = load = None
    try:
        c.up(timeout=120, before_start=build_network)
        totem = c.runtime_totem()
        log("corosync runtime totem: token %s ms, consensus %s ms" % (totem.get("token"), totem.get("consensus")))
        c.wait_for(lambda: all(ftvmd_running(n) for n in c.nodes), 20, what="ftvmd in every node")
        work = os.path.join(c.state_dir, "client")
        os.makedirs(work)
        # The replication link is authenticated (TLS 1.3, a pre-shared
        # key): one file every node reads, mode 0600.
        key = os.path.join(c.state_dir, "ftvm.psk")
        with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        cmd = ("resource create %s ocf:ftvm:ftvm config=%s node_addrs='%s' watcher_fifo=%s ftvmd_control=%s "
               "tls_creds=psk:%s log_dir=/var/log/pacemaker/ftvm "
               "op monitor interval=2s role=Promoted timeout=20s "
               "op monitor interval=3s role=Unpromoted timeout=20s "
               "promotable notify=true promoted-max=1"
               % (RSC, c.vm_conf, " ".join("%s=%s%d" % (n.name, REP_NET, n.index) for n in c.nodes), FIFO, CONTROL,
                  key))
        log("pcs " + cmd)
        c.pcs(cmd)
        sampler = Sampler(c)
        sampler.start()
        prober = Prober(c.client_ns)
        prober.start()
        load = Load(c.client_ns, work)
        drills = Drills(c, load, prober, sampler)
        t = time.monotonic()
        c.wait_for(drills.settled, 120, 0.1, what="the VM Promoted and protected")
        log("VM Promoted and protected %.1f s after pcs resource create" % (time.monotonic() - t))
        load.start()
        for i in range(1, DRILLS + 1):
            for kind in KINDS:
                drills.run_one(kind, i)
        load.stop()
        load.verify()
        sampler.halt()
        check(not sampler.violations, "more than one Promoted: %s" % sampler.violations)
        report(c, drills, totem, time.monotonic() - t_start)
        ok = True
    except (Failure, ClusterError) as e:
        print("FAIL: %s" % e, flush=True)
        traceback.print_exc()
    finally:
        if sampler:
            sampler.halt()
        if prober:
            prober.stop.set()
        if load and load.proc and load.proc.poll() is None:
            load.proc.kill()
        if not ok:
            try:
                print(c.logs(40))
                for n in c.nodes:
                    for f in ("ftvmd.log",):
                        print("---- %s %s\n%s" % (n.name, f, n.tail(f, 30)))
            except Exception:  # noqa: BLE001
                pass
            c.keep_state = True
        c.down()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
