#!/usr/bin/env python3
"""Malformed kv requests each get ERR with the reason; the guest goes on
serving, and a retried PUT is harmless."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import *  # noqa: E402,F401,F403


def test(work):
    require_kvm()
    disk = make_disk(os.path.join(work, "kv.img"), 16)
    with NetNS("kvreq") as ns:
        vm = Vm(work, ns, disk=disk)
        try:
            vm.wait_ready()
            cases = [
                ("FOO 1 a", "ERR 1 bad_command"),
                ("PUT 2 a", "ERR 2 bad_arity"),
                ("PUT 3 a b c", "ERR 3 bad_arity"),
                ("GET 4", "ERR 4 bad_arity"),
                ("PUT 5 bad/key v", "ERR 5 bad_key"),
                ("PUT 6 k " + "v" * 65, "ERR 6 bad_value"),
                ("PUT 7 " + "k" * 65 + " v", "ERR 7 bad_key"),
                ("PUT bad!id k v", "ERR - bad_reqid"),
                ("", "ERR - "),
                ("GET 9 k\xff", "ERR 9 bad_key"),
                ("put 10 k v", "ERR 10 bad_command"),
                ("TIME", "ERR - bad_arity"),
            ]
            for req, want in cases:
                r = kv(ns, "raw", req, check_rc=False)
                got = r.stdout.strip()
                print("%-30r -> %r" % (req[:30], got))
                check(got.startswith(want), "request %r answered %r, want %r" % (req, got, want))
            # Retried PUT: harmless, same answer, same value.
            for _ in range(3):
                r = kv(ns, "raw", "PUT r1 key1 val1")
                check(r.stdout.strip() == "OK r1", "PUT answered %r" % r.stdout)
            r = kv(ns, "raw", "GET g1 key1")
            check(r.stdout.strip() == "VAL g1 val1", "GET answered %r" % r.stdout)
            r = kv(ns, "raw", "GET g2 nokey")
            check(r.stdout.strip() == "NONE g2", "GET of a missing key answered %r" % r.stdout)
            r = kv(ns, "raw", "TIME t1")
            f = r.stdout.split()
            check(len(f) == 4 and f[0] == "TIME" and f[1] == "t1" and int(f[2]) > 0 and int(f[3]) > 0,
                  "TIME answered %r" % r.stdout)
            check(vm.quit() == 0, "quit")
        finally:
            vm.close()


main(test)
