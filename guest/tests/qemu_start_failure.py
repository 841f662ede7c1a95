#!/usr/bin/env python3
"""Checks that qemu_smoke.py fails at once when QEMU refuses to start.

Runs qemu_smoke.py twice with a QEMU that cannot start:
  probe  FTVM_QEMU_EXTRA_ARGS="-device ftvm-no-such-device": every -cpu
         candidate is rejected, each with QEMU's own error;
  tests  FTVM_QEMU_CPU=ftvm-no-such-model (no probe): every test fails
         while waiting on QEMU, with QEMU's own error.
Each run must exit non-zero and not 77 (skip) within 30 s. Needs
qemu-system-x86_64 and /dev/kvm; exits 77 (CTest SKIP_RETURN_CODE) without.

usage: qemu_start_failure.py path/to/ftvm-guest.elf
"""
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import qemu_smoke  # noqa: E402  (for CPU_CANDIDATES and TESTS)

LIMIT = 30
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def smoke(elf, env):
    """Runs qemu_smoke.py with env added; (status, output, seconds)."""
    t0 = time.time()
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "qemu_smoke.py"), elf],
                         env=dict(os.environ, **env), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the script and its QEMUs
        out, _ = p.communicate()
    out = out.decode(errors="replace")
    print("\n".join("     | " + l for l in out.splitlines()))
    return p.returncode, out, time.time() - t0


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if not shutil.which("qemu-system-x86_64") or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP: needs qemu-system-x86_64 and /dev/kvm")
        return 77
    elf = sys.argv[1]

    print("== probe", flush=True)
    rc, out, secs = smoke(elf, {"FTVM_QEMU_EXTRA_ARGS": "-device ftvm-no-such-device"})
    check(rc not in (0, 77, None) and secs < LIMIT,
          f"no -cpu candidate starts: status {rc} after {secs:.1f} s")
    msg = "'ftvm-no-such-device' is not a valid device model name"
    check(out.count(msg) == len(qemu_smoke.CPU_CANDIDATES) and
          all(f"rejected -cpu {c}:" in out for c in qemu_smoke.CPU_CANDIDATES),
          "every candidate is rejected with QEMU's own error")

    print("== tests", flush=True)
    rc, out, secs = smoke(elf, {"FTVM_QEMU_CPU": "ftvm-no-such-model"})
    check(rc not in (0, 77, None) and secs < LIMIT,
          f"QEMU dead at start: status {rc} after {secs:.1f} s")
    msg = "unable to find CPU model 'ftvm-no-such-model'"
    check(out.count(msg) == len(qemu_smoke.TESTS) and
          f"{len(qemu_smoke.TESTS)} failure(s)" in out,
          "every test fails with QEMU's own error")

    print(f"{len(FAILS)} failure(s)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
