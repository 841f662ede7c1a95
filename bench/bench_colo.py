#!/usr/bin/env python3
"""ftvm against QEMU 7.2's COLO, on the same guest (ftvm-guest.elf, the kv
workload), the same client and the same network, measured in one run:

  QEMU unprotected, QEMU COLO (a primary and a secondary QEMU, block
  replication, colo-compare), ftvm unprotected and ftvm protected (event
  policy; shared image as bench_ft.py, and an image per host, "repl", as
  COLO keeps one), each booted fresh on host A of the drill topology
  (network namespaces, tests/lib/drill.py): its NIC is tapA, the client
  is ftvm-kv in namespace C (1 closed-loop client, 50% PUT, 500 keys), the
  secondary runs on host B, the replication link is the veth repA-repB.

One table, a row per protected system: throughput as a ratio of its own
unprotected run (same VMM), added latency p50/p99 over that run, the
guest's pause per checkpoint p50/p99, checkpoints per second during the
load, and failover time (SIGKILL of the primary -> first kv answer from
the secondary, over --kills kills, each on a fresh pair). --rounds rounds
run every system in turn; ratios and added latency are taken within a
round (neighbours in time share the machine's noise), then the median.

Where the figures come from:
  ftvm: `info migrate` (pause_us: the vCPUs stopped for the capture; the
    copy travels while the guest runs, output is held until the ACK),
    epochs before and after the load; failover by --failover-on-peer-loss.
  COLO: QEMU's own trace events (-trace colo_*, -msg timestamp=on, the
    primary's and secondary's logs): a checkpoint is the primary's
    `checkpoint-request` message; its pause runs from the `checkpoint-reply`
    (the primary stops the VM right after it) to `Change 'stop' => 'run'`
    (after the secondary reported `vmstate-loaded`): COLO keeps the guest
    stopped for the whole transaction. A checkpoint counts as "on
    mismatch" when colo-compare traced a miscompare (or a packet that
    waited too long) since the previous one; the others are periodic
    (x-checkpoint-delay, --colo-checkpoint-ms). Pages per checkpoint: the
    secondary's colo_flush_ram_cache_begin. Failover: this script is the
    heartbeat: after the kill it sends the secondary nbd-server-stop,
    x-colo-lost-heartbeat and deletes its redirectors (QEMU has no
    heartbeat of its own), as QEMU's docs/COLO-FT.txt describes.

COLO runs twice: "stock" as COLO-FT.txt sets it up, and "tuned": the
proxy's chardev sockets with nodelay=on and the replication link's
routes with `quickack 1`. QEMU 7.2 sets TCP_NODELAY on multifd channels
only, not on the migration socket COLO uses: the secondary's two small
replies per checkpoint (vmstate-received, vmstate-loaded) meet Nagle and
the primary's delayed ACK, about 40 ms per checkpoint; quickack on the
route ends that. ftvm's link sets TCP_NODELAY itself and runs on the
stock routes.

Also measured: QEMU unprotected with a second guest spinning beside it,
because under QEMU this guest busy-polls (docs/guest-abi.md: ftvm's idle
port is unassigned there), so COLO's secondary takes a whole core of the
2: that line tells that cost from COLO's own.

Latency CDFs: each system's median round, drawn from the percentiles
the kv client reports (latency_cdf_us) into --plot (bench/plot.py).

COLO_NOTES.md has the setup and how to read the figures.
"""
import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
sys.path.insert(0, HERE)
from ftvmtest import GUEST, GUEST_IP, KV_PORT, Failure, require_kvm, sh  # noqa: E402
from drill import REP_IP, GUEST_MAC, Client, Node, Topology, make_image, pct, wait_ready  # noqa: E402
from bench_ft import ckpt_figures, kv_run, one_failover, start_pair  # noqa: E402
from plot import cdf_of, cdf_png  # noqa: E402

QEMU = "qemu-system-x86_64"
MEM_MB = 256
DISK_MB = 64
# As guest/tests/qemu_smoke.py: -arch-capabilities for AMD (PVM) hosts,
# vmware-cpuid-freq (leaf 0x40000010) needs +invtsc; migration with
# +invtsc needs tsc-frequency, added once the host's rate is known.
CPU_CANDIDATES = [
    "host,-arch-capabilities,vmware-cpuid-freq=on,+invtsc",
    "host,vmware-cpuid-freq=on,+invtsc",
]
KV_APPEND = "workload=kv ip=%s/24 port=%d" % (GUEST_IP, KV_PORT)
# Ports of the COLO proxy and migration (each in its own host namespace).
MIRROR_PORT, COMPARE_SEC_PORT, COMPARE_PRI_PORT, COMPARE_OUT_PORT = 9003, 9004, 9001, 9005
MIGRATE_PORT, NBD_PORT = 9998, 9999
TRACE_EVENTS = ["colo_vm_state_change", "colo_send_message", "colo_receive_message",
                "colo_flush_ram_cache_begin", "colo_compare_udp_miscompare", "colo_compare_icmp_miscompare",
                "colo_old_packet_check_found", "colo_failover_set_state"]


class QMPError(Failure):
    pass


class QMP:
    """A QMP connection (unix socket): commands, and the events seen meanwhile."""

    def __init__(self, path, proc=None, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            self.s = socket.socket(socket.AF_UNIX)
            try:
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if proc is not None and proc.poll() is not None:
                    raise QMPError("QEMU exited (%d) before its QMP socket answered" % proc.returncode)
                if time.monotonic() > deadline:
                    raise QMPError("no QMP socket at %s after %d s" % (path, timeout))
                time.sleep(0.02)
        self.buf = b""
        self.events = []
        self._line(timeout)
        self.cmd("qmp_capabilities")

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.s], [], [], left)[0]:
                raise QMPError("no QMP answer after %.0f s" % timeout)
            chunk = self.s.recv(65536)
            if not chunk:
                raise QMPError("QEMU closed its QMP socket")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, execute, timeout=30, **args):
        msg = {"execute": execute}
        if args:
            msg["arguments"] = args
        self.s.sendall((json.dumps(msg) + "\n").encode())
        while True:
            r = self._line(timeout)
            if "event" in r:
                self.events.append(r)
            elif "error" in r:
                raise QMPError("%s: %s" % (execute, r["error"].get("desc", r["error"])))
            else:
                return r.get("return")

    def wait_event(self, name, match, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name and match(e.get("data", {})):
                    return self.events.pop(i)
            self.events.append(self._line(max(0.01, deadline - time.monotonic())))

    def close(self):
        self.s.close()


class Qemu:
    """One QEMU process in host namespace h: serial console, QMP, trace log
    and stderr in files under work."""

    def __init__(self, topo, h, work, name, args, cpu, trace=False, append=KV_APPEND):
        self.name = name
        self.qmp_path = os.path.join(work, name + ".qmp")
        self.serial = os.path.join(work, name + ".serial")
        self.trace = os.path.join(work, name + ".trace")
        self.stderr_path = os.path.join(work, name + ".stderr")
        self.cmdline = [QEMU, "-name", name,
                        "-M", "microvm,x-option-roms=off,rtc=off,pic=off,pit=off",
                        "-accel", "kvm", "-cpu", cpu, "-m", str(MEM_MB),
                        "-nodefaults", "-no-user-config", "-display", "none",
                        "-global", "virtio-mmio.force-legacy=false",
                        "-kernel", GUEST, "-append", append,
                        "-serial", "file:" + self.serial,
                        "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path] + list(args)
        if trace:
            self.cmdline += ["-msg", "timestamp=on", "-D", self.trace]
            for ev in TRACE_EVENTS:
                self.cmdline += ["-trace", ev]
        self.err = open(self.stderr_path, "a")
        self.proc = subprocess.Popen(topo.cmd(h, *self.cmdline), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.err)
        self._qmp = None

    def qmp(self, execute, **args):
        if self._qmp is None:
            self._qmp = QMP(self.qmp_path, self.proc)
        return self._qmp.cmd(execute, **args)

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.serial, errors="replace") as f:
                    if "ftvm-guest: ready" in f.read():
                        return
            except FileNotFoundError:
                pass
            if self.proc.poll() is not None:
                raise Failure("%s exited (%d): %s" % (self.name, self.proc.returncode, self.errors()))
            time.sleep(0.01)
        raise Failure("%s: guest not ready after %d s: %s" % (self.name, timeout, self.errors()))

    def errors(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()[-2000:]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self):
        self.kill()
        if self._qmp:
            self._qmp.close()
            self._qmp = None
        if not self.err.closed:
            self.err.close()


def helper_qemu(work, name):
    """A QEMU without a machine (-M none), for QMP-only jobs; (proc, QMP)."""
    sock = os.path.join(work, name + ".qmp")
    p = subprocess.Popen([QEMU, "-M", "none", "-nodefaults", "-display", "none", "-qmp",
                          "unix:%s,server=on,wait=off" % sock],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        return p, QMP(sock, p)
    except Exception:
        p.kill()
        p.wait()
        raise


def make_qcow2(work, paths, size):
    """Empty qcow2 images, made by QEMU itself (blockdev-create), so that
    nothing beyond qemu-system-x86 is needed (no qemu-img)."""
    p, q = helper_qemu(work, "mkimg")
    try:
        for i, path in enumerate(paths):
            for job, opts in (("f%d" % i, {"driver": "file", "filename": path, "size": 0}),
                              ("q%d" % i, {"driver": "qcow2", "file": "n%d" % i, "size": size})):
                q.cmd("blockdev-create", **{"job-id": job, "options": opts})
                q.wait_event("JOB_STATUS_CHANGE", lambda d, job=job: d["id"] == job and d["status"] == "concluded")
                for j in q.cmd("query-jobs"):
                    if j["id"] == job and j.get("error"):
                        raise QMPError("creating %s: %s" % (path, j["error"]))
                q.cmd("job-dismiss", id=job)
                if opts["driver"] == "file":
                    q.cmd("blockdev-add", driver="file", filename=path, **{"node-name": "n%d" % i})
        q.cmd("quit")
        p.wait(10)
    finally:
        q.close()
        if p.poll() is None:
            p.kill()
            p.wait()


def probe_cpu(work):
    """(-cpu string with tsc-frequency, host TSC Hz): the first candidate
    QEMU starts with, and the TSC rate KVM gives its vCPU (QOM
    tsc-frequency: KVM_GET_TSC_KHZ, whatever the vendor)."""
    cands = [os.environ["FTVM_QEMU_CPU"]] if os.environ.get("FTVM_QEMU_CPU") else CPU_CANDIDATES
    why = []
    for cpu in cands:
        sock = os.path.join(work, "probe.qmp")
        p = subprocess.Popen([QEMU, "-M", "microvm,x-option-roms=off,rtc=off,pic=off,pit=off", "-accel", "kvm",
                              "-cpu", cpu, "-m", "16", "-nodefaults", "-display", "none", "-S",
                              "-qmp", "unix:%s,server=on,wait=off" % sock],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            q = QMP(sock, p, timeout=10)
            path = q.cmd("query-cpus-fast")[0]["qom-path"]
            hz = q.cmd("qom-get", path=path, property="tsc-frequency")
            q.cmd("quit")
            q.close()
            p.wait(10)
            if hz:
                return "%s,tsc-frequency=%d" % (cpu, hz), hz
            why.append("%s: no TSC rate" % cpu)
        except QMPError as e:
            why.append("%s: %s %s" % (cpu, e, (p.stderr.read() if p.poll() is not None else "").strip()))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    raise Failure("QEMU starts with none of the -cpu candidates: " + "; ".join(why))


def blank(path, mb=DISK_MB):
    with open(path, "wb") as f:
        f.truncate(mb << 20)
    return path


NIC = ["-device", "virtio-net-device,netdev=hn0,mac=" + GUEST_MAC]


def tap(h):
    # vnet_hdr off: the COLO proxy's filters then see plain frames (the
    # unprotected QEMU uses the same netdev, for the same baseline).
    return ["-netdev", "tap,id=hn0,ifname=tap%s,script=no,downscript=no,vhost=off,vnet_hdr=off" % h]


def start_qemu_plain(topo, work, tag, cpu, procs):
    q = Qemu(topo, "A", work, tag, tap("A") + NIC + [
        "-drive", "id=d0,file=%s,format=raw,if=none" % blank(os.path.join(work, tag + ".img")),
        "-device", "virtio-blk-device,drive=d0"], cpu)
    return started(q, procs)


def started(q, procs):
    """q, kept in procs for the cleanup, once its guest is ready."""
    procs.append(q)
    try:
        q.wait_ready()
    except BaseException:
        q.close()
        raise
    return q


def start_spinner(topo, work, tag, cpu, procs):
    """A second guest beside the measured one, with no NIC and no disk,
    writing one page in a loop: a vCPU as busy as COLO's secondary's."""
    q = Qemu(topo, "B", work, tag, [], cpu, append="workload=dirty pages=1 rate=0")
    return started(q, procs)


def set_quickack(topo, on):
    """quickack on (or off) on each host's route over the replication link."""
    for h in ("A", "B"):
        args = ["route", "replace", "10.99.0.0/24", "dev", "rep" + h, "proto", "kernel", "scope", "link",
                "src", REP_IP[h]]
        topo.ip(h, *(args + (["quickack", "1"] if on else [])))


class ColoPair:
    """A COLO primary (host A) and secondary (host B), set up as QEMU's
    docs/COLO-FT.txt does, on microvm's virtio-mmio devices."""

    def __init__(self, topo, work, tag, cpu, checkpoint_ms, qcow_template, procs, tuned=False):
        self.primary = self.secondary = None
        try:
            self._start(topo, work, tag, cpu, checkpoint_ms, qcow_template, procs, tuned)
        except BaseException:
            self.close()
            raise

    def _start(self, topo, work, tag, cpu, checkpoint_ms, qcow_template, procs, tuned):
        pri_ip, sec_ip = REP_IP["A"], REP_IP["B"]
        nd = ",nodelay=on" if tuned else ""
        d = os.path.join(work, tag)
        os.makedirs(d)
        primary_img = blank(os.path.join(d, "primary.img"))
        parent_img = blank(os.path.join(d, "secondary-parent.img"))  # the same (blank) content
        active, hidden = os.path.join(d, "secondary-active.qcow2"), os.path.join(d, "secondary-hidden.qcow2")
        shutil.copyfile(qcow_template, active)
        shutil.copyfile(qcow_template, hidden)
        self.secondary_args = tap("B") + NIC + [
            "-chardev", "socket,id=red0,host=%s,port=%d,reconnect=1%s" % (pri_ip, MIRROR_PORT, nd),
            "-chardev", "socket,id=red1,host=%s,port=%d,reconnect=1%s" % (pri_ip, COMPARE_SEC_PORT, nd),
            "-object", "filter-redirector,id=f1,netdev=hn0,queue=tx,indev=red0",
            "-object", "filter-redirector,id=f2,netdev=hn0,queue=rx,outdev=red1",
            "-object", "filter-rewriter,id=rew0,netdev=hn0,queue=all",
            "-drive", "if=none,id=parent0,file.filename=%s,driver=raw" % parent_img,
            "-drive", "if=none,id=childs0,driver=replication,mode=secondary,file.driver=qcow2,top-id=colo-disk0,"
                      "file.file.filename=%s,file.backing.driver=qcow2,file.backing.file.filename=%s,"
                      "file.backing.backing=parent0" % (active, hidden),
            "-drive", "if=none,id=colo-disk0,driver=quorum,read-pattern=fifo,vote-threshold=1,children.0=childs0",
            "-device", "virtio-blk-device,drive=colo-disk0",
            "-incoming", "tcp:%s:%d" % (sec_ip, MIGRATE_PORT)]
        self.primary_args = tap("A") + NIC + [
            "-chardev", "socket,id=mirror0,host=%s,port=%d,server=on,wait=off%s" % (pri_ip, MIRROR_PORT, nd),
            "-chardev", "socket,id=compare1,host=%s,port=%d,server=on,wait=on%s" % (pri_ip, COMPARE_SEC_PORT, nd),
            "-chardev", "socket,id=compare0,host=127.0.0.1,port=%d,server=on,wait=off%s" % (COMPARE_PRI_PORT, nd),
            "-chardev", "socket,id=compare0-0,host=127.0.0.1,port=%d%s" % (COMPARE_PRI_PORT, nd),
            "-chardev", "socket,id=compare_out,host=127.0.0.1,port=%d,server=on,wait=off%s" % (COMPARE_OUT_PORT, nd),
            "-chardev", "socket,id=compare_out0,host=127.0.0.1,port=%d%s" % (COMPARE_OUT_PORT, nd),
            "-object", "filter-mirror,id=m0,netdev=hn0,queue=tx,outdev=mirror0",
            "-object", "filter-redirector,netdev=hn0,id=redire0,queue=rx,indev=compare_out",
            "-object", "filter-redirector,netdev=hn0,id=redire1,queue=rx,outdev=compare0",
            "-object", "iothread,id=iothread1",
            "-object", "colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,"
                       "outdev=compare_out0,iothread=iothread1",
            "-drive", "if=none,id=colo-disk0,driver=quorum,read-pattern=fifo,vote-threshold=1,"
                      "children.0.file.filename=%s,children.0.driver=raw" % primary_img,
            "-device", "virtio-blk-device,drive=colo-disk0",
            "-S"]
        self.secondary = Qemu(topo, "B", d, "secondary", self.secondary_args, cpu, trace=True)
        procs.append(self.secondary)
        self.secondary.qmp("nbd-server-start", addr={"type": "inet", "data": {"host": sec_ip, "port": str(NBD_PORT)}})
        self.secondary.qmp("nbd-server-add", device="parent0", writable=True)
        # Blocks until the secondary's red1 connects (compare1 wait=on).
        self.primary = Qemu(topo, "A", d, "primary", self.primary_args, cpu, trace=True)
        procs.append(self.primary)
        p = self.primary
        self.replication_cmd = ("drive_add -n buddy driver=replication,mode=primary,file.driver=nbd,"
                                "file.host=%s,file.port=%d,file.export=parent0,node-name=replication0"
                                % (sec_ip, NBD_PORT))
        p.qmp("human-monitor-command", **{"command-line": self.replication_cmd})
        p.qmp("x-blockdev-change", parent="colo-disk0", node="replication0")
        p.qmp("migrate-set-capabilities", capabilities=[{"capability": "x-colo", "state": True}])
        p.qmp("migrate-set-parameters", **{"x-checkpoint-delay": checkpoint_ms})
        p.qmp("migrate", uri="tcp:%s:%d" % (sec_ip, MIGRATE_PORT))
        deadline = time.monotonic() + 60
        while True:
            st = p.qmp("query-migrate")
            if st.get("status") == "colo":
                break
            if st.get("status") not in ("setup", "active") or time.monotonic() > deadline:
                raise Failure("COLO did not start: %s; primary: %s; secondary: %s"
                              % (st, p.errors(), self.secondary.errors()))
            time.sleep(0.02)
        p.wait_ready()
        # The first checkpoint flushes the secondary's whole RAM cache (a
        # one-off pause of some 300 ms here, as ftvm's initial sync is): wait it out.
        deadline = time.monotonic() + checkpoint_ms / 1000.0 + 30
        while len(colo_checkpoints(parse_trace(p.trace))) < 1:
            if time.monotonic() > deadline:
                raise Failure("COLO: no checkpoint traced in %s" % p.trace)
            if p.proc.poll() is not None or self.secondary.proc.poll() is not None:
                raise Failure("COLO: a QEMU exited: primary: %s; secondary: %s"
                              % (p.errors(), self.secondary.errors()))
            time.sleep(0.05)

    FAILOVER = [("nbd-server-stop", {}), ("x-colo-lost-heartbeat", {}),
                ("object-del", {"id": "f2"}), ("object-del", {"id": "f1"})]

    def failover(self):
        """The heartbeat's part once the primary is dead (COLO-FT.txt,
        "Secondary Failover"): the secondary runs on, its output now its
        own. Returns how long each command took (ms)."""
        took = []
        for cmd, args in self.FAILOVER:
            t = time.monotonic()
            self.secondary.qmp(cmd, **args)
            took.append((time.monotonic() - t) * 1000)
        return took

    def close(self):
        for q in (self.primary, self.secondary):
            if q:
                q.close()


TRACE_RE = re.compile(r"^\d+@(\d+\.\d+):(\w+) ?(.*)$")


def parse_trace(path):
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = TRACE_RE.match(line.strip())
                if m:
                    out.append((float(m.group(1)), m.group(2), m.group(3)))
    except FileNotFoundError:
        pass
    return out


# A COLO checkpoint's pause, in the primary's trace: checkpoint-reply ->
# 'run' => 'stop' (vm_stop: drain, flush) -> vmstate-received (device
# state and dirty RAM saved and sent) -> vmstate-loaded (the secondary
# flushed its RAM cache, loaded the state, did its block replication
# checkpoint, restarted) -> 'stop' => 'run' (vm_start).
COLO_PHASES = ("vm_stop", "save_send", "secondary_load", "vm_start")


def colo_checkpoints(events, t0=0.0, t1=float("inf")):
    """The primary's checkpoints whose request lies in [t0, t1]: dicts of
    t (request, wall clock s), pause_us (checkpoint-reply -> 'stop' =>
    'run'), stop_us (checkpoint-reply -> 'run' => 'stop': vm_stop itself),
    phases_us (COLO_PHASES), mismatch (colo-compare saw a difference
    since the last checkpoint)."""
    cks, cur, last_end, dirty = [], None, 0.0, []
    for t, name, args in events:
        if name in ("colo_compare_udp_miscompare", "colo_compare_icmp_miscompare", "colo_old_packet_check_found"):
            dirty.append(t)
        elif name == "colo_send_message" and "'checkpoint-request'" in args:
            late = [x for x in dirty if x >= last_end]
            cur = {"t": t, "mismatch": bool(late),
                   "mismatch_ms_after_last": (late[0] - last_end) * 1000 if late and last_end else None}
            dirty = []
        elif cur and name == "colo_receive_message" and "'checkpoint-reply'" in args:
            cur["t_reply"] = t
        elif cur and name == "colo_vm_state_change" and "'run' => 'stop'" in args:
            cur["t_stop"] = t
        elif cur and name == "colo_receive_message" and "'vmstate-received'" in args:
            cur["t_received"] = t
        elif cur and name == "colo_receive_message" and "'vmstate-loaded'" in args:
            cur["t_loaded"] = t
        elif cur and "t_reply" in cur and name == "colo_vm_state_change" and "'stop' => 'run'" in args:
            cur["pause_us"] = (t - cur["t_reply"]) * 1e6
            marks = [cur["t_reply"]] + [cur.get(k) for k in ("t_stop", "t_received", "t_loaded")] + [t]
            if None not in marks:
                cur["phases_us"] = {ph: (b - a) * 1e6 for ph, a, b in zip(COLO_PHASES, marks, marks[1:])}
            last_end = t
            if t0 <= cur["t"] <= t1:
                cks.append({k: cur.get(k) for k in ("t", "pause_us", "phases_us", "mismatch",
                                                    "mismatch_ms_after_last")})
            cur = None
    return cks


def secondary_pages(events, t0, t1):
    out = []
    for t, name, args in events:
        if name == "colo_flush_ram_cache_begin" and t0 <= t <= t1:
            m = re.search(r"dirty_pages (\d+)", args)
            if m:
                out.append(int(m.group(1)))
    return out


def load(client, seconds):
    """A warm-up, then the measured run: (kv_run's figures, t0, t1) with
    wall-clock bounds (the clock of QEMU's trace timestamps)."""
    kv_run(client, 0.3)
    t0 = time.time()
    s = kv_run(client, seconds)
    return s, t0, time.time()


def slim(s):
    keys = ("throughput_ops_s", "latency_p50_us", "latency_p99_us", "latency_p999_us", "latency_max_us",
            "ops", "retries", "timeouts", "stale_reads", "wrong_answers", "gave_up", "latency_cdf_us")
    return {k: s[k] for k in keys if k in s}


def run_qemu_plain(topo, work, client, cpu, seconds, procs, tag, spinner=False):
    q = start_qemu_plain(topo, work, tag, cpu, procs)
    spin = start_spinner(topo, work, tag + "-spinner", cpu, procs) if spinner else None
    try:
        s, _, _ = load(client, seconds)
    finally:
        q.close()
        if spin:
            spin.close()
    return {"load": slim(s), "cmdline": q.cmdline}


def run_colo(topo, work, client, cpu, seconds, checkpoint_ms, qcow, procs, tag, tuned):
    if tuned:
        set_quickack(topo, True)
    pair = None
    try:
        pair = ColoPair(topo, work, tag, cpu, checkpoint_ms, qcow, procs, tuned)
        s, t0, t1 = load(client, seconds)
        st = pair.primary.qmp("query-colo-status")
        if st.get("mode") != "primary":
            raise Failure("the primary left COLO during the load: %s" % st)
        cks = colo_checkpoints(parse_trace(pair.primary.trace), t0, t1)
        pages = secondary_pages(parse_trace(pair.secondary.trace), t0, t1)
        pauses = [c["pause_us"] for c in cks]
        return {"load": slim(s), "window_s": t1 - t0, "checkpoints": len(cks),
                "checkpoints_per_s": len(cks) / (t1 - t0),
                "on_mismatch": sum(1 for c in cks if c["mismatch"]),
                "pause_us": {"p50": pct(pauses, 50), "p99": pct(pauses, 99), "max": max(pauses)} if pauses else None,
                "pauses_us": pauses, "phases_us": [c["phases_us"] for c in cks if c["phases_us"]],
                "mismatch_ms_after_last_checkpoint": [c["mismatch_ms_after_last"] for c in cks if c["mismatch"]],
                "pages_per_ckpt": pages,
                "primary_cmdline": pair.primary.cmdline, "secondary_cmdline": pair.secondary.cmdline,
                "primary_qmp": ["human-monitor-command %s" % pair.replication_cmd,
                                "x-blockdev-change parent=colo-disk0 node=replication0",
                                "migrate-set-capabilities x-colo=on",
                                "migrate-set-parameters x-checkpoint-delay=%d" % checkpoint_ms,
                                "migrate uri=tcp:%s:%d" % (REP_IP["B"], MIGRATE_PORT)],
                "secondary_qmp": ["nbd-server-start %s:%d" % (REP_IP["B"], NBD_PORT),
                                  "nbd-server-add device=parent0 writable=true"]}
    finally:
        if pair:
            pair.close()
        if tuned:
            set_quickack(topo, False)


def start_pair_replicated(topo, work, tag):
    """As bench_ft.start_pair with the event policy, but each host with
    its own image (mode=replicated: the secondary writes the primary's
    held writes to its image at each commit), as COLO's block replication
    keeps a copy of the disk on each host."""
    img = {h: make_image(os.path.join(work, "%s-%s.img" % (tag, h)), DISK_MB) for h in ("A", "B")}
    a = Node(topo, "A", work, tag, img["A"], "replicated", False, policy="event")
    b = None
    try:
        wait_ready(a)
        b = Node(topo, "B", work, tag, img["B"], "replicated", True)
        a.protect_to("B")
    except BaseException:
        for n in (a, b):
            if n:
                n.close()
        raise
    return a, b


def run_ftvm(topo, work, client, seconds, policy, tag, replicated=False):
    a, b = start_pair_replicated(topo, work, tag) if replicated else start_pair(topo, work, tag, policy, None)
    try:
        e0 = ckpt_figures(a)["epochs"] if b else 0
        s, t0, t1 = load(client, seconds)
        f = ckpt_figures(a) if b else {}
    finally:
        for n in (a, b):
            if n:
                n.close()
    out = {"load": slim(s)}
    if f:
        out.update(window_s=t1 - t0, checkpoints=f["epochs"] - e0, checkpoints_per_s=(f["epochs"] - e0) / (t1 - t0),
                   pause_us=f["pause_us"], pages_per_ckpt=f["pages_per_ckpt"],
                   output_latency_us=f["output_latency_us"])
    return out


def stop_client(client):
    """A background load that an error left running would go on sending."""
    if client.load and client.load.poll() is None:
        client.load.kill()
        client.load.wait(10)


def failover_ftvm(topo, work, client, kills, log):
    times, lost = [], []
    for i in range(kills):
        took, gone = one_failover(topo, work, client, "ftvm-fo%d" % i, None)
        times.append(took)
        lost.append(gone)
        log("  ftvm kill %d: first answer after %.0f ms, %d acknowledged writes lost"
            % (i + 1, times[-1] * 1000, lost[-1]))
    return {"failover_ms": [t * 1000 for t in times], "lost": lost}


def failover_colo(topo, work, client, cpu, checkpoint_ms, qcow, kills, procs, log):
    times, cmds, lost, each = [], [], [], []
    for i in range(kills):
        pair = ColoPair(topo, work, "colo-fo%d" % i, cpu, checkpoint_ms, qcow, procs)
        try:
            client.acks = os.path.join(work, "colo-fo%d.acks" % i)
            client.start_load(seconds=3600, keys=100)
            time.sleep(0.7)
            t = time.monotonic()
            pair.primary.kill()
            each.append(pair.failover())
            cmds.append(time.monotonic() - t)
            times.append(client.probe_until_answer(t))
            client.stop_load()
            lost.append(client.verify()["lost"])
            st = pair.secondary.qmp("query-colo-status")
        finally:
            stop_client(client)
            pair.close()
        log("  COLO kill %d: failover commands done after %.0f ms, first answer after %.0f ms, "
            "%d acknowledged writes lost (secondary: %s)" % (i + 1, cmds[-1] * 1000, times[-1] * 1000, lost[-1], st))
    return {"failover_ms": [t * 1000 for t in times], "commands_ms": [t * 1000 for t in cmds],
            "each_command_ms": {c + (" " + a["id"] if a else ""): [e[i] for e in each]
                                for i, (c, a) in enumerate(ColoPair.FAILOVER)}, "lost": lost}


def kill_namespace_pids(topo):
    """Every process still in this run's namespaces (all of them ours)."""
    for n in topo.made:
        r = subprocess.run(["ip", "netns", "pids", n], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


# What a run that fails is reported with (n/a), the others going on.
ERRS = (Failure, OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError)


def na(why):
    return "n/a (%s)" % why


def summarise(rs):
    """One system's rounds: medians of the client's figures; COLO's
    pauses pooled over the rounds (a few checkpoints each), ftvm's the
    median of each round's `info migrate` percentiles; checkpoints/s over
    all the rounds' load windows."""
    out = {"rounds": len(rs), "load": {k: statistics.median(r["load"][k] for r in rs)
                                       for k in ("throughput_ops_s", "latency_p50_us", "latency_p99_us",
                                                 "latency_p999_us", "latency_max_us")}}
    if "checkpoints" not in rs[0]:
        return out
    n = sum(r["checkpoints"] for r in rs)
    out.update(checkpoints=n, checkpoints_per_s=n / sum(r["window_s"] for r in rs))
    if "pauses_us" in rs[0]:
        pool = [x for r in rs for x in r["pauses_us"]]
        pages = [x for r in rs for x in r["pages_per_ckpt"]]
        phases = [x for r in rs for x in r["phases_us"]]
        out["phases_us_p50"] = {ph: pct([x[ph] for x in phases], 50) for ph in COLO_PHASES} if phases else None
        out.update(pause_us={"p50": pct(pool, 50), "p99": pct(pool, 99), "max": max(pool)} if pool else None,
                   on_mismatch=sum(r["on_mismatch"] for r in rs), pages_per_ckpt_p50=pct(pages, 50) if pages else None)
    else:
        out.update(pause_us={q: statistics.median(r["pause_us"][q] for r in rs) for q in ("p50", "p99", "max")},
                   pages_per_ckpt_p50=statistics.median(r["pages_per_ckpt"]["p50"] for r in rs))
    return out


def first_line(e):
    t = str(e).strip()
    return t.splitlines()[0][:300] if t else repr(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="kv load run length per system (default 3)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds of every system's load run, one system after the other in each round; "
                         "the table gives medians over the rounds (default 5)")
    ap.add_argument("--kills", type=int, default=3, help="failovers per system (default 3)")
    ap.add_argument("--colo-checkpoint-ms", type=int, default=1000,
                    help="COLO's periodic checkpoint, x-checkpoint-delay (default 1000; QEMU's own: 20000)")
    ap.add_argument("--json", help="write every figure to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, traces, images)")
    ap.add_argument("--plot", default="ftvm-bench-colo-latency.png",
                    help="PNG of the latency CDFs, each system's median round (default ./ftvm-bench-colo-latency.png)")
    a = ap.parse_args()
    require_kvm()
    if not shutil.which(QEMU):
        print("SKIP: needs %s (Debian's qemu-system-x86)" % QEMU)
        return 77

    def on_signal(sig, frame):
        raise SystemExit(128 + sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    work = tempfile.mkdtemp(prefix="ftvm-bench-colo-")
    out = {"seconds": a.seconds, "rounds": a.rounds, "kills": a.kills, "colo_checkpoint_ms": a.colo_checkpoint_ms,
           "workload": KV_APPEND, "client": "ftvm-kv load, 1 closed-loop client, 50% PUT, 500 keys",
           "latency_cdf": na("no run")}
    errors = {}
    ok = False
    procs = []

    def log(msg):
        print(msg, flush=True)

    try:
        qver = sh(QEMU, "--version").stdout.splitlines()[0]
        cpu, tsc_hz = probe_cpu(work)
        out.update(qemu=qver, cpu=cpu, tsc_hz=tsc_hz)
        qcow = os.path.join(work, "empty.qcow2")
        make_qcow2(work, [qcow], DISK_MB << 20)
        log("%s; -cpu %s; guest %d MiB, disk %d MiB; kv: 1 closed-loop client, 50%% PUT, %.0f s per run, "
            "%d rounds" % (qver, cpu, MEM_MB, DISK_MB, a.seconds, a.rounds))
        log("COLO: block replication (quorum + replication + NBD), colo-compare; a checkpoint every %d ms "
            "(x-checkpoint-delay) and on every output mismatch" % a.colo_checkpoint_ms)
        with Topology() as topo:
            try:
                client = Client(topo, work)
                runs = out["runs"] = {}
                fmt = "%-40s %7s %16s %18s %8s %9s"
                log(fmt % ("run", "ops/s", "lat p50/p99 us", "pause p50/p99 us", "ckpt/s", "mismatch"))

                def show(label, r):
                    s = r["load"]
                    p = r.get("pause_us")
                    log(fmt % (label, "%.0f" % s["throughput_ops_s"],
                               "%d/%d" % (s["latency_p50_us"], s["latency_p99_us"]),
                               "%d/%d" % (p["p50"], p["p99"]) if p else "-",
                               "%.1f" % r["checkpoints_per_s"] if "checkpoints_per_s" in r else "-",
                               "%d/%d" % (r["on_mismatch"], r["checkpoints"]) if "on_mismatch" in r else "-"))

                steps = [("qemu-unprotected", "QEMU unprotected",
                          lambda tag: run_qemu_plain(topo, work, client, cpu, a.seconds, procs, tag)),
                         ("colo-stock", "QEMU COLO",
                          lambda tag: run_colo(topo, work, client, cpu, a.seconds, a.colo_checkpoint_ms, qcow, procs,
                                               tag, False)),
                         ("colo-tuned", "QEMU COLO tuned (nodelay, quickack)",
                          lambda tag: run_colo(topo, work, client, cpu, a.seconds, a.colo_checkpoint_ms, qcow, procs,
                                               tag, True)),
                         ("qemu-unprotected-spinner", "QEMU unprotected + 2nd guest spinning",
                          lambda tag: run_qemu_plain(topo, work, client, cpu, a.seconds, procs, tag, spinner=True)),
                         ("ftvm-unprotected", "ftvm unprotected",
                          lambda tag: run_ftvm(topo, work, client, a.seconds, "unprotected", tag)),
                         ("ftvm-event", "ftvm event",
                          lambda tag: run_ftvm(topo, work, client, a.seconds, "event", tag)),
                         ("ftvm-event-replicated", "ftvm event, replicated disk",
                          lambda tag: run_ftvm(topo, work, client, a.seconds, "event", tag, replicated=True))]
                for rnd in range(a.rounds):
                    for key, label, fn in steps:
                        try:
                            r = fn("%s-r%d" % (key, rnd + 1))
                            r["round"] = rnd + 1
                            runs.setdefault(key, []).append(r)
                            show("%s, round %d" % (label, rnd + 1), r)
                        except ERRS as e:
                            errors["%s round %d" % (key, rnd + 1)] = first_line(e)
                            log("%-40s %s" % ("%s, round %d" % (label, rnd + 1), na(first_line(e))))
                out["summary"] = {k: summarise(v) for k, v in runs.items()}
                # Each system's round of median p50: its whole distribution.
                cdfs = {}
                for key, label, _ in steps:
                    rs = sorted(runs.get(key, []), key=lambda r: r["load"]["latency_p50_us"])
                    if rs:
                        cdfs[label] = cdf_of(rs[len(rs) // 2]["load"])
                out["latency_cdf"] = cdf_png(os.path.abspath(a.plot), "kv, 1 closed-loop client, 50% PUT: "
                                             "request latency, ftvm against QEMU COLO", cdfs)
                log("failover: SIGKILL of the primary -> first answer from the secondary, kv load running, "
                    "%d kills each" % a.kills)
                fo = out["failover"] = {}
                for key, fn in (("ftvm-event", lambda: failover_ftvm(topo, work, client, a.kills, log)),
                                ("colo-stock", lambda: failover_colo(topo, work, client, cpu, a.colo_checkpoint_ms,
                                                                     qcow, a.kills, procs, log))):
                    try:
                        fo[key] = fn()
                    except ERRS as e:
                        errors["failover " + key] = first_line(e)
                        log("  %s failover: %s" % (key, na(first_line(e))))
            finally:
                for q in procs:
                    q.close()
                kill_namespace_pids(topo)
        out["errors"] = errors
        print_table(out, errors)
        ok = True
    finally:
        for q in procs:
            q.close()
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=2)
        if a.keep or not ok:
            print("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if not errors else 1


def paired(runs, key, base_key):
    """Each round's protected run against the same round's unprotected run
    (neighbours in time, so the machine's noise hits both alike): medians
    over the rounds of the throughput ratio and of the added latency
    p50/p99; None without a round that has both."""
    base = {b["round"]: b["load"] for b in runs.get(base_key, [])}
    pairs = [(r["load"], base[r["round"]]) for r in runs.get(key, []) if r["round"] in base]
    if not pairs:
        return None
    return {"rounds": len(pairs),
            "throughput_ratio": statistics.median(s["throughput_ops_s"] / b["throughput_ops_s"] for s, b in pairs),
            "added_p50_us": statistics.median(s["latency_p50_us"] - b["latency_p50_us"] for s, b in pairs),
            "added_p99_us": statistics.median(s["latency_p99_us"] - b["latency_p99_us"] for s, b in pairs)}


def error_for(errors, key):
    for k, v in errors.items():
        if k.startswith(key + " "):
            return v
    return "not run"


def print_table(out, errors):
    summ, fo, runs = out.get("summary", {}), out.get("failover", {}), out.get("runs", {})
    cmp = out["compared"] = {}
    print()
    print("ftvm vs QEMU 7.2 COLO: kv workload, 1 closed-loop client, 50%% PUT, %d rounds of %.0f s: throughput "
          "and added latency against the same VMM's unprotected run of the same round, medians over the rounds"
          % (out["rounds"], out["seconds"]))
    fmt = "%-16s %7s %17s %19s %8s %20s"
    print(fmt % ("system", "tput", "added p50/p99", "pause p50/p99", "ckpt/s", "failover p50/max"))
    rows = [("ftvm event", "ftvm-event", "ftvm-unprotected", "ftvm-event"),
            ("ftvm event repl", "ftvm-event-replicated", "ftvm-unprotected", None),
            ("QEMU COLO", "colo-stock", "qemu-unprotected", "colo-stock"),
            ("QEMU COLO tuned", "colo-tuned", "qemu-unprotected", None)]
    for label, key, base_key, fo_key in rows:
        r, c = summ.get(key), paired(runs, key, base_key)
        if c:
            cmp[key] = c
            tput = "%.2fx" % c["throughput_ratio"]
            added = "%d/%d us" % (c["added_p50_us"], c["added_p99_us"])
        else:
            tput = added = na(error_for(errors, key if not r else base_key)[:50])
        if r and r.get("pause_us"):
            pause = "%d/%d us" % (r["pause_us"]["p50"], r["pause_us"]["p99"])
            cps = "%.1f" % r["checkpoints_per_s"]
        elif r:
            pause, cps = na("no checkpoint during the loads"), "%.1f" % r.get("checkpoints_per_s", 0)
        else:
            pause = cps = "n/a"
        if fo_key is None:
            fov = "-"
        elif fo.get(fo_key) and fo[fo_key]["failover_ms"]:
            t = fo[fo_key]["failover_ms"]
            fov = "%.0f/%.0f ms (%d)" % (pct(t, 50), max(t), len(t))
        else:
            fov = na(errors.get("failover " + fo_key, "not run")[:50])
        print(fmt % (label, tput, added, pause, cps, fov))
    c = summ.get("colo-stock")
    if c and "checkpoints" in c:
        print("QEMU COLO: %d of its %d checkpoints on an output mismatch, the others periodic (every %d ms); "
              "secondary's dirty pages per checkpoint p50 %s. Tuned: chardev nodelay=on, quickack on the link. "
              "ftvm event: shared image; repl: an image per host (as COLO). Failover: stock COLO, shared ftvm."
              % (c["on_mismatch"], c["checkpoints"], out["colo_checkpoint_ms"], c["pages_per_ckpt_p50"]))
    for key, label in (("colo-stock", "QEMU COLO"), ("colo-tuned", "QEMU COLO tuned")):
        ph = (summ.get(key) or {}).get("phases_us_p50")
        if ph:
            print("%s pause, p50 of each part: %s" % (label, ", ".join("%s %.1f ms" % (k, ph[k] / 1000.0)
                                                                     for k in COLO_PHASES)))
    if fo.get("colo-stock"):
        e = fo["colo-stock"]["each_command_ms"]
        print("QEMU COLO failover commands, p50 ms: " + ", ".join("%s %.1f" % (k, pct(v, 50))
                                                                for k, v in e.items()))
    c = paired(runs, "qemu-unprotected-spinner", "qemu-unprotected")
    if c:
        cmp["qemu-unprotected-spinner"] = c
        print("QEMU unprotected with a 2nd guest spinning beside it (the CPU COLO's running secondary takes, "
              "2 cores): %.2fx, %+d/%+d us" % (c["throughput_ratio"], c["added_p50_us"], c["added_p99_us"]))
    print("unprotected medians: QEMU %.0f ops/s %d/%d us, ftvm %.0f ops/s %d/%d us (p50/p99)" % tuple(
        summ[k]["load"][f] if k in summ else float("nan") for k in ("qemu-unprotected", "ftvm-unprotected")
        for f in ("throughput_ops_s", "latency_p50_us", "latency_p99_us")))
    lost = {k: sum(v["lost"]) for k, v in fo.items()}
    if lost:
        print("acknowledged writes lost over the failovers (ftvm-kv verify): " +
              ", ".join("%s %d" % (k, v) for k, v in sorted(lost.items())))
    print(out["latency_cdf"])


if __name__ == "__main__":
    sys.exit(main())
