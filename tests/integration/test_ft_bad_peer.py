#!/usr/bin/env python3
"""What a secondary does with a primary it cannot trust: a corrupted
message, a stream truncated mid-message, a page sent twice in one
checkpoint, a peer speaking another protocol
version, a peer with another memory size, another device set, another CPU
vendor or another guest-visible CPUID word are each refused with an error naming the problem; the secondary keeps its
last good checkpoint (and a later `cont` resumes it with nothing that was
acknowledged under protection lost)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import check, main, require_kvm  # noqa: E402
from drill import Client, Node, Topology, make_image, wait_ready  # noqa: E402


def stream_fault(work, fault, words):
    """Protected pair; the primary damages one PAGES message on the wire."""
    with Topology() as topo:
        img = make_image(os.path.join(work, fault + ".img"))
        client = Client(topo, work)
        client.acks = os.path.join(work, fault + ".acks")
        a = b = None
        try:
            a = Node(topo, "A", work, fault, img, "shared", False)
            wait_ready(a)
            # No --failover-on-peer-loss: we look at the secondary's state.
            b = Node(topo, "B", work, fault, img, "shared", False,
                     extra=["--incoming", "tcp:10.99.0.2:4444"])
            a.protect_to("B")
            r = client.run("--json", "load", "--ops", "300", "--keys", "30", "--ack-log", client.acks)
            check(r.returncode == 0, "load under protection: %s" % r.stdout[-500:])
            before = b.migrate_info()["committed_epoch"]
            a.ctl("migrate_set_parameter", "x-inject", fault)
            client.run("put", "trigger", "1")   # output -> checkpoint -> damaged PAGES
            st = b.wait_state(("refused", "peer-lost"), 10)
            print("%-15s secondary: state %s, committed %d (was %d), discarded %d: %s"
                  % (fault, st["state"], st["committed_epoch"], before, st["discarded_epochs"],
                     st["last_error"]))
            check(any(w in st["last_error"] for w in words),
                  "%s: error does not name the problem (%s): %s" % (fault, words, st["last_error"]))
            check(st["committed_epoch"] >= before and st["discarded_epochs"] == 1,
                  "%s: secondary did not keep its last good state: %s" % (fault, st))
            pa = a.wait_state(("unprotected",), 10)
            print("%-15s primary: %s (%s)" % (fault, pa["state"], pa["last_error"]))
            # The kept state is good: take over from it.
            a.kill()
            b.ctl("cont")
            b.wait_state(("failed-over",), 10)
            v = client.verify()
            check(v["lost"] == 0 and v["wrong"] == 0 and v["checked"] == 30,
                  "%s: secondary's kept checkpoint lost acknowledged writes: %s" % (fault, v))
        finally:
            for n in (a, b):
                if n:
                    n.close()


def hello_refused(work, label, a_extra, b_args, words, inject=None):
    """A primary the secondary must refuse at HELLO."""
    with Topology() as topo:
        img = make_image(os.path.join(work, label + ".img"))
        a = b = None
        try:
            a = Node(topo, "A", work, label, img, "shared", False, extra=a_extra)
            wait_ready(a)
            b = Node(topo, "B", work, label, img, "shared", True, **b_args)
            if inject:
                a.ctl("migrate_set_parameter", "x-inject", inject)
            a.ctl("migrate", "-d", "-k", "tcp:10.99.0.2:4444")
            pa = a.wait_state(("unprotected",), 10)
            sb = b.migrate_info()
            print("%-15s primary: %s" % (label, pa["last_error"]))
            print("%-15s secondary: %s, %s" % (label, sb["state"], sb["last_stray"]))
            # A refused HELLO changes nothing on the secondary: it is
            # reported as a stray connection, not as the secondary's error.
            check(sb["stray_connections"] == 1 and sb["last_error"] == "",
                  "%s: a refused HELLO changed the secondary: %s" % (label, sb))
            for who, msg in (("primary", pa["last_error"]), ("secondary", sb["last_stray"])):
                check(any(w in msg for w in words), "%s: %s's error does not name the problem: %r"
                      % (label, who, msg))
            check(sb["state"] == "waiting" and sb["committed_epoch"] == 0,
                  "%s: secondary took state from a refused primary: %s" % (label, sb))
            check(a.ctl("info", "status")["status"] == "running", "%s: primary stopped" % label)
        finally:
            for n in (a, b):
                if n:
                    n.close()


def host_vendor():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    return ""


def test(work):
    require_kvm()
    stream_fault(work, "corrupt-pages", ["checksum mismatch"])
    stream_fault(work, "truncate-pages", ["truncated"])
    # A page sent twice in one checkpoint (staging would outgrow the RAM).
    stream_fault(work, "repeat-page", ["sent twice in one checkpoint"])
    hello_refused(work, "version", [], {}, ["protocol version 5", "speaks 4"], inject="hello-version")
    hello_refused(work, "memory-size", [], {"memory": "512M"}, ["memory size differs", "256 MiB", "512 MiB"])
    hello_refused(work, "vcpu-count", [], {"smp": 2}, ["vCPU count differs"])
    hello_refused(work, "device-set", [], {"net": False}, ["device set differs", "virtio-net"])
    # A primary on a host with another CPU (faked: what it announces).
    me = host_vendor()
    other = "AuthenticAMD" if me == "GenuineIntel" else "GenuineIntel"
    hello_refused(work, "cpu-vendor", ["--x-cpu-vendor", other], {},
                  ["CPU vendor differs: primary %s, secondary %s" % (other, me)])
    # All 32 bits, reserved ones included: no CPU of either vendor has it.
    hello_refused(work, "cpuid-word", ["--x-cpuid", "0x7.0.ebx=0xffffffff"], {},
                  ["guest-visible CPUID differs", "leaf 0x7.0 EBX", "primary 0xffffffff"])


main(test)
