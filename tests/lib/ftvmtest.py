"""ftvmtest - shared helpers for ftvm's integration tests, benchmarks and demo.

A "host" is a network namespace. The guest's NIC is a tap device inside it,
with the host side addressed 10.0.0.1/24 and the guest 10.0.0.10/24, so
every test is isolated from the machine's own network and from other tests.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("FTVM_BUILD", os.path.join(SRC, "build"))
FTVM = os.path.join(BUILD, "vmm", "ftvm")
FTVMCTL = os.path.join(BUILD, "tools", "ftvmctl")
FTVM_KV = os.path.join(BUILD, "tools", "ftvm-kv")
GUEST = os.path.join(BUILD, "guest", "ftvm-guest.elf")

HOST_IP = "10.0.0.1"
GUEST_IP = "10.0.0.10"
KV_PORT = 7777

SKIP = 77  # CTest's SKIP_RETURN_CODE for these tests


def skip(why):
    print("SKIP: " + why)
    sys.exit(SKIP)


def require_kvm():
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        skip("/dev/kvm is not available on this machine")
    if os.geteuid() != 0:
        skip("network namespaces and tap devices need root")


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def sh(*cmd, check_rc=True, **kw):
    r = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if check_rc and r.returncode != 0:
        raise Failure("command failed (%d): %s\n%s%s" % (r.returncode, " ".join(cmd), r.stdout, r.stderr))
    return r


class NetNS:
    """A network namespace with a tap for the guest: the test's 'host'."""

    def __init__(self, tag="t", tap="tap0", host_ip=HOST_IP):
        self.name = "ftvm-%s-%d-%d" % (tag, os.getpid(), random.randint(0, 99999))
        self.tap = tap
        sh("ip", "netns", "add", self.name)
        try:
            self.ip("link", "set", "lo", "up")
            self.ip("tuntap", "add", tap, "mode", "tap")
            self.ip("addr", "add", host_ip + "/24", "dev", tap)
            self.ip("link", "set", tap, "up")
        except Exception:
            self.destroy()
            raise

    def ip(self, *args):
        return sh("ip", "-n", self.name, *args)

    def cmd(self, *args):
        return ["ip", "netns", "exec", self.name] + list(args)

    def run(self, *args, check_rc=True, timeout=600):
        return sh(*self.cmd(*args), check_rc=check_rc, timeout=timeout)

    def destroy(self):
        subprocess.run(["ip", "netns", "pids", self.name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", self.name], stderr=subprocess.DEVNULL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()


def make_disk(path, size_mb=64):
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    return path


class Vm:
    """One ftvm process: serial console to a file, monitor on a unix socket."""

    def __init__(self, workdir, ns=None, name="vm", append=None, disk=None, memory="256M", smp=1,
                 restore=None, kernel=GUEST, extra=()):
        self.workdir = workdir
        self.ns = ns
        self.serial = os.path.join(workdir, name + ".serial")
        self.sock = os.path.join(workdir, name + ".mon")
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        if append is None:
            append = "workload=kv ip=%s/24 port=%d" % (GUEST_IP, KV_PORT)
        args = [FTVM, "--name", name, "--memory", memory, "--smp", str(smp),
                "--serial", "file:" + self.serial, "--monitor", "unix:" + self.sock, "--test-mode"]
        if restore:
            args += ["--restore", restore]
        else:
            args += ["--kernel", kernel, "--append", append]
        if disk:
            args += ["--drive", "file=" + disk]
        if ns:
            args += ["--netdev", "tap,ifname=" + ns.tap]
        args += list(extra)
        if ns:
            args = ns.cmd(*args)
        self.serial_start = os.path.getsize(self.serial) if os.path.exists(self.serial) else 0
        self.t_start = time.monotonic()
        self.stderr = open(self.stderr_path, "a")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.stderr)

    def console(self):
        try:
            with open(self.serial, "r", errors="replace") as f:
                f.seek(self.serial_start)
                return f.read()
        except FileNotFoundError:
            return ""

    def errors(self):
        with open(self.stderr_path) as f:
            return f.read()

    def wait_ready(self, timeout=30.0):
        """Waits for the guest's ready line; returns (seconds since spawn, the line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.console().splitlines():
                if line.startswith("ftvm-guest: ready"):
                    return time.monotonic() - self.t_start, line
            if self.proc.poll() is not None:
                raise Failure("ftvm exited (%d) before the guest was ready\nconsole:\n%s\nstderr:\n%s"
                              % (self.proc.returncode, self.console(), self.errors()))
            time.sleep(0.005)
        raise Failure("guest not ready after %.0fs\nconsole:\n%s" % (timeout, self.console()))

    def wait_monitor(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.sock):
                r = subprocess.run([FTVMCTL, self.sock, "--json", "info", "status"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                if r.returncode == 0:
                    return json.loads(r.stdout)["return"]
            if self.proc.poll() is not None:
                raise Failure("ftvm exited (%d): %s" % (self.proc.returncode, self.errors()))
            time.sleep(0.01)
        raise Failure("monitor did not answer")

    def ctl(self, *words, json_mode=True, check_rc=True):
        args = [FTVMCTL, self.sock] + (["--json"] if json_mode else []) + list(words)
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        if check_rc and r.returncode != 0:
            raise Failure("ftvmctl %s failed (%d): %s%s" % (" ".join(words), r.returncode, r.stdout, r.stderr))
        if json_mode and r.stdout.strip():
            return r.returncode, json.loads(r.stdout)
        return r.returncode, r.stdout

    def quit(self, timeout=20):
        try:
            self.ctl("quit", check_rc=False)
        except Exception:
            pass
        return self.wait(timeout)

    def wait(self, timeout=20):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failure("ftvm did not exit within %ds" % timeout)

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def close(self):
        self.kill()
        self.stderr.close()


def kv(ns, *args, timeout=600, check_rc=True, json_out=False):
    """Runs ftvm-kv inside the namespace against the guest."""
    cmd = [FTVM_KV, "--server", "%s:%d" % (GUEST_IP, KV_PORT)] + list(args)
    r = ns.run(*cmd, check_rc=False, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise Failure("ftvm-kv %s failed (%d):\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    if json_out:
        return r, json.loads(r.stdout.strip().splitlines()[-1])
    return r


def parse_time(out):
    """(guest_tsc, guest_ns) from ftvm-kv's `time` answer."""
    f = dict(w.split("=", 1) for w in out.split() if "=" in w)
    return int(f["guest_tsc"]), int(f["guest_ns"])


def check_clock_rate(guest_time, seconds=3.0, tolerance=0.01, what=""):
    """Checks that guest nanoseconds advance at host speed (within
    `tolerance`) over `seconds` of host time; guest_time() returns
    (guest_tsc, guest_ns). A wrong TSC rate is named as such, before a
    clock test reads anything into the guest's jumps. Returns the ratio."""
    def sample():
        h0 = time.monotonic_ns()
        _, g = guest_time()
        h1 = time.monotonic_ns()
        return (h0 + h1) // 2, g, h1 - h0
    h0, g0, rtt0 = sample()
    time.sleep(seconds)
    h1, g1, rtt1 = sample()
    ratio = (g1 - g0) / (h1 - h0)
    print("guest clock rate: %.5f x host time over %.3f s (requests took %.2f / %.2f ms)%s"
          % (ratio, (h1 - h0) / 1e9, rtt0 / 1e6, rtt1 / 1e6, " " + what if what else ""))
    check(abs(ratio - 1.0) <= tolerance,
          "the guest's TSC rate is wrong: its nanoseconds ran %.4f x host time over %.1f s (allowed "
          "1 +- %.2f)%s" % (ratio, (h1 - h0) / 1e9, tolerance, "; " + what if what else ""))
    return ratio


def boot_line(console):
    """The guest's `ftvm-guest: boot ...` console line ('' if none yet)."""
    for line in console.splitlines():
        if line.startswith("ftvm-guest: boot"):
            return line
    return ""


def main(test):
    """Runs test(workdir) with a fresh temporary directory; prints PASS/FAIL."""
    workdir = tempfile.mkdtemp(prefix="ftvm-test-")
    name = os.path.basename(sys.argv[0])
    # Every park of every VMM a test starts checks that the state its exit
    # left in kvm_run (KVM_CAP_SYNC_REGS, read by each checkpoint's capture)
    # is KVM's; a difference aborts the VMM, and the test fails.
    os.environ.setdefault("FTVM_CHECK_SYNC_REGS", "1")
    try:
        test(workdir)
    except Failure as e:
        print("FAIL: %s: %s" % (name, e))
        print("(work files kept in %s)" % workdir)
        sys.exit(1)
    print("PASS: " + name)
    shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0)


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _crc32c_table()


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli), chained like zlib.crc32: crc32c(b, crc32c(a)) == crc32c(a + b)."""
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def snapshot_fix_header_crc(b):
    """Recomputes a snapshot file header's CRC (docs/wire-format: header_crc at 16,
    header_size at 12) so a test can change one header field and nothing else."""
    import struct
    hsize = struct.unpack_from("<I", b, 12)[0]
    h = bytes(b[:16]) + b"\0\0\0\0" + bytes(b[20:hsize])
    struct.pack_into("<I", b, 16, crc32c(h))
