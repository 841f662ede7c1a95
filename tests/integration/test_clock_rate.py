#!/usr/bin/env python3
"""The guest's clock rate, on any host: the guest's TIME nanoseconds
advance within 1 % of host time over 3 s, whichever way the hypervisor
tells it the TSC rate:
- the CPUID timing leaf 0x40000010 ftvm publishes from KVM_GET_TSC_KHZ
  (the guest reads it in ring 0: on hosts without CPUID faulting, such as
  PVM on AMD, ring 3 sees the host's leaves);
- kvmclock's pvclock data, where the leaf is hidden (--x-no-tsc-leaf: an
  unknown hypervisor without the leaf);
- neither (--x-no-kvmclock too): the kv guest refuses to start, saying why,
  instead of guessing a rate."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import (NetNS, Vm, boot_line, check, check_clock_rate, kv, main, make_disk,  # noqa: E402
                      parse_time, require_kvm)



def test(work):
    require_kvm()
    disk = make_disk(os.path.join(work, "kv.img"), 16)
    with NetNS("rate") as ns:
        rates = {}
        for name, extra, source in (("leaf", [], "cpuid-40000010"),
                                    ("kvmclock", ["--x-no-tsc-leaf"], "kvmclock")):
            vm = Vm(work, ns, name=name, disk=disk, extra=extra)
            try:
                vm.wait_ready()
                line = boot_line(vm.console())
                print("%-8s %s" % (name, line))
                check("(%s)" % source in line, "%s: the guest did not take its TSC rate from %s: %r"
                      % (name, source, line))
                rates[name] = int(line.split("tsc_khz=")[1].split()[0])
                check_clock_rate(lambda: parse_time(kv(ns, "time").stdout), 3.0, 0.01, what=line)
                vm.quit()
            finally:
                vm.close()
        # kvmclock's mul/shift round-trip to the leaf's rate within 0.01 %.
        check(abs(rates["kvmclock"] - rates["leaf"]) <= rates["leaf"] / 10000,
              "rate from kvmclock %d kHz, from the leaf %d kHz" % (rates["kvmclock"], rates["leaf"]))

        vm = Vm(work, ns, name="none", disk=disk, extra=["--x-no-tsc-leaf", "--x-no-kvmclock"])
        try:
            rc = vm.wait(20)
            con = vm.console()
            print("neither: ftvm exited %d; console: %s" % (rc, con.strip().replace("\n", " | ")))
            check(rc == 2, "a guest without a TSC rate should exit 2 (refused), not %d" % rc)
            check("tsc_khz=0 (none)" in con, "boot line does not say the rate is unknown: %r" % con)
            check("workload=kv needs the TSC rate" in con and "refusing to start" in con,
                  "no clear refusal on the console: %r" % con)
            check("ready" not in con, "the kv workload started without a clock: %r" % con)
        finally:
            vm.close()


main(test)
