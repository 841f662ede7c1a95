#!/usr/bin/env python3
"""The monitor in text and JSON: every command answers, malformed commands
get a clear error (and the VM keeps running), stop/cont really pause, and
info registers covers every vCPU of an --smp 2 guest."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import *  # noqa: E402,F401,F403


def raw_session(sock_path, lines):
    """Sends raw lines on one connection in JSON mode; returns the answer lines."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    f = s.makefile("rwb", buffering=0)
    f.readline()  # greeting
    out = []
    s.sendall(b"json\n")
    buf = b""
    while not buf.endswith(b"\n"):
        buf += s.recv(4096)
    for line in lines:
        s.sendall(line)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        out.append(buf.decode(errors="replace").strip())
    s.close()
    return out


def test(work):
    require_kvm()
    disk = make_disk(os.path.join(work, "kv.img"), 16)
    with NetNS("mon") as ns:
        vm = Vm(work, ns, disk=disk, smp=2)
        try:
            vm.wait_ready()
            rc, st = vm.ctl("info", "status")
            check(st["return"]["status"] == "running" and st["return"]["vcpus"] == 2, "info status: %s" % st)

            rc, txt = vm.ctl("info", "status", json_mode=False)
            check("status: running" in txt, "text info status: %r" % txt)

            rc, regs = vm.ctl("info", "registers")
            cpus = regs["return"]["cpus"]
            check(len(cpus) == 2, "info registers lists %d vCPUs" % len(cpus))
            for c in cpus:
                check(int(c["efer"], 16) & 0x400, "vCPU %d not in long mode: %s" % (c["index"], c))
                check(int(c["cs"], 16) & 3 == 3, "vCPU %d not in ring 3: cs=%s" % (c["index"], c["cs"]))

            rc, h = vm.ctl("help")
            check(any(x.startswith("savevm") for x in h["return"]["commands"]), "help: %s" % h)
            rc, m = vm.ctl("info", "migrate")
            check(m["return"]["state"] == "none", "info migrate: %s" % m)

            # stop: the guest must not answer; cont: it answers again.
            vm.ctl("stop")
            check(vm.ctl("info", "status")[1]["return"]["status"] == "paused", "not paused")
            r = kv(ns, "--timeout-ms", "100", "--deadline-ms", "400", "get", "k", check_rc=False)
            check(r.returncode != 0, "a paused guest answered: %s" % r.stdout)
            vm.ctl("cont")
            kv(ns, "put", "k", "v1")

            # Malformed commands: error class and a readable message each.
            cases = [
                (b"frobnicate\n", "CommandNotFound", "frobnicate"),
                (b"info nothing\n", "CommandNotFound", "info"),
                (b"savevm\n", "InvalidParameter", "usage: savevm [-f] FILE"),
                (b"savevm a b\n", "InvalidParameter", "usage: savevm [-f] FILE"),
                (b"stop now\n", "InvalidParameter", "takes no arguments"),
                (b"\n", "InvalidParameter", "empty command"),
                (b"x" * 5000 + b"\n", "InvalidParameter", "longer than"),
                (b"info\0status\n", "InvalidParameter", "NUL"),
                (b"savevm /nonexistent-dir/x.snap\n", "IoError", "savevm failed"),
            ]
            answers = raw_session(vm.sock, [c[0] for c in cases])
            for (line, cls, words), ans in zip(cases, answers):
                print("%-40r -> %s" % (line[:40], ans))
                check('"error"' in ans and cls in ans and words in ans,
                      "%r answered %r (want %s mentioning %r)" % (line[:40], ans, cls, words))

            rc, out = vm.ctl("frobnicate", json_mode=False, check_rc=False)
            check(rc == 1 and out.startswith("error: "), "ftvmctl text error: rc=%d %r" % (rc, out))
            r = subprocess.run([FTVMCTL, os.path.join(work, "nope.sock"), "info", "status"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            check(r.returncode == 2 and r.stderr, "ftvmctl on a missing socket: %d %r" % (r.returncode, r.stderr))

            # After all that, the VM still serves.
            r = kv(ns, "get", "k")
            check("v1" in r.stdout, "guest lost state: %r" % r.stdout)
            check(vm.quit() == 0, "quit")
        finally:
            vm.close()


main(test)
