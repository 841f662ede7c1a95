#!/usr/bin/env python3
"""The nemesis: a protected pair under kv load, and one fault after another,
each at a random moment (the seed is printed; --seed replays a run).

The link runs over TLS with a pre-shared key made for the run, as the
drills and the cluster do (--plaintext: without).

The harness plays the cluster manager, the way ra/ftvm does: it promotes
(`cont`) a secondary only when its primary is really gone (dead, or fenced:
a SIGSTOPped primary is SIGKILLed first), never one its primary revoked
(the event hook writes the session it revokes to a file, as the agent
writes the CIB mark), and replaces a lost or stale secondary by a fresh
one. After each fault the pair must be protected again (or, where the
fault leaves one host, the survivor serves); the client's acknowledged
writes are audited on the running primary after every fault and on the
image booted alone at the end; a sampler checks every 20 ms that at most
one VMM runs the guest in a state where it releases output on its own.

Faults: kill-primary, kill-secondary, stop-primary (SIGSTOP, then fenced),
stop-secondary, cut-link (the replication link down, both ways),
drop-link (nftables drops every replication packet, silently), rst-link
(nftables answers the replication link with TCP resets), throttle-link
(tc tbf at 2 Mbit/s on the primary's side for a second: protection must
survive it), eio-secondary (replicated: the secondary's disk fails while it
applies; it becomes unusable and is replaced; shared: its disk is not
written before a failover, the fault is a no-op), failed-handover (the
secondary takes over without answering HANDOVER_OK: the old primary stops),
stray-protected (garbage to the secondary's port while protected),
stray-after-death (the primary killed, then garbage and a trickled HELLO
to the secondary before it is promoted), eio-primary (x-disk-fault: the
primary hands over), cancel (migrate_cancel under load), quit (under
load), handover; and through a user-space relay on the replication link
(relay.py; this kernel has no netem): delay-link (every chunk both ways
delayed 50 to 800 ms for 1.5 s: protection holds, or past the heartbeat
timeout the secondary is revoked), reorder-link (two chunks from the
primary swap places) and corrupt-link (one byte flipped): the secondary
refuses the stream, the primary revokes it. full-disk: the images live on
a tmpfs of their own, which a filler file fills for a second: the guest's
writes fail then (the kv guest answers ERR io_error, as it would
unprotected), none of them is acknowledged, protection holds or (a
replicated secondary that cannot reserve its checkpoint's blocks) the
secondary is revoked and replaced.

Which VMM answered: a capture on each host's tap (capture.py) records
every reply frame the guest sends; the replies must come from one host at
a time (a switch of host and back within 100 ms would be two primaries
answering).

usage: nemesis.py [--mode shared|replicated] [--faults N] [--seed S]
                  [--kinds k1,k2,...]
Exit 0 when every fault passed; the figures are printed at the end."""
import argparse
import collections
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import FTVMCTL, GUEST_IP, KV_PORT, Failure, check, require_kvm  # noqa: E402
from drill import REP_IP, REP_PORT, Client, Node, Topology, make_image, make_psk, other, wait_ready  # noqa: E402

KINDS = ["kill-primary", "kill-secondary", "stop-primary", "stop-secondary", "cut-link",
         "drop-link", "rst-link", "throttle-link", "stray-protected", "stray-after-death",
         "eio-primary", "eio-secondary", "cancel", "quit", "handover", "failed-handover",
         "delay-link", "reorder-link", "corrupt-link", "full-disk"]
RELAY_KINDS = ("delay-link", "reorder-link", "corrupt-link")
RELAY_PORT = 4555
HERE = os.path.dirname(os.path.abspath(__file__))
SWITCH_GAP = 0.1   # s: replies from one host, another, and the first again within this = two answering

IMAGE_MB = 1024   # sparse
FS_MB = 1024      # the images' tmpfs (only what is written takes room)

HOOK = """#!/bin/sh
# The agent's revocation, standing in: remember the revoked session.
echo "$FTVM_SESSION" >>"$(dirname "$0")/revoked"
exit 0
"""

# States in which a VMM whose guest runs releases output on its own. (In
# setup, syncing and protected it holds every output until its secondary
# ACKs; a secondary that has taken over ACKs nothing.)
RELEASING = ("unprotected", "failed-over", "none")


def quick_state(sock):
    """(guest running, ft state) of one VMM, or None if it does not answer."""
    try:
        st = subprocess.run([FTVMCTL, sock, "--json", "info", "status"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, timeout=2)
        mi = subprocess.run([FTVMCTL, sock, "--json", "info", "migrate"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, timeout=2)
        return (json.loads(st.stdout)["return"]["status"] == "running",
                json.loads(mi.stdout)["return"]["state"])
    except Exception:
        return None


class Sampler(threading.Thread):
    """Every 20 ms: how many VMMs run the guest in a state that releases output."""

    def __init__(self):
        super().__init__(daemon=True)
        self.nodes = []
        self.lock = threading.Lock()
        self.samples = self.violations = 0
        self.last_violation = None
        self.stop_evt = threading.Event()

    def watch(self, nodes):
        with self.lock:
            self.nodes = [n for n in nodes]

    @staticmethod
    def releasing(n):
        q = quick_state(n.sock) if n.alive() else None
        return bool(q and q[0] and q[1] in RELEASING), q

    def run(self):
        while not self.stop_evt.is_set():
            with self.lock:
                nodes = [n for n in self.nodes if n.alive()]
            live = [n for n in nodes if self.releasing(n)[0]]
            self.samples += 1
            if len(live) > 1:
                # The VMMs are asked one after the other: confirm that the
                # first is still releasing after the last was seen so.
                again = [(n.name, q) for n in live[:-1] for rel, q in [self.releasing(n)] if rel]
                if again:
                    self.violations += 1
                    self.last_violation = again + [(live[-1].name, "releasing")]
            time.sleep(0.02)


def scan_replies(ev, i, last, horizon, per_host, what):
    """Goes through the (time, host) replies ev[i:] up to horizon, counting
    them per host; fails if the answering host changes and changes back
    within SWITCH_GAP. Returns (next i, last reply, changes of host)."""
    switches = 0
    while i < len(ev) and ev[i][0] <= horizon:
        t, h = ev[i]
        per_host[h] += 1
        if last and h != last[1]:
            switches += 1
            for t2, h2 in ev[i + 1:]:
                if t2 - t > SWITCH_GAP:
                    break
                check(h2 != last[1], "%s: replies from %s at %.3f, from %s at %.3f and from %s again at "
                      "%.3f: two VMMs answered" % (what, last[1], last[0], h, t, last[1], t2))
        last = (t, h)
        i += 1
    return i, last, switches


def selftest_replies():
    """The two-answering check can fail: interleaved replies must trip it."""
    c = collections.Counter()
    _, _, n = scan_replies([(0.0, "A"), (1.0, "B"), (1.5, "B"), (3.0, "A")], 0, None, 10, c, "self-test")
    check(n == 2 and c["A"] == 2, "scan_replies miscounted: %d changes, %s" % (n, c))
    try:
        scan_replies([(0.0, "A"), (0.01, "B"), (0.02, "A")], 0, None, 10, c, "self-test")
    except Failure:
        return
    raise Failure("scan_replies missed two hosts answering at once")


class Replies:
    """Which host's tap each reply frame of the guest left by (capture.py)."""

    def __init__(self, topo):
        self.lock = threading.Lock()
        self.events = []          # (kernel time of the frame, host)
        self.procs = []
        for h in ("A", "B"):
            p = subprocess.Popen(topo.cmd(h, sys.executable, os.path.join(HERE, "capture.py"), "tap" + h,
                                          GUEST_IP, str(KV_PORT)),
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            check(p.stdout.readline().startswith("capturing"), "capture on tap%s did not start" % h)
            threading.Thread(target=self._read, args=(p, h), daemon=True).start()
            self.procs.append(p)
        self.checked = 0
        self.last = None
        self.per_host = collections.Counter()
        self.switches = 0

    def _read(self, p, h):
        for line in p.stdout:
            with self.lock:
                self.events.append((float(line), h))

    def check(self, what):
        """Replies so far came from one host at a time. (Those of the last
        SWITCH_GAP are left for the next check: what follows them counts.)"""
        time.sleep(SWITCH_GAP + 0.05)
        with self.lock:
            ev = sorted(self.events)
        # The captures' times are the kernel's CLOCK_REALTIME stamps.
        self.checked, self.last, n = scan_replies(ev, self.checked, self.last, time.time() - SWITCH_GAP,
                                                  self.per_host, what)
        self.switches += n

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()


class Pair:
    """The protected pair and its history."""

    def __init__(self, topo, work, mode, rnd, tls):
        self.topo, self.work, self.mode, self.rnd = topo, work, mode, rnd
        self.tls = tls          # --tls-creds of every node (None: a plaintext link)
        self.gen = 0
        self.hook = os.path.join(work, "hook.sh")
        with open(self.hook, "w") as f:
            f.write(HOOK)
        os.chmod(self.hook, 0o755)
        # The images on a file system of their own, which full-disk fills.
        self.fs = os.path.join(work, "fs")
        os.mkdir(self.fs)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % FS_MB, "nemesis", self.fs], check=True)
        # Room for the whole run's log records (512 bytes a PUT): a full
        # guest log would answer ERR and no disk fault could be injected.
        self.shared = make_image(os.path.join(self.fs, "shared.img"), IMAGE_MB) if mode == "shared" else None
        self.nodes = []
        self.relay = None
        self.relay_ctl = os.path.join(work, "relay.ctl")
        self.primary = self.node("A", secondary=False)
        wait_ready(self.primary)
        self.secondary = None

    def image(self, h):
        if self.shared:
            return self.shared
        path = os.path.join(self.fs, "%s-%d.img" % (h, self.gen))
        return make_image(path, IMAGE_MB)

    def node(self, h, secondary, image=None):
        self.gen += 1
        extra = ["--event-hook", self.hook, "--audit-log", os.path.join(self.work, "audit.log")]
        if secondary:
            extra += ["--incoming", "tcp:%s:%d" % (REP_IP[h], REP_PORT)]
        image = image or self.image(h)
        n = Node(self.topo, h, self.work, "n%d" % self.gen, image, self.mode, False, extra=extra, tls=self.tls)
        n.image = image
        self.nodes.append(n)
        return n

    def revoked(self):
        try:
            with open(os.path.join(self.work, "revoked")) as f:
                return set(f.read().split())
        except FileNotFoundError:
            return set()

    def protect(self, via_relay=False):
        """A fresh secondary on the other host, protected towards (through
        the relay in the primary's namespace if via_relay)."""
        if self.secondary and self.secondary.alive():
            self.secondary.close()
        self.stop_relay()
        self.drop_old_images()
        h = other(self.primary.h)
        self.secondary = self.node(h, secondary=True)
        uri = "tcp:%s:%d" % (REP_IP[h], REP_PORT)
        if via_relay:
            self.set_relay("pass")
            self.relay = subprocess.Popen(
                self.topo.cmd(self.primary.h, sys.executable, os.path.join(HERE, "relay.py"),
                              "127.0.0.1:%d" % RELAY_PORT, "%s:%d" % (REP_IP[h], REP_PORT), self.relay_ctl),
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            check(self.relay.stdout.readline().startswith("relay:"), "the relay did not start")
            uri = "tcp:127.0.0.1:%d" % RELAY_PORT
        self.primary.ctl("migrate", "-d", "-k", uri)
        self.primary.wait_state(("protected",), 60)

    def set_relay(self, mode):
        with open(self.relay_ctl + ".new", "w") as f:
            f.write(mode + "\n")
        os.replace(self.relay_ctl + ".new", self.relay_ctl)

    def stop_relay(self):
        if self.relay:
            self.relay.kill()
            self.relay.wait()
            self.relay = None

    def promote(self, why):
        """The cluster's promote: only a secondary that is not stale."""
        s = self.secondary
        st = s.migrate_info()
        check(st["session"] not in self.revoked(),
              "%s: the harness would promote a revoked secondary: %s" % (why, st))
        check(st["committed_epoch"] > 0, "%s: no checkpoint to promote: %s" % (why, st))
        s.ctl("cont")
        s.wait_state(("failed-over",), 10)
        self.primary, self.secondary = s, None

    def close(self):
        self.stop_relay()
        for n in self.nodes:
            n.close()

    def unmount(self):
        subprocess.run(["umount", "-l", self.fs], stderr=subprocess.DEVNULL)

    def fill(self, on):
        """Fills the images' file system but for a few KiB (on), or frees it."""
        filler = os.path.join(self.fs, "filler")
        if not on:
            os.unlink(filler)
            return
        size = 0
        with open(filler, "wb") as f:
            for chunk in (64 << 20, 1 << 20, 64 << 10, 4 << 10):
                while True:
                    try:
                        os.posix_fallocate(f.fileno(), size, chunk)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
                    size += chunk

    def drop_old_images(self):
        """Replicated: the images of VMMs that are gone (the file system is small)."""
        keep = {self.primary.image, self.shared}
        for n in self.nodes:
            if not n.alive() and n.image not in keep and os.path.exists(n.image):
                os.unlink(n.image)


def nft(topo, h, verdict):
    """nftables in host h's namespace: every packet to or from the replication
    port gets `verdict` ("drop" or "reject with tcp reset"); None removes it."""
    subprocess.run(topo.cmd(h, "nft", "delete", "table", "inet", "nemesis"), stderr=subprocess.DEVNULL)
    if verdict is None:
        return
    rules = ("table inet nemesis { chain out { type filter hook output priority 0; "
             "tcp dport %d %s; tcp sport %d %s; }; chain in { type filter hook input priority 0; "
             "tcp dport %d %s; tcp sport %d %s; }; }" % ((REP_PORT, verdict) * 4))
    r = subprocess.run(topo.cmd(h, "nft", rules), stderr=subprocess.PIPE, text=True)
    check(r.returncode == 0, "nft: %s" % r.stderr)


def link_fault(pair, verdict):
    """The replication link fails in the primary's namespace: the primary
    revokes its secondary and goes on; the stale secondary is replaced."""
    p, s, topo = pair.primary, pair.secondary, pair.topo
    nft(topo, p.h, verdict)
    try:
        p.wait_state(("unprotected",), 20)
        st = s.wait_state(("peer-lost", "waiting", "refused"), 10)
        check(st["session"] in pair.revoked() or st["committed_epoch"] == 0,
              "%s: the primary went on without revoking its secondary: %s" % (verdict, st))
    finally:
        nft(topo, p.h, None)
    s.kill()


def revoked_and_replaced(pair, kind):
    """The primary went on alone: its secondary must have been revoked (or
    held nothing); it is then replaced."""
    p, s = pair.primary, pair.secondary
    p.wait_state(("unprotected",), 20)
    st = s.wait_state(("peer-lost", "waiting", "refused"), 10)
    check(st["session"] in pair.revoked() or st["committed_epoch"] == 0,
          "%s: the primary went on without revoking its secondary: %s" % (kind, st))
    s.kill()


def relay_fault(pair, kind, rnd):
    """Faults of the relay between primary and secondary."""
    if kind == "delay-link":
        ms = rnd.choice((50, 150, 300, 800))
        pair.set_relay("delay %d" % ms)
        time.sleep(1.5)
        pair.set_relay("pass")
        time.sleep(1.0)
        if pair.primary.migrate_info()["state"] == "protected":
            return "protection held (%d ms)" % ms
        revoked_and_replaced(pair, kind)
        return "past the heartbeat timeout (%d ms): revoked, replaced" % ms
    pair.set_relay("reorder" if kind == "reorder-link" else "corrupt")
    revoked_and_replaced(pair, kind)
    return "stream refused: revoked, replaced"


def stray(topo, h, target, script):
    code = "import socket,time\ns=socket.create_connection(%r)\n%s" % (target, script)
    subprocess.run(topo.cmd(h, sys.executable, "-c", code), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)


def fault(pair, kind, rnd):
    """Injects one fault and brings the pair back; returns what happened."""
    p, s, topo = pair.primary, pair.secondary, pair.topo
    target = (REP_IP[s.h], REP_PORT)
    if kind == "kill-primary":
        p.kill()
        s.wait_state(("peer-lost",), 10)
        pair.promote(kind)
        return "secondary promoted"
    if kind == "kill-secondary":
        s.kill()
        p.wait_state(("unprotected",), 20)
        return "primary revoked it, serves alone"
    if kind == "stop-primary":
        p.proc.send_signal(signal.SIGSTOP)
        s.wait_state(("peer-lost",), 10)
        p.kill()                       # fencing
        pair.promote(kind)
        return "fenced, secondary promoted"
    if kind == "stop-secondary":
        s.proc.send_signal(signal.SIGSTOP)
        p.wait_state(("unprotected",), 20)
        s.kill()
        return "primary revoked it"
    if kind == "cut-link":
        topo.cut_replication(p.h)
        p.wait_state(("unprotected",), 20)
        st = s.wait_state(("peer-lost", "waiting"), 10)
        check(st["session"] in pair.revoked() or st["committed_epoch"] == 0,
              "cut-link: the primary went on without revoking its secondary: %s" % st)
        topo.ip(p.h, "link", "set", "rep" + p.h, "up")
        s.kill()                       # the stale secondary is restarted fresh
        return "primary revoked the stale secondary"
    if kind == "drop-link":
        link_fault(pair, "drop")
        return "primary revoked the stale secondary"
    if kind == "rst-link":
        link_fault(pair, "reject with tcp reset")
        return "primary revoked the stale secondary"
    if kind == "throttle-link":
        dev = "rep" + p.h
        subprocess.run(topo.cmd(p.h, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "2mbit",
                                "burst", "32kbit", "latency", "200ms"), check=True)
        time.sleep(1.0)
        subprocess.run(topo.cmd(p.h, "tc", "qdisc", "del", "dev", dev, "root"), check=True)
        st = p.migrate_info()
        if st["state"] == "protected":
            return "protection held"
        # A throttled link may starve the heartbeat: then a revocation.
        p.wait_state(("unprotected",), 20)
        s.kill()
        return "heartbeat starved: revoked, replaced"
    if kind == "eio-secondary":
        if pair.mode != "replicated":
            return "no-op (shared: the secondary writes nothing before a failover)"
        s.ctl("x-disk-fault", "eio", "1")
        pair.client.run("--deadline-ms", "10000", "put", "eio-s-%d" % rnd.randint(0, 1 << 30), "1")
        st = s.wait_state(("failed",), 10)
        check(st["unusable"], "eio-secondary: not marked unusable: %s" % st)
        p.wait_state(("unprotected",), 20)
        s.kill()
        return "secondary unusable, replaced"
    if kind == "failed-handover":
        s.ctl("migrate_set_parameter", "x-inject", "handover-no-ok")
        p.ctl("migrate_handover", check_rc=False)
        s.wait_state(("failed-over",), 10)
        st = p.wait_state(("stopped",), 10)
        check(p.ctl("info", "status")["status"] != "running", "failed-handover: old primary runs")
        p.kill()
        pair.primary, pair.secondary = s, None
        return "old primary stopped, secondary runs"
    if kind == "stray-protected":
        stray(topo, p.h, target, "s.sendall(b'\\x00garbage'*100)\ntime.sleep(0.2)")
        st = p.migrate_info()
        check(st["state"] == "protected", "a stray connection ended protection: %s" % st)
        return "nothing changed"
    if kind == "stray-after-death":
        p.kill()
        before = s.wait_state(("peer-lost",), 10)
        stray(topo, p.h, target, "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\ntime.sleep(0.2)")
        stray(topo, p.h, target, "for i in range(3):\n  s.sendall(b'F')\n  time.sleep(0.3)")
        st = s.migrate_info()
        check(st["state"] == "peer-lost" and st["committed_epoch"] == before["committed_epoch"],
              "a stray connection changed the surviving secondary: %s" % st)
        pair.promote(kind)
        return "secondary unchanged, promoted"
    if kind == "eio-primary":
        p.ctl("x-disk-fault", "eio", "1")
        pair.client.run("--deadline-ms", "10000", "put", "eio-%d" % rnd.randint(0, 1 << 30), "1")
        s.wait_state(("failed-over",), 20)
        p.proc.wait(20)
        pair.primary, pair.secondary = s, None
        return "primary handed over"
    if kind == "cancel":
        p.ctl("migrate_cancel")
        p.wait_state(("unprotected",), 20)
        return "cancelled"
    if kind == "quit":
        p.ctl("quit", check_rc=False)
        p.proc.wait(20)
        s.wait_state(("peer-lost",), 10)
        pair.promote(kind)
        return "secondary promoted"
    if kind in RELAY_KINDS:
        return relay_fault(pair, kind, rnd)
    if kind == "full-disk":
        pair.fill(True)
        try:
            time.sleep(1.0)
        finally:
            pair.fill(False)
        time.sleep(0.5)
        if p.migrate_info()["state"] == "protected":
            return "writes refused while full, protection held"
        revoked_and_replaced(pair, kind)
        return "secondary refused a checkpoint it had no room for: revoked, replaced"
    if kind == "handover":
        p.ctl("migrate_handover", check_rc=False)
        s.wait_state(("failed-over",), 10)
        p.proc.wait(20)
        pair.primary, pair.secondary = s, None
        return "handed over"
    raise ValueError(kind)


def run(args, work):
    rnd = random.Random(args.seed)
    kinds = args.kinds.split(",") if args.kinds else KINDS
    figures = collections.Counter()
    outcomes = collections.defaultdict(set)
    sampler = Sampler()
    with Topology() as topo:
        pair = Pair(topo, work, args.mode, rnd, None if args.plaintext else make_psk(work))
        client = Client(topo, work)
        pair.client = client
        replies = Replies(topo)
        try:
            sampler.start()
            for i in range(args.faults):
                kind = rnd.choice(kinds)
                pair.protect(via_relay=kind in RELAY_KINDS)
                sampler.watch(pair.nodes)
                client.start_load(seconds=3600, keys=100, seed=i + 1)
                time.sleep(rnd.uniform(0.2, 1.0))
                t = time.monotonic()
                what = fault(pair, kind, rnd)
                st, v = client.finish()
                # Only a full disk makes the guest refuse writes (not acknowledged: nothing to lose).
                check(st["errors"] == 0 or kind == "full-disk",
                      "%s: the guest answered ERR (%d): %s" % (kind, st["errors"], st))
                figures["refused"] += st["errors"]
                figures[kind] += 1
                figures["acked"] += st["puts_acked"]
                figures["stale"] += st["stale_reads"]
                outcomes[kind].add(what)
                print("fault %3d %-18s %-36s %5.2f s; acked %5d, verify %3d keys, %d lost"
                      % (i + 1, kind, what, time.monotonic() - t, st["puts_acked"], v["checked"], v["lost"]),
                      flush=True)
                check(sampler.violations == 0, "two VMMs ran the guest at once: %s" % sampler.last_violation)
                replies.check(kind)
            sampler.stop_evt.set()
            # The image booted alone (replicated: the last primary's own):
            # every acknowledged write is on it.
            alone_image = pair.primary.image
            pair.close()
            n = Node(topo, "A", work, "alone", alone_image, pair.mode, False, tls=pair.tls)
            wait_ready(n)
            v = client.verify()
            n.close()
            print("image booted alone: verify %d keys, %d lost, %d wrong" % (v["checked"], v["lost"], v["wrong"]))
            check(v["lost"] == 0 and v["wrong"] == 0, "the image lost acknowledged writes: %s" % v)
        finally:
            sampler.stop_evt.set()
            if client.load and client.load.poll() is None:
                client.load.kill()
            replies.close()
            pair.close()
            pair.unmount()
    total = sum(figures[k] for k in kinds)
    print("nemesis %s%s, seed %d: %d faults, %d acknowledged writes, 0 lost, %d stale reads, "
          "%d refused (disk full, never acknowledged), %d state samples, %d with two primaries"
          % (args.mode, " (plaintext)" if args.plaintext else " over TLS", args.seed, total, figures["acked"], figures["stale"], figures["refused"],
             sampler.samples, sampler.violations))
    print("replies seen leaving the guest: %d by host A, %d by host B; %d changes of host, "
          "none back within %d ms" % (replies.per_host["A"], replies.per_host["B"], replies.switches,
                                      SWITCH_GAP * 1000))
    for k in kinds:
        print("  %-18s %3d  -> %s" % (k, figures[k], "; ".join(sorted(outcomes[k])) or "-"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("shared", "replicated"), default="shared")
    ap.add_argument("--faults", type=int, default=30)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--kinds", default="")
    ap.add_argument("--plaintext", action="store_true",
                    help="no --tls-creds on the link (by default a pre-shared key made for the run)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    selftest_replies()
    require_kvm()
    print("nemesis: mode %s, %d faults, seed %d (replay with --seed %d)"
          % (args.mode, args.faults, args.seed, args.seed), flush=True)
    work = tempfile.mkdtemp(prefix="ftvm-nemesis-")
    try:
        run(args, work)
    except Failure as e:
        print("FAIL: nemesis (seed %d): %s" % (args.seed, e))
        print("(work files kept in %s; the protocol's steps: audit.log there)" % work)
        sys.exit(1)
    print("PASS: nemesis")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
