#!/usr/bin/env python3
"""Guest time after --restore: with --restore-clock catch-up the guest's
clock moves forward by the wall time since the save (no less, and no more
than the outage plus 50 ms); with continue it resumes where the snapshot
left it, where this KVM can move a guest TSC (on PVM the guest runs on
the host TSC, so continue cannot hold for the TSC: the test says so).
First the guest's clock must run at host speed (within 1 % over 3 s)."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import (NetNS, Vm, boot_line, check, check_clock_rate, kv, main, make_disk,  # noqa: E402,F401
                      parse_time, require_kvm, skip)


def guest_time(ns):
    f = kv(ns, "time").stdout.split()
    return int(f[0].split("=")[1]), int(f[1].split("=")[1])


def test(work):
    require_kvm()
    disk = make_disk(os.path.join(work, "kv.img"), 16)
    snap = os.path.join(work, "vm.snap")
    with NetNS("clk") as ns:
        vm = Vm(work, ns, disk=disk)
        try:
            vm.wait_ready()
            # First: the guest's clock runs at host speed (a wrong TSC rate
            # would pass for a wrong restore below).
            check_clock_rate(lambda: parse_time(kv(ns, "time").stdout), 3.0, 0.01,
                             what=boot_line(vm.console()))
            vm.ctl("savevm", snap)
            t_save = time.monotonic()
            tsc0, ns0 = guest_time(ns)   # just after the save
            vm.kill()
        finally:
            vm.close()
        time.sleep(1.0)
        for policy in ("catch-up", "continue"):
            vm = Vm(work, ns, name="r-" + policy, disk=disk, restore=snap, extra=["--restore-clock", policy])
            try:
                vm.wait_monitor()
                tsc1, ns1 = guest_time(ns)
                outage = time.monotonic() - t_save
                m = re.search(r"guest clock: (\S+), ([\d.]+) s since the save, guest TSC moved ([\d.]+) s \((\S+)\)",
                              vm.errors())
                check(m, "no clock report: %s" % vm.errors())
                method = m.group(4)
                jump = (ns1 - ns0) / 1e9
                print("%-9s method %s: guest ns moved %.3f s over %.3f s of host time since the save"
                      % (policy, method, jump, outage))
                check(ns1 >= ns0 - 50_000_000 or policy == "continue", "guest time went backwards")
                if policy == "catch-up":
                    check(jump >= 0.95, "catch-up: guest time moved only %.3f s after a %.3f s outage" % (jump, outage))
                    check(jump <= outage + 0.05, "catch-up: guest time jumped %.3f s, outage %.3f s" % (jump, outage))
                elif method == "host-tsc":
                    print("SKIP (part): continue cannot hold for the TSC on this KVM (guest TSC = host TSC)")
                else:
                    check(jump < 0.05 + (outage - 1.0), "continue: guest time jumped %.3f s" % jump)
                vm.quit()
            finally:
                vm.close()


main(test)
