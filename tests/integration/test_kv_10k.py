#!/usr/bin/env python3
"""10,000 PUT/GET through the kv guest over UDP on a tap, every answer
checked; then the VM is stopped and booted again from the same disk image
and every acknowledged PUT must still be readable."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import *  # noqa: E402,F401,F403


def test(work):
    require_kvm()
    disk = make_disk(os.path.join(work, "kv.img"), 64)
    acks = os.path.join(work, "acks.log")
    with NetNS("kv10k") as ns:
        vm = Vm(work, ns, disk=disk)
        try:
            secs, line = vm.wait_ready()
            check("entries=0" in line, "fresh disk should replay no entries: " + line)
            r, s = kv(ns, "load", "--ops", "10000", "--keys", "1000", "--read-ratio", "0.5",
                      "--seed", "7", "--ack-log", acks, "--json", json_out=True)
            print("load: %s" % s)
            check(s["ops"] == 10000, "expected 10000 operations, got %s" % s["ops"])
            check(s["stale_reads"] == 0 and s["wrong_answers"] == 0, "bad answers: %s" % s)
            check(s["gave_up"] == 0, "requests gave up: %s" % s)
            check(s["puts_acked"] > 4000, "too few acknowledged PUTs: %s" % s)
            check(vm.quit() == 0, "ftvm did not exit cleanly on quit")
        finally:
            vm.close()

        # Same disk, new VM: the guest replays its log.
        vm = Vm(work, ns, name="vm2", disk=disk)
        try:
            secs, line = vm.wait_ready()
            print("restarted: " + line)
            check("entries=0" not in line, "restarted guest replayed nothing: " + line)
            r, v = kv(ns, "verify", "--ack-log", acks, "--json", json_out=True)
            print("verify: %s" % v)
            check(v["lost"] == 0, "acknowledged writes lost after restart: %s" % v)
            check(v["checked"] > 0, "nothing verified")
        finally:
            vm.close()


main(test)
