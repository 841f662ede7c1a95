#!/usr/bin/env python3
"""Guest time across failovers: a client calls TIME without pause while the
primary is killed 20 times (each time protection is restored to a new
secondary). The guest TSC and guest nanoseconds the client sees never
decrease, and each forward jump exceeds the host time between the two
answers (the measured outage) by at most 50 ms. The guest runs --smp 2:
after every failover vCPU 1 keeps running and the TSCs of the two vCPUs
stay ordered (the guest counts every read that saw the other vCPU ahead).
A TSC-rate mismatch between peers is refused naming both rates. First of
all the guest's clock must run at host speed (within 1 % over 3 s)."""
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import (FTVM_KV, GUEST_IP, KV_PORT, boot_line, check, check_clock_rate, main,  # noqa: E402
                      parse_time, require_kvm)
from drill import Client, Node, Topology, make_image, wait_ready  # noqa: E402

KILLS = int(os.environ.get("FTVM_CLOCK_KILLS", "20"))


def stat(client):
    r = client.run("--json", "stat")
    return json.loads([l for l in r.stdout.splitlines() if l.strip()][-1])


def test(work):
    require_kvm()
    rnd = random.Random(99)
    with Topology() as topo:
        img = make_image(os.path.join(work, "shared.img"))
        client = Client(topo, work)
        nodes = []
        watch = None
        try:
            p = Node(topo, "A", work, "g0", img, "shared", False, smp=2)
            nodes.append(p)
            wait_ready(p)
            # First: the guest's clock runs at host speed, or every jump
            # measured below means nothing.
            check_clock_rate(lambda: parse_time(client.run("time").stdout), 3.0, 0.01,
                             what=boot_line(open(p.serial, errors="replace").read()))
            s = Node(topo, "B", work, "g0", img, "shared", True, smp=2)
            nodes.append(s)
            p.protect_to("B")
            out = open(os.path.join(work, "watch.json"), "w")
            watch = subprocess.Popen(topo.cmd("C", FTVM_KV, "--server", "%s:%d" % (GUEST_IP, KV_PORT),
                                              "--deadline-ms", "20000", "--json", "time-watch",
                                              "--duration-ms", "3600000", "--interval-ms", "2",
                                              "--max-excess-us", "50000"),
                                     stdout=out, stderr=subprocess.PIPE, text=True)
            for i in range(KILLS):
                time.sleep(rnd.uniform(0.2, 0.6))
                p.kill()
                fo = s.wait_state(("failed-over",), 10)
                st0 = stat(client)
                time.sleep(0.25)   # vCPU 1 publishes every 100 ms
                st1 = stat(client)
                print("failover %2d: checkpoint %d, clock %s, caught up %.1f ms, step %.1f ms, vCPU skew %d us; "
                      "vCPU 1 iterations %s -> %s, TSC order errors %s"
                      % (i + 1, fo["committed_epoch"], fo["clock_method"], fo["clock_elapsed_us"] / 1000.0,
                         fo["clock_step_us"] / 1000.0, fo["clock_vcpu_skew_us"], st0["ap_iterations"],
                         st1["ap_iterations"], st1["tsc_order_errors"]))
                check(int(st1["ap_iterations"]) > int(st0["ap_iterations"]), "vCPU 1 stopped after failover %d" % (i + 1))
                check(int(st1["tsc_order_errors"]) == 0, "vCPU TSCs out of order after failover %d: %s" % (i + 1, st1))
                dead = p
                p = s
                s = Node(topo, dead.h, work, "g%d" % (i + 1), img, "shared", True, smp=2)
                nodes.append(s)
                p.protect_to(s.h)
            time.sleep(0.3)
            watch.send_signal(signal.SIGINT)
            _, err = watch.communicate(timeout=60)
            out.close()
            with open(os.path.join(work, "watch.json")) as f:
                w = json.loads([l for l in f.read().splitlines() if l.strip()][-1])
            print("time-watch: %d answers, %d backward steps, largest jump %.1f ms over %.1f ms of host time, "
                  "largest excess %.1f ms" % (w["answered"], w["backward_steps"], w["max_forward_jump_ns"] / 1e6,
                                            w["max_forward_jump_host_ns"] / 1e6, w["max_excess_ns"] / 1e6))
            check(w["backward_steps"] == 0, "guest time went backwards: %s %s" % (w, err[-1000:]))
            check(w["max_excess_ns"] <= 50_000_000, "a forward jump exceeded the outage by > 50 ms: %s" % w)
            check(w["answered"] > 100 and w["gave_up"] == 0, "time-watch: %s" % w)

            # A peer advertising another TSC rate is refused, naming both.
            for n in nodes:
                n.close()
            q = Node(topo, "A", work, "rate", img, "shared", True, smp=2)
            nodes.append(q)
            bad = Node(topo, "B", work, "rate-primary", make_image(os.path.join(work, "r.img")), "shared",
                       False, smp=2, extra=["--x-tsc-khz", "1234567"])
            nodes.append(bad)
            wait_ready(bad)
            bad.ctl("migrate", "-d", "-k", "tcp:10.99.0.1:4444")
            st = bad.wait_state(("unprotected",), 10)
            print("rate mismatch: %s" % st["last_error"])
            check("TSC rate differs" in st["last_error"] and "1234567 kHz" in st["last_error"],
                  "TSC rate mismatch not refused with both rates: %s" % st["last_error"])
            check(q.migrate_info()["committed_epoch"] == 0, "secondary took state from a mismatched primary")
        finally:
            if watch and watch.poll() is None:
                watch.kill()
            for n in nodes:
                n.close()


main(test)
