#!/usr/bin/env python3
"""The kv guest's RESP service (TCP port 6379, over lwIP) with real
clients:
1. redis-cli PING, SET, GET, INCR;
2. every command and malformed input, byte for byte (resp_probe.py, run on
   the client host): truncated, negative, huge and non-numeric lengths, a
   non-numeric INCR, too many arguments, pipelining, 64 connections at
   once, and a client that never reads, which stalls nobody else;
3. redis-benchmark -t ping,set,get,incr,mset -c 50 with 0 errors against
   the guest unprotected, then protected (over TLS, to a secondary), and
   the written keys read back after a failover;
4. the log replayed by a new VM booted from the disk: the same keys,
   large values and deletes; FLUSHALL and what follows it.
(-n 100000: about three minutes here; FTVM_RESP_N=N for a shorter run.)"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import GUEST_IP, check, main, require_kvm, skip  # noqa: E402
from drill import REP_IP, REP_PORT, Node, Topology, close_all, make_image, make_psk, wait_ready  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
N_REQUESTS = int(os.environ.get("FTVM_RESP_N", "100000"))


def cli(topo, *args):
    r = subprocess.run(topo.cmd("C", "redis-cli", "-h", GUEST_IP, *args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    return r.stdout.strip()


def benchmark(topo, what):
    r = subprocess.run(topo.cmd("C", "redis-benchmark", "-h", GUEST_IP, "-t", "ping,set,get,incr,mset",
                                "-n", str(N_REQUESTS), "-c", "50", "-q"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    lines = [l.strip() for l in r.stdout.replace("\r", "\n").splitlines() if "requests per second" in l]
    errors = [l for l in r.stdout.splitlines() if "rror" in l]
    print("redis-benchmark -n %d -c 50, %s:\n  %s" % (N_REQUESTS, what, "\n  ".join(lines)))
    check(r.returncode == 0 and not errors and len(lines) >= 5,
          "redis-benchmark %s: rc %d, errors %s, output %s" % (what, r.returncode, errors[:3], r.stdout[-500:]))


def test(work):
    require_kvm()
    for tool in ("redis-cli", "redis-benchmark"):
        if subprocess.run(["sh", "-c", "command -v " + tool], stdout=subprocess.DEVNULL).returncode:
            skip("%s is not installed (scripts/setup.sh installs redis-tools)" % tool)
    tls = make_psk(work)
    with Topology() as topo:
        img = make_image(os.path.join(work, "shared.img"), 1024)
        nodes = []
        try:
            a = Node(topo, "A", work, "r", img, "shared", False, tls=tls)
            nodes.append(a)
            wait_ready(a)
            # 2. the protocol (first: it ends with a FLUSHALL)
            r = subprocess.run(topo.cmd("C", sys.executable, os.path.join(HERE, "resp_probe.py"), GUEST_IP, "6379"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
            print(r.stdout)
            check(r.returncode == 0, "resp_probe: %s" % r.stdout[-800:])
            # 1. redis-cli
            got = [cli(topo, "PING"), cli(topo, "SET", "greeting", "hello"), cli(topo, "GET", "greeting"),
                   cli(topo, "INCR", "visits"), cli(topo, "INCR", "visits")]
            print("redis-cli: PING %r, SET %r, GET %r, INCR %r %r" % tuple(got))
            check(got == ["PONG", "OK", "hello", "1", "2"], "redis-cli: %s" % got)
            # 3. redis-benchmark, unprotected then protected
            benchmark(topo, "unprotected")
            b = Node(topo, "B", work, "r", img, "shared", True, tls=tls)
            nodes.append(b)
            a.ctl("migrate", "-d", "-k", "tcp:%s:%d" % (REP_IP["B"], REP_PORT))
            a.wait_state(("protected",), 60)
            benchmark(topo, "protected")
            big = "v" * 512
            got = [cli(topo, "SET", "before-failover", "kept"), cli(topo, "SET", "big", big),
                   cli(topo, "SET", "doomed", "x"), cli(topo, "DEL", "doomed")]
            check(got == ["OK", "OK", "OK", "1"], "writes under protection: %s" % got)
            a.kill()
            b.wait_state(("failed-over",), 20)
            after = lambda: [cli(topo, "GET", k) for k in ("before-failover", "greeting", "big", "doomed")]
            got = after()
            print("after the failover: GET before-failover, greeting, big, doomed: %r, %r, %s bytes, %r"
                  % (got[0], got[1], len(got[2]), got[3]))
            check(got == ["kept", "hello", big, ""], "after failover: %s" % got)
            # 4. The log on the disk says the same: the secondary is killed,
            # and a new VM boots from the image and replays it.
            b.kill()
            c = Node(topo, "A", work, "r2", img, "shared", False)
            nodes.append(c)
            wait_ready(c)
            got = after()
            print("booted again from the disk: %r, %r, %s bytes, %r" % (got[0], got[1], len(got[2]), got[3]))
            check(got == ["kept", "hello", big, ""], "after a reboot: %s" % got)
            # FLUSHALL starts the log over; what follows it survives a reboot.
            got = [cli(topo, "FLUSHALL"), cli(topo, "SET", "after-flush", "yes"), cli(topo, "DBSIZE")]
            check(got == ["OK", "OK", "1"], "FLUSHALL then SET: %s" % got)
            c.kill()
            d = Node(topo, "A", work, "r3", img, "shared", False)
            nodes.append(d)
            wait_ready(d)
            got = [cli(topo, "DBSIZE"), cli(topo, "GET", "after-flush"), cli(topo, "GET", "greeting")]
            print("after FLUSHALL, SET and a reboot: DBSIZE %r, GET after-flush %r, GET greeting %r" % tuple(got))
            check(got == ["1", "yes", ""], "FLUSHALL across a reboot: %s" % got)
        finally:
            close_all(None, nodes)


if __name__ == "__main__":
    main(test)
