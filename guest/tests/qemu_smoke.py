#!/usr/bin/env python3
"""Boots ftvm-guest.elf under QEMU (microvm + KVM) and checks its workloads.

Independent of ftvm's own VMM: this pins down the guest's side of
docs/guest-abi.md and docs/kv-protocol.md. Needs qemu-system-x86_64 and
/dev/kvm; exits 77 (CTest SKIP_RETURN_CODE) without them.

First a probe picks the -cpu string (CPU_CANDIDATES, first that boots the
guest with the TSC rate in CPUID leaf 0x40000010); no candidate: exit 1.
A QEMU that ends while a test waits on it fails that test at once, with
QEMU's status and output.

usage: qemu_smoke.py path/to/ftvm-guest.elf [test ...]
tests: kv persist full dirty dirtytest errors (default: all)
environment (for tests): FTVM_QEMU_EXTRA_ARGS (appended to every QEMU
command line, shlex-split), FTVM_QEMU_CPU (use this -cpu, no probe)
"""
import json
import os
import select
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ELF = None
TMP = None
FAILS = []
CPU = None
EXTRA_ARGS = shlex.split(os.environ.get("FTVM_QEMU_EXTRA_ARGS", ""))

# -arch-capabilities first: on AMD hosts (PVM) KVM reports
# IA32_ARCH_CAPABILITIES to -cpu host/max but refuses the MSR, and QEMU 7.2
# aborts ("failed to set MSR 0x10a"). vmware-cpuid-freq gives leaf
# 0x40000010 only with +invtsc. qemu64 passes nothing host-only through.
CPU_CANDIDATES = [
    "host,-arch-capabilities,vmware-cpuid-freq=on,+invtsc",
    "host,vmware-cpuid-freq=on,+invtsc",
    "qemu64,+invtsc,vmware-cpuid-freq=on",
]


class Broken(Exception):
    """A test cannot go on (its message says why)."""


class QemuExited(Broken):
    """QEMU ended while a test was waiting on it."""


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def indent(lines):
    return "\n".join("     | " + l for l in lines) or "     | (no output)"


class VM:
    """One QEMU run; serial console (and QEMU's stderr) on stdout."""

    def __init__(self, append, mem="256", disk=None, net_port=None, qmp=False,
                 exit_dev=True, cpu=None):
        self.port = net_port
        self.qmp_path = os.path.join(TMP, "qmp.sock") if qmp else None
        cmd = ["qemu-system-x86_64",
               "-M", "microvm,x-option-roms=off,rtc=off,pic=off,pit=off",
               "-accel", "kvm", "-cpu", cpu or CPU,
               "-m", mem, "-nodefaults", "-no-user-config", "-nographic",
               "-serial", "stdio",
               # QEMU's virtio-mmio is legacy (version 1) unless told otherwise.
               "-global", "virtio-mmio.force-legacy=false",
               "-kernel", ELF, "-append", append]
        if exit_dev:
            cmd += ["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
        if disk:
            cmd += ["-drive", f"id=d0,file={disk},format=raw,if=none",
                    "-device", "virtio-blk-device,drive=d0"]
        if net_port:
            cmd += ["-netdev",
                    f"user,id=n0,hostfwd=udp:127.0.0.1:{net_port}-10.0.2.15:{net_port}",
                    "-device", "virtio-net-device,netdev=n0"]
        if self.qmp_path:
            if os.path.exists(self.qmp_path):
                os.unlink(self.qmp_path)
            cmd += ["-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        cmd += EXTRA_ARGS
        self.t0 = time.time()
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.lines = []
        self.seen = 0
        self.eof = False
        self.cv = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def _read(self):
        for raw in self.p.stdout:
            with self.cv:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.eof = True
            self.cv.notify_all()

    def died(self, what, grace=0.0):
        """Raises QemuExited if QEMU has ended (within grace seconds)."""
        try:
            rc = self.p.wait(grace) if grace else self.p.poll()
        except subprocess.TimeoutExpired:
            rc = None
        if rc is None:
            return
        self.reader.join(5)
        raise QemuExited(f"QEMU exited with status {rc} while {what} "
                         f"(after {time.time() - self.t0:.3f} s):\n{indent(self.lines)}")

    def wait_line(self, prefix, timeout=60):
        deadline = time.time() + timeout
        with self.cv:
            while True:
                while self.seen < len(self.lines):
                    line = self.lines[self.seen]
                    self.seen += 1
                    if line.startswith(prefix):
                        return line
                if self.eof:
                    break
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.cv.wait(left)
        # The console closed: QEMU is gone (or going).
        self.died(f"waiting for {prefix!r}", grace=5)
        raise Broken(f"QEMU closed its console while running, waiting for {prefix!r}")

    def ready(self):
        line = self.wait_line("ftvm-guest: ready")
        if line:
            print(f"     {line}  (wall {time.time() - self.t0:.3f} s)")
        else:
            print(indent(self.lines))
        return line

    def q(self, msg, timeout=3.0):
        what = f"waiting for the answer to {str(msg)[:40]!r}"
        self.died(what)
        self.sock.sendto(msg if isinstance(msg, bytes) else msg.encode(),
                         ("127.0.0.1", self.port))
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                return None
            if select.select([self.sock], [], [], min(left, 0.1))[0]:
                return self.sock.recv(4096).decode()
            self.died(what)

    def qmp(self, *cmds, timeout=10):
        deadline = time.time() + timeout
        s = socket.socket(socket.AF_UNIX)
        while True:
            self.died("connecting to QMP")
            try:
                s.connect(self.qmp_path)
                break
            except OSError:
                if time.time() > deadline:
                    raise Broken(f"no QMP socket after {timeout} s")
                time.sleep(0.05)
        buf = b""

        def line():
            nonlocal buf
            while b"\n" not in buf:
                left = deadline - time.time()
                if left <= 0:
                    raise Broken(f"no QMP answer after {timeout} s")
                if select.select([s], [], [], min(left, 0.1))[0]:
                    try:
                        chunk = s.recv(65536)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        closed()
                    buf += chunk
                else:
                    self.died("waiting for a QMP answer")
            one, buf = buf.split(b"\n", 1)
            return json.loads(one)

        def closed():
            self.died("talking to QMP", grace=5)
            raise Broken("QEMU closed the QMP connection")

        try:
            line()
            out = []
            for c in ({"execute": "qmp_capabilities"},) + cmds:
                try:
                    s.sendall((json.dumps(c) + "\n").encode())
                except OSError:
                    closed()
                while True:
                    r = line()
                    if "return" in r or "error" in r:
                        out.append(r)
                        break
        finally:
            s.close()
        return out[1:]

    def finish(self, timeout=30):
        """QEMU's exit status once it ends by itself (None: stopped after timeout)."""
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None
        self.reader.join(5)
        return rc

    def exit_code(self, timeout=30):
        """Like finish(), but a QEMU that never booted the guest is an error."""
        rc = self.finish(timeout)
        if rc is not None and not any(l.startswith("ftvm-guest: boot") for l in self.lines):
            raise QemuExited(f"QEMU exited with status {rc} before the guest booted:\n"
                             f"{indent(self.lines)}")
        return rc

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.reader.join(5)
        self.sock.close()


def blank_disk(name, size):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


PROTOCOL_CASES = [
    ("PUT 1 a b", "OK 1"),
    ("GET 2 a", "VAL 2 b"),
    ("GET 3 zz", "NONE 3"),
    ("PUT 4 a c\n", "OK 4"),
    ("GET 5 a\n", "VAL 5 c"),
    ("", "ERR - bad_command"),
    ("FOO 1", "ERR 1 bad_command"),
    ("put 1 a b", "ERR 1 bad_command"),
    ("PUT", "ERR - bad_arity"),
    ("PUT 1", "ERR 1 bad_arity"),
    ("PUT 1 a", "ERR 1 bad_arity"),
    ("PUT 1 a b c", "ERR 1 bad_arity"),
    ("PUT ! a b", "ERR - bad_reqid"),
    ("PUT " + "r" * 33 + " a b", "ERR - bad_reqid"),
    ("PUT " + "r" * 32 + " a b", "OK " + "r" * 32),
    ("PUT 1 a! b", "ERR 1 bad_key"),
    ("PUT 1 " + "k" * 65 + " b", "ERR 1 bad_key"),
    ("PUT 1 " + "k" * 64 + " " + "v" * 64, "OK 1"),
    ("GET 1 " + "k" * 64, "VAL 1 " + "v" * 64),
    ("PUT 1 a b!", "ERR 1 bad_value"),
    ("PUT 1 a " + "v" * 65, "ERR 1 bad_value"),
    ("PUT 1  b", "ERR 1 bad_key"),
    ("GET 1 a b", "ERR 1 bad_arity"),
    ("TIME", "ERR - bad_arity"),
    ("TIME 9 x", "ERR 9 bad_arity"),
    ("PUT 7 " + "x" * 200, "ERR 7 too_long"),
    ("X" * 1400, "ERR - too_long"),
    ("PUT 1 a b\n\n", "ERR 1 bad_value"),
    (b"PUT 1 a \xffb", "ERR 1 bad_value"),
    ("PUT a.b-c_D a.b-c_D A.z-9_", "OK a.b-c_D"),
    ("GET x a.b-c_D", "VAL x A.z-9_"),
]


def test_kv():
    port = free_udp_port()
    vm = VM(f"workload=kv ip=10.0.2.15/24 port={port}",
            disk=blank_disk("kv.img", 64 << 20), net_port=port)
    try:
        r = vm.ready()
        check(r is not None and "entries=0" in r and f"port={port}" in r, "kv boots empty")
        for msg, want in PROTOCOL_CASES:
            got = vm.q(msg)
            check(got == want, f"{str(msg)[:40]!r} -> {got!r}")
        t = (vm.q("TIME t1") or "").split()
        check(len(t) == 4 and t[:2] == ["TIME", "t1"] and int(t[2]) > 0 and int(t[3]) > 0,
              f"TIME {t}")
        st = vm.q("STAT s1") or ""
        check(st.startswith("STAT s1 entries=3 puts=5 gets=5 dirtied=0 tsc="), st)
    finally:
        vm.stop()


def test_persist():
    port = free_udp_port()
    disk = blank_disk("persist.img", 64 << 20)
    n = 300
    vm = VM(f"workload=kv ip=10.0.2.15/24 port={port}", disk=disk, net_port=port)
    try:
        vm.ready()
        ok = all(vm.q(f"PUT p{i} key{i} val{i}") == f"OK p{i}" for i in range(n))
        ok = ok and all(vm.q(f"PUT o{i} key{i} new{i}") == f"OK o{i}" for i in range(0, n, 10))
        check(ok, f"{n} PUTs acknowledged")
    finally:
        vm.stop()
    vm = VM(f"workload=kv ip=10.0.2.15/24 port={port}", disk=disk, net_port=port)
    try:
        r = vm.ready() or ""
        check(f"entries={n} " in r and f"records={n + n // 10} " in r, "replay counts")
        bad = sum(vm.q(f"GET g{i} key{i}") !=
                  f"VAL g{i} " + (f"new{i}" if i % 10 == 0 else f"val{i}") for i in range(n))
        check(bad == 0, f"all values survive a restart ({bad} wrong)")
        check(vm.q("PUT z newkey newval") == "OK z", "PUT after replay")
    finally:
        vm.stop()
    vm = VM(f"workload=kv ip=10.0.2.15/24 port={port}", disk=disk, net_port=port)
    try:
        r = vm.ready() or ""
        check(f"entries={n + 1} " in r and vm.q("GET y newkey") == "VAL y newval",
              "the record appended after a replay is replayed too")
    finally:
        vm.stop()


def test_full():
    port = free_udp_port()
    vm = VM(f"workload=kv ip=10.0.2.15/24 port={port}", disk=blank_disk("small.img", 4096),
            net_port=port)
    try:
        vm.ready()
        # Sectors 1..7 for the log, one PUT (one batch) a sector, and
        # the last sector kept for a FLUSHALL (docs/kv-protocol.md).
        answers = [vm.q(f"PUT p{i} k{i} v{i}") for i in range(8)]
        check(answers[:6] == [f"OK p{i}" for i in range(6)] and
              answers[6:] == ["ERR p6 disk_full", "ERR p7 disk_full"],
              f"a 4 KiB disk holds 6 PUTs, its last sector kept for a FLUSHALL: {answers[5:]}")
    finally:
        vm.stop()


def test_dirty():
    port = free_udp_port()
    vm = VM(f"workload=dirty pages=1000 rate=1000 ip=10.0.2.15/24 port={port}", net_port=port)
    try:
        check(vm.ready() is not None, "dirty ready")
        a = vm.q("STAT 1")
        time.sleep(1.5)
        b = vm.q("STAT 2")

        def field(s, k):
            return int(s.split(k + "=")[1].split()[0])
        rate = (field(b, "dirtied") - field(a, "dirtied")) / \
               ((field(b, "ns") - field(a, "ns")) / 1e9)
        check(900 < rate < 1100, f"dirty rate {rate:.0f} pages/s (want 1000)")
        check(vm.q("GET 3 a") == "ERR 3 bad_command", "dirty has no store")
    finally:
        vm.stop()
    vm = VM("workload=dirty pages=64 rate=0")
    try:
        check(vm.ready() is not None, "dirty without ip= runs")
    finally:
        vm.stop()


def test_dirtytest():
    seed, k, r, n = 12345, 300, 2000, 7
    # No exit device: the guest idles after its last round, so QEMU can
    # still dump the region for an independent check of the pattern.
    vm = VM(f"workload=dirtytest seed={seed} pages={k} region={r} rounds={n}",
            qmp=True, exit_dev=False)
    try:
        check(vm.wait_line("ftvm-guest: dirtytest done") is not None, "dirtytest finishes")
        dump = os.path.join(TMP, "region.bin")
        vm.qmp({"execute": "pmemsave",
                "arguments": {"val": 0x04000000, "size": r * 4096, "filename": dump}})
        data = open(dump, "rb").read()
    finally:
        vm.stop()
    mask = (1 << 64) - 1
    want = {}
    for rnd in range(1, n + 1):
        x = (seed + rnd) & mask
        for _ in range(k):
            x = (x * 6364136223846793005 + 1442695040888963407) & mask
            i = (x >> 33) % r
            want[i] = (rnd << 32) | i
    bad = sum(struct.unpack_from("<Q", data, i * 4096)[0] != want.get(i, 0) for i in range(r))
    check(bad == 0, f"dirtytest region matches the reference ({bad} pages differ)")
    vm = VM("workload=dirtytest seed=1 pages=10 region=100 rounds=3")
    rc = vm.exit_code()
    check(rc == 1, f"dirtytest exits with 0 (QEMU status {rc} = (0 << 1) | 1)")


def test_errors():
    for append in ["workload=nope", "", "workload=kv", "workload=kv ip=1.2.3",
                   "workload=dirtytest bogus=1", "workload=dirtytest region=1000000",
                   "workload=dirty rate=x"]:
        vm = VM(append)
        rc = vm.exit_code()
        err = [l for l in vm.lines if "error:" in l]
        check(rc == 5 and err, f"{append!r}: exit value 2 (QEMU status {rc})")


TESTS = {"kv": test_kv, "persist": test_persist, "full": test_full,
         "dirty": test_dirty, "dirtytest": test_dirtytest, "errors": test_errors}

PROBE = "workload=dirtytest seed=1 pages=10 region=100 rounds=3"


def probe_cpu():
    """The first CPU_CANDIDATES entry under which QEMU boots the guest, the
    guest learns its TSC rate (leaf 0x40000010, else kvmclock) and exits 0;
    None if none."""
    for cpu in CPU_CANDIDATES:
        vm = VM(PROBE, cpu=cpu)
        rc = vm.finish(20)
        boot = [l for l in vm.lines if l.startswith("ftvm-guest: boot")]
        rated = boot and ("(cpuid-40000010)" in boot[0] or "(kvmclock)" in boot[0])
        if rc == 1 and rated:
            print(f"     chose -cpu {cpu} ({time.time() - vm.t0:.3f} s):\n{indent(vm.lines)}")
            return cpu
        if rc is None:
            why = "the probe did not finish within 20 s"
        elif boot and not rated:
            why = "the guest finds no TSC rate (no CPUID leaf 0x40000010, no kvmclock)"
        else:
            why = f"QEMU exited with status {rc}"
        print(f"     rejected -cpu {cpu}: {why}:\n{indent(vm.lines)}", flush=True)
    return None


def main():
    global ELF, TMP, CPU
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    ELF = sys.argv[1]
    if not shutil.which("qemu-system-x86_64") or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP: needs qemu-system-x86_64 and /dev/kvm")
        return 77
    names = sys.argv[2:] or list(TESTS)
    with tempfile.TemporaryDirectory(prefix="ftvm-guest-") as TMP:
        print("== cpu", flush=True)
        if EXTRA_ARGS:
            print(f"     FTVM_QEMU_EXTRA_ARGS: {shlex.join(EXTRA_ARGS)}")
        CPU = os.environ.get("FTVM_QEMU_CPU")
        if CPU:
            print(f"     -cpu {CPU} (FTVM_QEMU_CPU, no probe)")
        else:
            CPU = probe_cpu()
            check(CPU is not None, "QEMU starts with one of the -cpu candidates")
            if CPU is None:
                return 1
        for name in names:
            print(f"== {name}", flush=True)
            try:
                TESTS[name]()
            except Broken as e:
                check(False, f"{name}: {e}")
    print(f"{len(FAILS)} failure(s)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
