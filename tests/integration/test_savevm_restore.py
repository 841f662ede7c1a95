#!/usr/bin/env python3
"""savevm of a running kv guest, --restore in a new process: the client goes
on with correct answers and all data intact. Damaged snapshots (one flipped
byte, truncated, another format version) and snapshots from a host with
another CPU vendor or guest-visible CPUID are refused with an error that
names the problem, and nothing runs."""
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import *  # noqa: E402,F401,F403


def restore_refused(ns, work, snap, disk, expect_words, label):
    vm = Vm(work, ns, name="bad-" + label, disk=disk, restore=snap)
    try:
        rc = vm.wait(20)
    finally:
        vm.close()
    err = vm.errors()
    print("%s: exit %d: %s" % (label, rc, err.strip()))
    check(rc != 0, "%s snapshot was accepted" % label)
    check(any(w in err for w in expect_words),
          "%s snapshot: error does not name the problem (%s): %r" % (label, expect_words, err))


def test(work):
    require_kvm()
    disk = make_disk(os.path.join(work, "kv.img"), 64)
    acks = os.path.join(work, "acks.log")
    snap = os.path.join(work, "vm.snap")
    with NetNS("save") as ns:
        vm = Vm(work, ns, disk=disk)
        try:
            vm.wait_ready()
            kv(ns, "load", "--ops", "2000", "--keys", "300", "--seed", "3", "--ack-log", acks)
            rc, j = vm.ctl("savevm", snap)
            print("savevm: %s" % j)
            check("return" in j and j["return"]["bytes"] > 0, "savevm failed: %s" % j)
            check(vm.wait_monitor()["status"] == "running", "VM not running after savevm")
            # The original is gone for good (as when its host dies).
            vm.kill()
        finally:
            vm.close()

        vm = Vm(work, ns, name="restored", disk=disk, restore=snap)
        try:
            st = vm.wait_monitor()
            check(st["status"] == "running", "restored VM is %s" % st["status"])
            r, v = kv(ns, "verify", "--ack-log", acks, "--json", json_out=True)
            print("verify after restore: %s" % v)
            check(v["lost"] == 0 and v["checked"] > 0, "data lost across restore: %s" % v)
            r, s = kv(ns, "load", "--ops", "2000", "--keys", "300", "--seed", "4",
                      "--ack-log", acks, "--json", json_out=True)
            check(s["stale_reads"] == 0 and s["wrong_answers"] == 0 and s["gave_up"] == 0,
                  "client after restore: %s" % s)
            r, v = kv(ns, "verify", "--ack-log", acks, "--json", json_out=True)
            check(v["lost"] == 0, "lost writes: %s" % v)
            check(vm.quit() == 0, "restored VM did not quit cleanly")
        finally:
            vm.close()

        data = open(snap, "rb").read()
        # One flipped byte, in the middle of the file (RAM pages or state).
        flipped = os.path.join(work, "flipped.snap")
        b = bytearray(data)
        b[len(b) // 2] ^= 0x01
        open(flipped, "wb").write(b)
        restore_refused(ns, work, flipped, disk, ["corrupt", "checksum"], "flipped")
        # Truncated.
        trunc = os.path.join(work, "trunc.snap")
        open(trunc, "wb").write(data[: len(data) * 2 // 3])
        restore_refused(ns, work, trunc, disk, ["truncated"], "truncated")
        # Another format version (header field at offset 8), header CRC fixed
        # up so that only the version is wrong.
        other = os.path.join(work, "v99.snap")
        b = bytearray(data)
        struct.pack_into("<I", b, 8, 99)
        snapshot_fix_header_crc(b)
        open(other, "wb").write(b)
        restore_refused(ns, work, other, disk, ["version 99"], "version")

        # A snapshot from a host with another CPU (faked: what the saving
        # VM announces): refused, naming both.
        me = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("vendor_id")][0]
        them = "AuthenticAMD" if me == "GenuineIntel" else "GenuineIntel"
        for label, flag, words in (
                ("cpu-vendor", ["--x-cpu-vendor", them], ["CPU vendor differs: snapshot %s, this host %s" % (them, me)]),
                # an XSAVE area of 1 byte: no CPU of either vendor (at least 576)
                ("cpuid-word", ["--x-cpuid", "0xd.0.ecx=0x1"],
                 ["guest-visible CPUID differs", "leaf 0xd.0 ECX (XSAVE area size): snapshot 0x00000001"])):
            path = os.path.join(work, label + ".snap")
            vm = Vm(work, ns, name="save-" + label, disk=disk, extra=flag)
            try:
                vm.wait_ready()
                rc, j = vm.ctl("savevm", path)
                check("return" in j, "savevm (%s) failed: %s" % (label, j))
                vm.quit()
            finally:
                vm.close()
            restore_refused(ns, work, path, disk, words, label)


main(test)
