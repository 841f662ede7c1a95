#!/usr/bin/env python3
"""ftvm demo: boot the kv guest on a tap in a network namespace, talk to it.

What it shows, step by step:
  1. a network namespace (the "host") with a tap device for the guest;
  2. ftvm booting the kv guest (PVH entry, ring-3 workload) and how long
     that takes;
  3. the kv client writing and reading over UDP, every answer checked;
  4. the monitor: info status, savevm;
  5. the VM stopped and booted again from the same disk: nothing lost.
(The ft issue turns this into the kill-the-primary failover drill.)
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from ftvmtest import (GUEST_IP, KV_PORT, Failure, NetNS, Vm, kv, make_disk,  # noqa: E402
                      require_kvm)


def say(msg):
    print("demo: " + msg, flush=True)


def main():
    require_kvm()
    work = tempfile.mkdtemp(prefix="ftvm-demo-")
    disk = make_disk(os.path.join(work, "kv.img"), 64)
    acks = os.path.join(work, "acks.log")
    with NetNS("demo") as ns:
        say("namespace %s, tap %s, guest %s:%d" % (ns.name, ns.tap, GUEST_IP, KV_PORT))
        vm = Vm(work, ns, disk=disk)
        try:
            secs, line = vm.wait_ready()
            say("guest booted in %.0f ms: %s" % (secs * 1000, line))
            say("PUT greeting hello -> %s" % kv(ns, "put", "greeting", "hello").stdout.strip())
            say("GET greeting       -> %s" % kv(ns, "get", "greeting").stdout.strip())
            say("TIME               -> %s" % kv(ns, "time").stdout.strip())
            r, s = kv(ns, "load", "--ops", "3000", "--keys", "200", "--ack-log", acks, "--json",
                      json_out=True)
            say("load: %d ops, %d PUTs acknowledged, %d stale reads, %.0f ops/s, "
                "latency p50 %s us p99 %s us" % (s["ops"], s["puts_acked"], s["stale_reads"],
                                                 s["throughput_ops_s"], s["latency_p50_us"], s["latency_p99_us"]))
            rc, st = vm.ctl("info", "status")
            say("monitor: info status -> %s" % st["return"])
            rc, sv = vm.ctl("savevm", os.path.join(work, "vm.snap"))
            say("monitor: savevm -> %s" % sv["return"])
            say("quit -> exit code %d" % vm.quit())
        finally:
            vm.close()
        vm = Vm(work, ns, name="again", disk=disk)
        try:
            secs, line = vm.wait_ready()
            say("booted again from the same disk in %.0f ms: %s" % (secs * 1000, line))
            r, v = kv(ns, "verify", "--ack-log", acks, "--json", json_out=True)
            say("every acknowledged PUT read back: %d checked, %d lost" % (v["checked"], v["lost"]))
            vm.quit()
        finally:
            vm.close()
    say("done (files in %s)" % work)
    return 0 if v["lost"] == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print("demo: FAILED: %s" % e)
        sys.exit(1)
