"""drill - a two-host ftvm cluster on one machine, for failover drills.

Topology (every name is a network namespace made by this module):

    client ns  ── vethC ─┐
                         ├── br0 in the "lan" ns (the LAN)
    host A ns  ── vethA ─┤            host A: brA = { tapA, vethA }
    host B ns  ── vethB ─┘            host B: brB = { tapB, vethB }
    host A ns  ── repA ═══ repB ── host B ns    (replication link, 10.99.0.0/24)

The guest (10.0.0.10) is reached by the client (10.0.0.1) over the LAN;
its NIC is the tap of whichever host runs it. After a failover the new
host announces the guest's MAC (RARP), the LAN bridge learns the new port.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

from ftvmtest import (FTVM, FTVM_KV, FTVMCTL, GUEST, GUEST_IP, KV_PORT, Failure, check, sh)  # noqa: F401

CLIENT_IP = "10.0.0.1"
REP_IP = {"A": "10.99.0.1", "B": "10.99.0.2"}
REP_PORT = 4444
GUEST_MAC = "52:54:00:12:34:56"


class Topology:
    def __init__(self, tag="drill"):
        base = "ftd%d%d" % (os.getpid() % 10000, random.randint(0, 99))
        self.ns = {k: "%s-%s" % (base, k) for k in ("lan", "A", "B", "C")}
        self.made = []
        try:
            self._build()
        except Exception:
            self.destroy()
            raise

    def ip(self, ns, *args):
        return sh("ip", "-n", self.ns[ns], *args)

    def cmd(self, ns, *args):
        return ["ip", "netns", "exec", self.ns[ns]] + list(args)

    def _build(self):
        for k, n in self.ns.items():
            sh("ip", "netns", "add", n)
            self.made.append(n)
            self.ip(k, "link", "set", "lo", "up")
        self.ip("lan", "link", "add", "br0", "type", "bridge")
        self.ip("lan", "link", "set", "br0", "type", "bridge", "ageing_time", "30000")
        self.ip("lan", "link", "set", "br0", "up")
        for h in ("A", "B", "C"):
            # veth pair: one end in the host, one on the LAN bridge
            sh("ip", "link", "add", "lan" + h, "netns", self.ns["lan"], "type", "veth",
               "peer", "name", "veth" + h, "netns", self.ns[h])
            self.ip("lan", "link", "set", "lan" + h, "master", "br0")
            self.ip("lan", "link", "set", "lan" + h, "up")
            self.ip(h, "link", "set", "veth" + h, "up")
        self.ip("C", "addr", "add", CLIENT_IP + "/24", "dev", "vethC")
        # The client host's minimum TCP retransmission timeout towards the
        # guest (docs/operations.md: what a TCP client waits after a
        # failover); Linux's default is 200 ms.
        rto_min = os.environ.get("FTVM_CLIENT_RTO_MIN")
        if rto_min:
            net = CLIENT_IP.rsplit(".", 1)[0] + ".0/24"
            self.ip("C", "route", "replace", net, "dev", "vethC", "proto", "kernel", "scope", "link",
                    "src", CLIENT_IP, "rto_min", rto_min)
        for h in ("A", "B"):
            self.ip(h, "link", "add", "br" + h, "type", "bridge")
            self.ip(h, "link", "set", "br" + h, "type", "bridge", "ageing_time", "30000")
            self.ip(h, "tuntap", "add", "tap" + h, "mode", "tap")
            self.ip(h, "link", "set", "tap" + h, "master", "br" + h)
            self.ip(h, "link", "set", "veth" + h, "master", "br" + h)
            for dev in ("tap" + h, "br" + h):
                self.ip(h, "link", "set", dev, "up")
        sh("ip", "link", "add", "repA", "netns", self.ns["A"], "type", "veth",
           "peer", "name", "repB", "netns", self.ns["B"])
        for h in ("A", "B"):
            self.ip(h, "addr", "add", REP_IP[h] + "/24", "dev", "rep" + h)
            self.ip(h, "link", "set", "rep" + h, "up")

    def cut_replication(self, h):
        self.ip(h, "link", "set", "rep" + h, "down")

    def destroy(self):
        for n in self.made:
            subprocess.run(["ip", "netns", "pids", n], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            subprocess.run(["ip", "netns", "del", n], stderr=subprocess.DEVNULL)
        self.made = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()


def other(h):
    return "B" if h == "A" else "A"


class Node:
    """One ftvm process on host h of the topology."""

    def __init__(self, topo, h, work, tag, image, mode, secondary, memory="256M", smp=1,
                 policy="event", extra=(), net=True, append=None, tls=None):
        self.topo, self.h, self.work = topo, h, work
        self.name = "%s-%s" % (tag, h)
        self.sock = os.path.join(work, self.name + ".mon")
        self.serial = os.path.join(work, self.name + ".serial")
        self.stderr_path = os.path.join(work, self.name + ".stderr")
        args = [FTVM, "--name", self.name, "--memory", memory, "--smp", str(smp),
                "--kernel", GUEST, "--append", append or "workload=kv ip=%s/24 port=%d" % (GUEST_IP, KV_PORT),
                "--drive", "file=%s,mode=%s" % (image, mode),
                "--serial", "file:" + self.serial, "--monitor", "unix:" + self.sock,
                "--ft-policy", policy, "--test-mode"]
        if net:
            args += ["--netdev", "tap,ifname=tap%s,mac=%s" % (h, GUEST_MAC)]
        if secondary:
            args += ["--incoming", "tcp:%s:%d" % (REP_IP[h], REP_PORT), "--failover-on-peer-loss"]
        if tls:
            args += ["--tls-creds", tls]
        args += list(extra)
        self.err = open(self.stderr_path, "a")
        self.proc = subprocess.Popen(topo.cmd(h, *args), stdout=subprocess.DEVNULL, stderr=self.err)
        self.wait_monitor()

    def wait_monitor(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.sock):
                try:
                    return self.ctl("info", "status")
                except Failure:
                    pass
            if self.proc.poll() is not None:
                raise Failure("%s exited (%d): %s" % (self.name, self.proc.returncode, self.errors()))
            time.sleep(0.01)
        raise Failure("%s: monitor did not answer" % self.name)

    def ctl(self, *words, check_rc=True):
        r = subprocess.run([FTVMCTL,
                            self.sock, "--json"] + list(words),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode == 2 or (check_rc and r.returncode != 0):
            raise Failure("%s: ftvmctl %s: %d %s%s" % (self.name, " ".join(words), r.returncode, r.stdout, r.stderr))
        j = json.loads(r.stdout)
        return j.get("return", j)

    def migrate_info(self):
        return self.ctl("info", "migrate")

    def wait_state(self, states, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.migrate_info()
            if st["state"] in states:
                return st
            if self.proc.poll() is not None:
                raise Failure("%s exited (%d): %s" % (self.name, self.proc.returncode, self.errors()))
            time.sleep(0.01)
        raise Failure("%s: state %s, wanted %s (errors: %s)" % (self.name, st["state"], states, self.errors()[-2000:]))

    def protect_to(self, h2, log=None):
        """Protection towards host h2's secondary; with log, through
        `ftvmctl ... migrate --wait`, each of its progress lines logged."""
        uri = "tcp:%s:%d" % (REP_IP[h2], REP_PORT)
        if not log:
            self.ctl("migrate", "-d", "-k", uri)
            return self.wait_state(("protected",), 60)
        p = subprocess.Popen([FTVMCTL, self.sock, "--timeout", "120", "migrate", "-d", "-k", uri, "--wait"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in p.stdout:
            log("sync: " + line.rstrip())
        if p.wait(130) != 0:
            raise Failure("%s: migrate --wait: %s" % (self.name, p.stderr.read().strip()))
        return self.migrate_info()

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def alive(self):
        return self.proc.poll() is None

    def errors(self):
        with open(self.stderr_path) as f:
            return f.read()

    def close(self):
        self.kill()
        self.err.close()


def stop_json(client, timeout):
    """Ends a client's background load (SIGINT) and returns the JSON report
    it printed last."""
    if client.load.poll() is None:
        client.load.send_signal(signal.SIGINT)
    client.load.wait(timeout)
    client.load_out.close()
    client.load_err.close()
    with open(client.load_out.name) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    if not lines:
        with open(client.load_err.name) as f:
            raise Failure("the load printed nothing: " + f.read()[-2000:])
    return json.loads(lines[-1])


class Client:
    """The kv client in the client namespace: a background load and probes."""

    def __init__(self, topo, work):
        self.topo, self.work = topo, work
        self.acks = os.path.join(work, "acks.log")
        self.load = None

    def run(self, *args, timeout=120):
        return subprocess.run(self.topo.cmd("C", FTVM_KV, "--server", "%s:%d" % (GUEST_IP, KV_PORT), *args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)

    def start_load(self, seconds, keys=200, rate=0, seed=1):
        args = ["--deadline-ms", "20000", "--json", "load", "--duration-ms", str(int(seconds * 1000)),
                "--keys", str(keys), "--seed", str(seed), "--ack-log", self.acks]
        if rate:
            args += ["--rate", str(rate)]
        self.load_out = open(os.path.join(self.work, "load.json"), "w")
        self.load_err = open(os.path.join(self.work, "load.stderr"), "w")
        before = os.path.getsize(self.acks) if os.path.exists(self.acks) else 0
        self.load = subprocess.Popen(self.topo.cmd("C", FTVM_KV, "--server", "%s:%d" % (GUEST_IP, KV_PORT), *args),
                                     stdout=self.load_out, stderr=self.load_err)
        # Running once its first PUT is in the ack log: a SIGINT before the
        # client is up would end it without its report (a busy machine can
        # take that long to start it).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.load.poll() is None:
            if os.path.exists(self.acks) and os.path.getsize(self.acks) > before:
                break
            time.sleep(0.01)

    def stop_load(self, timeout=60):
        s = stop_json(self, timeout)
        return self.load.returncode, s

    def finish(self):
        """Stops the load and checks that nothing acknowledged was lost and no
        answer was stale or wrong; returns (load stats, verify result)."""
        time.sleep(0.3)
        rc, s = self.stop_load()
        check(s["stale_reads"] == 0 and s["wrong_answers"] == 0 and s["gave_up"] == 0, "client: %s" % s)
        v = self.verify()
        check(v["lost"] == 0 and v["wrong"] == 0, "lost acknowledged writes: %s" % v)
        return s, v

    def probe_until_answer(self, t_kill, timeout=20.0):
        """Seconds from t_kill until the guest answers again (a TIME request)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.run("--timeout-ms", "10", "--max-timeout-ms", "10", "--deadline-ms", "50", "time", timeout=10)
            if r.returncode == 0:
                return time.monotonic() - t_kill
        raise Failure("no answer from the guest %.0f s after the kill" % timeout)

    def verify(self):
        r = self.run("--json", "verify", "--ack-log", self.acks, timeout=300)
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        if not lines:
            raise Failure("verify printed nothing: " + r.stderr)
        return json.loads(lines[-1])


# redis-py is Debian's python3-redis: the system's Python 3, whatever
# Python runs the tests.
REDIS_PYTHON = "/usr/bin/python3"


class RedisClient:
    """The Redis load (tests/lib/redis_load.py, redis-py) in the client
    namespace: persistent TCP connections to the guest's RESP port that are
    never reopened. The same calls as Client, for run_drill."""

    PORT = 6379

    def __init__(self, topo, work, conns=4):
        self.topo, self.work, self.conns = topo, work, conns
        self.acks = os.path.join(work, "redis-acks.log")
        self.load = None

    def script(self, *args):
        return self.topo.cmd("C", REDIS_PYTHON, os.path.join(os.path.dirname(__file__), "redis_load.py"),
                             *args)

    def start_load(self, seconds=None, keys=50, seed=1, rate=0):
        del seconds, rate       # runs until stop_load
        self.load_out = open(os.path.join(self.work, "redis-load.json"), "w")
        self.load_err = open(os.path.join(self.work, "redis-load.stderr"), "w")
        before = os.path.getsize(self.acks) if os.path.exists(self.acks) else 0
        self.load = subprocess.Popen(self.script("load", GUEST_IP, str(self.PORT), "--conns", str(self.conns),
                                                 "--keys", str(keys), "--seed", str(seed), "--ack-log", self.acks),
                                     stdout=self.load_out, stderr=self.load_err)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.load.poll() is None:
            if os.path.exists(self.acks) and os.path.getsize(self.acks) > before:
                return
            time.sleep(0.01)
        raise Failure("the Redis load did not start: " + open(self.load_err.name).read()[-1000:])

    def stop_load(self, timeout=60):
        s = stop_json(self, timeout)
        # Client's names, for run_drill's checks: a broken connection is a
        # request that gave up.
        s.update(puts_acked=s["sets_acked"], gave_up=s["errors"])
        return self.load.returncode, s

    def probe_until_answer(self, t_kill, timeout=20.0):
        """Seconds from t_kill until the guest answers a PING on a new connection."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = subprocess.run(self.topo.cmd("C", "redis-cli", "-h", GUEST_IP, "PING"),
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=2)
            except subprocess.TimeoutExpired:
                continue
            if r.stdout.strip() == "PONG":
                return time.monotonic() - t_kill
            time.sleep(0.005)
        raise Failure("no answer from the guest %.0f s after the kill" % timeout)

    def verify(self):
        r = subprocess.run(self.script("verify", GUEST_IP, str(self.PORT), "--ack-log", self.acks),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        if not lines:
            raise Failure("redis verify printed nothing: " + r.stderr[-2000:])
        return json.loads(lines[-1])


def stall_per_kill(long_waits, kills):
    """The longest wait of a persistent connection around each kill: waits
    that began from 0.5 s before the kill until 0.5 s before the next (at
    most 5 s after it)."""
    out = []
    for i, t in enumerate(kills):
        end = min(t + 5.0, kills[i + 1] - 0.5) if i + 1 < len(kills) else t + 5.0
        w = [ms for start, ms in long_waits if t - 0.5 <= start < end]
        out.append(max(w) if w else 0.0)
    return out


def close_all(client, nodes):
    """Test cleanup: the client's load (if any) and every node's VMM."""
    if client and client.load and client.load.poll() is None:
        client.load.kill()
    for n in nodes:
        n.close()


def wait_ready(node, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(node.serial, errors="replace") as f:
                if "ftvm-guest: ready" in f.read():
                    return
        except FileNotFoundError:
            pass
        if not node.alive():
            raise Failure("%s exited: %s" % (node.name, node.errors()))
        time.sleep(0.01)
    raise Failure("%s: guest not ready" % node.name)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] if v else 0


def make_psk(work, name="link.psk"):
    """A pre-shared key for --tls-creds: 32 random bytes, hex, mode 0600."""
    path = os.path.join(work, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    return "psk:" + path


def make_image(path, mb=64):
    with open(path, "wb") as f:
        f.truncate(mb << 20)
    return path


class Noise:
    """Traffic that does not wait for answers, so that frames arrive while
    checkpoints are captured (the main kv load waits for each answer): TIME
    requests every `period` s, and `loads` more kv clients, each on its own
    keys with its own ack log (their GETs catch an old PUT coming back)."""

    def __init__(self, topo, work, period=0.001, loads=4):
        self.topo, self.work = topo, work
        code = ("import socket,time\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.setblocking(False)\n"
                "i=0\n"
                "while True:\n"
                "    i+=1\n"
                "    try: s.sendto(b'TIME n%%d'%%i,('%s',%d))\n"
                "    except OSError: pass\n"
                "    try:\n"
                "        while s.recv(2048): pass\n"
                "    except OSError: pass\n"
                "    time.sleep(%f)\n" % (GUEST_IP, KV_PORT, period))
        self.flood = subprocess.Popen(topo.cmd("C", "python3", "-c", code),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.loads = []
        for i in range(loads):
            acks = os.path.join(work, "noise%d.acks" % i)
            out = open(os.path.join(work, "noise%d.json" % i), "w")
            p = subprocess.Popen(topo.cmd("C", FTVM_KV, "--server", "%s:%d" % (GUEST_IP, KV_PORT),
                                          "--deadline-ms", "20000", "--json", "load", "--duration-ms", "3600000",
                                          "--keys", "40", "--key-prefix", "n%d-" % i, "--seed", str(100 + i),
                                          "--ack-log", acks),
                                 stdout=out, stderr=subprocess.DEVNULL)
            self.loads.append((p, out, acks))

    def finish(self):
        """Stops it all; checks every noise client as the main one is checked."""
        self.close()
        client = Client(self.topo, self.work)
        for i, (p, out, acks) in enumerate(self.loads):
            with open(out.name) as f:
                lines = [l for l in f.read().splitlines() if l.strip()]
            check(lines, "noise client %d printed nothing" % i)
            st = json.loads(lines[-1])
            check(st["stale_reads"] == 0 and st["wrong_answers"] == 0, "noise client %d: %s" % (i, st))
            client.acks = acks
            v = client.verify()
            check(v["lost"] == 0 and v["wrong"] == 0, "noise client %d lost writes: %s" % (i, v))

    def close(self):
        if self.flood.poll() is None:
            self.flood.kill()
            self.flood.wait(5)
        for p, out, _ in self.loads:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
            out.close()


def check_steps(info):
    """info migrate's steps_us under load: every checkpoint after the first
    has each step, the secondary's share came with each ACK and fits in the
    primary's wait for it, and the percentiles are in order."""
    s = info["steps_us"]
    n = sum(s["send"]["histogram"].values())
    check(n > 0, "no checkpoint steps in info migrate: %s" % s)
    for k in ("send", "ack", "peer_receive", "peer_commit", "release"):
        got = sum(s[k]["histogram"].values())
        check(got == n, "step %s has %d samples, send has %d" % (k, got, n))
    for k, v in s.items():
        check(v["p50"] <= v["p90"] <= v["p99"] <= v["max"], "step %s: percentiles out of order: %s" % (k, v))
    check(s["ack"]["p50"] >= s["peer_commit"]["p50"],
          "the secondary's commit (p50 %d us) is longer than the primary's wait for its ACK (p50 %d us)"
          % (s["peer_commit"]["p50"], s["ack"]["p50"]))


def run_drill(work, mode, kills, policy="event", seed=None, log=print, min_gap=0.3, max_gap=1.2,
              noise=False, memory="256M", disk_mb=64, fill=None, service="kv"):
    """Kills the primary `kills` times at random moments under kv load; after
    each failover a new secondary is started on the dead primary's host and
    protection is restored. noise: a second client sends a request every
    millisecond regardless of answers. memory, disk_mb: the guest's size;
    fill(path): writes data into the first primary's image before it boots.
    The link is TLS 1.3 with a pre-shared key made for the drill.
    service: "kv" (the UDP protocol, ftvm-kv) or "redis" (persistent TCP
    connections of redis-py to the guest's RESP port, never reopened: each
    must survive every failover; the longest wait per kill is reported).
    Returns a report dict; raises Failure on any loss."""
    rnd = random.Random(seed)
    tls = make_psk(work)
    rep = {"mode": mode, "policy": policy, "service": service, "kills": 0, "failover_s": []}
    kill_times = []
    with Topology() as topo:
        if mode == "shared":
            shared = make_image(os.path.join(work, "shared.img"), disk_mb)
            image = {"A": shared, "B": shared}
        else:
            image = {h: make_image(os.path.join(work, "%s.img" % h), disk_mb) for h in ("A", "B")}
        if fill:
            fill(image["A"])
        nodes = []
        client = RedisClient(topo, work) if service == "redis" else Client(topo, work)
        try:
            primary = Node(topo, "A", work, "g0", image["A"], mode, False, policy=policy, memory=memory, tls=tls)
            nodes.append(primary)
            wait_ready(primary)
            secondary = Node(topo, "B", work, "g0", image["B"], mode, True, policy=policy, memory=memory, tls=tls)
            nodes.append(secondary)
            primary.protect_to("B", log=log)
            log("replication link: %s, pre-shared key" % primary.migrate_info()["cipher"])
            client.start_load(seconds=3600, keys=50 if service == "redis" else 200, seed=rnd.randint(1, 1 << 30))
            noisy = Noise(topo, work) if noise else None
            if noisy:
                nodes.append(noisy)
            for i in range(kills):
                time.sleep(rnd.uniform(min_gap, max_gap))
                st = primary.migrate_info()
                if i == 0:
                    check_steps(st)
                t_kill = time.monotonic()
                kill_times.append(t_kill)
                primary.kill()
                took = client.probe_until_answer(t_kill)
                fo = secondary.wait_state(("failed-over",), 10)
                rep["failover_s"].append(took)
                rep["kills"] += 1
                log("kill %2d: primary on %s killed at epoch %d; secondary resumed checkpoint %d; "
                    "first answer after %.0f ms" % (i + 1, primary.h, st.get("epoch", 0),
                                                    fo["committed_epoch"], took * 1000))
                dead = primary
                primary = secondary
                secondary = Node(topo, dead.h, work, "g%d" % (i + 1), image[dead.h], mode, True, policy=policy,
                                 memory=memory, tls=tls)
                nodes.append(secondary)
                # Re-protection under load: only the line that says how long it took.
                primary.protect_to(secondary.h, log=lambda l: l.startswith("sync: protected:") and log(l))
            time.sleep(0.3)
            rc, s = client.stop_load()
            rep["load"] = s
            log("client: %d ops, %d PUTs acknowledged, %d stale reads, %d wrong answers, %d gave up"
                % (s["ops"], s["puts_acked"], s["stale_reads"], s["wrong_answers"], s["gave_up"]))
            check(s["stale_reads"] == 0 and s["wrong_answers"] == 0, "stale or wrong reads: %s" % s)
            check(s["gave_up"] == 0, "requests gave up: %s" % s)
            if service == "redis":
                stalls = stall_per_kill(s["long_waits"], kill_times)
                rep["stall_ms"] = stalls
                log("redis: %d persistent connections, %d resets or errors, %d reconnects; longest wait per "
                    "failover p50 %.0f ms, max %.0f ms" % (client.conns, s["errors"], s["reconnects"],
                                                          pct(stalls, 50), max(stalls) if stalls else 0))
            if noisy:
                noisy.finish()
                log("noise clients: no stale read, nothing lost")
            v = client.verify()
            rep["verify"] = v
            log("verify on the running primary: %d keys, %d lost" % (v["checked"], v["lost"]))
            check(v["lost"] == 0 and v["wrong"] == 0, "acknowledged writes lost: %s" % v)
            info = primary.migrate_info()
            rep["final_primary"] = info
            # The surviving disk: boot it alone, the guest replays its log.
            survivor = image[primary.h]
            for n in nodes:
                n.close()
            alone = Node(topo, primary.h, work, "survivor", survivor, mode, False, policy=policy, memory=memory, tls=tls)
            nodes.append(alone)
            wait_ready(alone)
            v2 = client.verify()
            rep["verify_disk"] = v2
            log("surviving image booted alone: %d keys, %d lost" % (v2["checked"], v2["lost"]))
            check(v2["lost"] == 0 and v2["wrong"] == 0, "the surviving image lost acknowledged writes: %s" % v2)
        finally:
            if client.load and client.load.poll() is None:
                client.load.kill()
            for n in nodes:
                n.close()
    return rep
