#!/usr/bin/env python3
"""An idle guest leaves the host's CPU alone. The guest idles through the
VMM's idle port (docs/guest-abi.md): its vCPU thread sleeps until a frame
arrives or the guest's timeout passes. A bug made every idle return at once
(the idle deadline was CLOCK_MONOTONIC, the condition variable timed on
CLOCK_REALTIME), so an idle VM spun a whole host CPU, and under protection
took it from the primary's and secondary's threads on a 2-CPU host.

Checked: over 2 s with no request, the vCPU thread uses under 20 % of one
CPU (it used ~100 % before the fix); and a request still gets its answer at
once, so the sleep ends when a frame arrives."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import *  # noqa: E402,F401,F403


def vcpu_ticks(pid):
    """(utime + stime) of the process's vcpu0 thread, in clock ticks."""
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
            st = f.read()
        if st[st.index("(") + 1:st.rindex(")")] == "vcpu0":
            fields = st[st.rindex(")") + 2:].split()
            return int(fields[11]) + int(fields[12])
    raise Failure("no vcpu0 thread in process %d" % pid)


def test(work):
    require_kvm()
    disk = make_disk(os.path.join(work, "idle.img"), 16)
    hz = os.sysconf("SC_CLK_TCK")
    with NetNS("idle") as ns:
        vm = Vm(work, ns, disk=disk)
        try:
            vm.wait_ready()
            time.sleep(0.5)
            t0, c0 = time.monotonic(), vcpu_ticks(vm.proc.pid)
            time.sleep(2.0)
            t1, c1 = time.monotonic(), vcpu_ticks(vm.proc.pid)
            share = (c1 - c0) / hz / (t1 - t0)
            print("idle guest: vcpu0 used %.1f %% of a CPU over %.1f s" % (100 * share, t1 - t0))
            check(share < 0.20, "an idle guest's vCPU thread used %.0f %% of a CPU" % (100 * share))
            t = time.monotonic()
            r = kv(ns, "put", "idle-key", "v1")
            took = time.monotonic() - t
            print("a PUT to the idle guest: %r in %.1f ms" % (r.stdout.strip(), took * 1000))
            check(r.returncode == 0 and kv(ns, "get", "idle-key").stdout.strip().endswith("v1"),
                  "the idle guest did not answer: %s" % r.stdout)
        finally:
            vm.close()


main(test)
