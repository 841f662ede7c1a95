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
   the written keys read back after a failover.
(The README's long run uses -n 100000; CI uses -n N_CI.)"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import GUEST_IP, check, main, require_kvm, skip  # noqa: E402
from drill import REP_IP, REP_PORT, Node, Topology, close_all, make_image, make_psk, wait_ready  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
N_CI = int(os.environ.get("FTVM_RESP_N", "5000"))


def cli(topo, *args):
    r = subprocess.run(topo.cmd("C", "redis-cli", "-h", GUEST_IP, *args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    return r.stdout.strip()


def benchmark(topo, what):
    r = subprocess.run(topo.cmd("C", "redis-benchmark", "-h", GUEST_IP, "-t", "ping,set,get,incr,mset",
                                "-n", str(N_CI), "-c", "50", "-q"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    lines = [l.strip() for l in r.stdout.replace("\r", "\n").splitlines() if "requests per second" in l]
    errors = [l for l in r.stdout.splitlines() if "rror" in l]
    print("redis-benchmark -n %d -c 50, %s:\n  %s" % (N_CI, what, "\n  ".join(lines)))
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
            # 1. redis-cli
            got = [cli(topo, "PING"), cli(topo, "SET", "greeting", "hello"), cli(topo, "GET", "greeting"),
                   cli(topo, "INCR", "visits"), cli(topo, "INCR", "visits")]
            print("redis-cli: PING %r, SET %r, GET %r, INCR %r %r" % tuple(got))
            check(got == ["PONG", "OK", "hello", "1", "2"], "redis-cli: %s" % got)
            # 2. the protocol
            r = subprocess.run(topo.cmd("C", sys.executable, os.path.join(HERE, "resp_probe.py"), GUEST_IP, "6379"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
            print(r.stdout)
            check(r.returncode == 0, "resp_probe: %s" % r.stdout[-800:])
            # 3. redis-benchmark, unprotected then protected
            benchmark(topo, "unprotected")
            b = Node(topo, "B", work, "r", img, "shared", True, tls=tls)
            nodes.append(b)
            a.ctl("migrate", "-d", "-k", "tcp:%s:%d" % (REP_IP["B"], REP_PORT))
            a.wait_state(("protected",), 60)
            benchmark(topo, "protected")
            check(cli(topo, "SET", "before-failover", "kept") == "OK", "SET under protection")
            a.kill()
            b.wait_state(("failed-over",), 20)
            got = [cli(topo, "GET", "before-failover"), cli(topo, "GET", "greeting")]
            print("after the failover: GET before-failover %r, GET greeting %r" % tuple(got))
            check(got == ["kept", "hello"], "after failover: %s" % got)
        finally:
            close_all(None, nodes)


if __name__ == "__main__":
    main(test)
