#!/usr/bin/env python3
"""Faults of the peer and the link that must never make two primaries or
lose the only good copy:

1. a handover whose HANDOVER_OK never arrives: the secondary takes over;
   the old primary never runs its guest again (it stays stopped, and
   `cont` there is refused), so exactly one guest answers;
2. the link cut after the first COMMIT, before its ACK is read: the
   secondary may hold checkpoint 1, so the primary revokes it through the
   event hook before it releases any output;
3. stray connections to a waiting secondary whose primary died (garbage,
   a connect-and-close, a HELLO trickled one byte a second, a real ftvm
   primary that passes HELLO): each is refused and changes nothing: the
   secondary stays peer-lost with the same checkpoint and session, and
   `cont` then resumes it with nothing acknowledged lost;
4. migrate_cancel: with the link up the secondary confirms (CANCEL_OK)
   that it dropped its checkpoint before anything is released, and no hook
   runs; with the link cut at that moment the CANCEL is not confirmed, so
   the secondary is revoked through the event hook before output goes out;
5. `quit` and SIGTERM of a protected primary under load: the VMM is
   ending, not losing its secondary: the event hook is never run (it would
   mark a healthy secondary stale) and the secondary, which holds every
   checkpoint that was acknowledged, takes over with nothing lost."""
import random
import signal
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import check, main, require_kvm  # noqa: E402
from drill import REP_IP, REP_PORT, Client, Node, Topology, close_all, make_image, wait_ready  # noqa: E402

HOOK = """#!/bin/sh
echo "$FTVM_EVENT $FTVM_EPOCH" >>"$(dirname "$0")/hook.log"
exit 0
"""


def make_hook(work):
    """An event hook that logs "EVENT EPOCH" lines and succeeds: (path, log)."""
    hook = os.path.join(work, "hook.sh")
    with open(hook, "w") as f:
        f.write(HOOK)
    os.chmod(hook, 0o755)
    return hook, os.path.join(work, "hook.log")


def secondary(topo, work, tag, img, h="B", extra=()):
    """A secondary that waits for `cont` (no automatic failover)."""
    return Node(topo, h, work, tag, img, "shared", False,
                extra=["--incoming", "tcp:%s:%d" % (REP_IP[h], REP_PORT)] + list(extra))


def audit_lines(path):
    """The audit log's lines as dicts: vm, role, session, epoch, event, detail."""
    out = []
    for line in open(path).read().splitlines():
        f = line.split(" ", 5)
        out.append({"vm": f[1], "role": f[2], "session": f[3].split("=")[1],
                    "epoch": int(f[4].split("=")[1]), "event": f[5].split(" ")[0], "line": line})
    return out


def answers(client):
    return client.run("--deadline-ms", "500", "get", "k0").returncode in (0, 3)


def handover_without_ok(work):
    with Topology() as topo:
        img = make_image(os.path.join(work, "h.img"))
        client = Client(topo, work)
        client.acks = os.path.join(work, "h.acks")  # each part its own log
        nodes = []
        try:
            audit = os.path.join(work, "h.audit")
            a = Node(topo, "A", work, "h", img, "shared", False, extra=["--audit-log", audit])
            nodes.append(a)
            wait_ready(a)
            b = secondary(topo, work, "h", img, extra=["--audit-log", audit])
            nodes.append(b)
            a.protect_to("B")
            client.start_load(seconds=3600, keys=50)
            time.sleep(0.5)
            b.ctl("migrate_set_parameter", "x-inject", "handover-no-ok")
            r = a.ctl("migrate_handover", check_rc=False)
            print("handover without OK: primary answered %s" % r)
            b.wait_state(("failed-over",), 10)
            time.sleep(0.5)
            sa = a.migrate_info()
            status = a.ctl("info", "status")["status"]
            cont = a.ctl("cont", check_rc=False)
            print("old primary: state %s, guest %s; cont -> %s" % (sa["state"], status, cont))
            check("error" in r, "the handover was reported as done: %s" % r)
            check(sa["state"] == "stopped" and "not confirmed" in sa["last_error"],
                  "old primary after an unconfirmed handover: %s" % sa)
            check(status != "running", "the old primary's guest runs again (two primaries)")
            check("error" in cont, "cont restarted the old primary's guest: %s" % cont)
            check(a.ctl("info", "status")["status"] != "running", "guest running after cont")
            # The audit log names the steps: A sent HANDOVER at checkpoint E,
            # B failed over from E, in one session; A then stopped.
            log = audit_lines(audit)
            sent = [l for l in log if l["vm"] == "h-A" and l["event"] == "handover-sent"]
            fo = [l for l in log if l["vm"] == "h-B" and l["event"] == "failover"]
            print("audit: %s | %s | %d lines" % (sent[-1]["line"] if sent else "-", fo[-1]["line"] if fo else "-",
                                                 len(log)))
            check(sent and fo and sent[-1]["session"] == fo[-1]["session"] and sent[-1]["epoch"] == fo[-1]["epoch"],
                  "the audit log does not show the handover's steps: %s %s" % (sent, fo))
            check(any(l["vm"] == "h-A" and l["event"] == "stopped" for l in log), "no 'stopped' in the audit log")
            check(any(l["event"] == "committed" for l in log) and any(l["event"] == "released" for l in log),
                  "no commits or releases in the audit log")
            st, v = client.finish()
            print("verify after the handover: %d keys, %d lost; load %s" % (v["checked"], v["lost"], st))
            check(v["lost"] == 0 and v["wrong"] == 0, "acknowledged writes lost: %s" % v)
        finally:
            close_all(client, nodes)


def first_ack_lost(work):
    hook, log = make_hook(work)
    with Topology() as topo:
        img = make_image(os.path.join(work, "f.img"))
        nodes = []
        try:
            a = Node(topo, "A", work, "f", img, "shared", False, extra=["--event-hook", hook])
            nodes.append(a)
            wait_ready(a)
            b = secondary(topo, work, "f", img)
            nodes.append(b)
            a.ctl("migrate_set_parameter", "x-inject", "cut-after-commit")
            a.ctl("migrate", "-d", "-k", "tcp:%s:%d" % (REP_IP["B"], REP_PORT))
            sa = a.wait_state(("unprotected",), 20)
            sb = b.wait_state(("peer-lost", "waiting"), 10)
            events = open(log).read().split("\n") if os.path.exists(log) else []
            print("link cut after COMMIT 1: secondary %s at checkpoint %d; primary %s (%s); hook ran: %s"
                  % (sb["state"], sb["committed_epoch"], sa["state"], sa["last_error"], events[:1]))
            check(sb["committed_epoch"] == 1, "the secondary did not commit checkpoint 1: %s" % sb)
            check(any(e.startswith("peer-lost") for e in events),
                  "the primary released output without revoking a secondary that holds checkpoint 1")
            check("revoked by the event hook" in sa["last_error"], "primary: %s" % sa)
        finally:
            for n in nodes:
                n.close()


def in_ns(topo, h, script):
    return subprocess.run(topo.cmd(h, sys.executable, "-c", script), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60)


def stray_connections(work):
    target = (REP_IP["B"], REP_PORT)
    with Topology() as topo:
        img = make_image(os.path.join(work, "s.img"))
        client = Client(topo, work)
        client.acks = os.path.join(work, "s.acks")  # each part its own log
        nodes = []
        try:
            a = Node(topo, "A", work, "s", img, "shared", False)
            nodes.append(a)
            wait_ready(a)
            b = secondary(topo, work, "s", img)
            nodes.append(b)
            a.protect_to("B")
            client.start_load(seconds=3600, keys=50)
            time.sleep(0.8)
            a.kill()
            before = b.wait_state(("peer-lost",), 10)
            client.load.kill()
            print("primary killed: secondary %s at checkpoint %d, session %s"
                  % (before["state"], before["committed_epoch"], before["session"]))
            strays = {
                "garbage": "import socket; s=socket.create_connection(%r); s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'*40);"
                           "s.settimeout(3)\ntry: s.recv(100)\nexcept Exception: pass" % (target,),
                "connect-close": "import socket; socket.create_connection(%r).close()" % (target,),
                "slow-hello": "import socket,time; s=socket.create_connection(%r); s.settimeout(1)\n"
                              "for i in range(14):\n  s.sendall(b'F')\n  time.sleep(1)\n" % (target,),
            }
            for name, script in strays.items():
                t = time.monotonic()
                r = in_ns(topo, "A", script)
                st = b.migrate_info()
                print("%-14s (%.1f s): secondary %s, checkpoint %d, strays %d: %s"
                      % (name, time.monotonic() - t, st["state"], st["committed_epoch"],
                         st["stray_connections"], st["last_stray"]))
                check(st["state"] == "peer-lost" and st["committed_epoch"] == before["committed_epoch"]
                      and st["session"] == before["session"],
                      "%s changed the secondary: %s (before %s)" % (name, st, before))
            check(b.migrate_info()["stray_connections"] >= 3, "strays not counted")
            # A real primary of the same configuration: passes HELLO, is still refused.
            a2 = Node(topo, "A", work, "s2", make_image(os.path.join(work, "s2.img")), "shared", False)
            nodes.append(a2)
            wait_ready(a2)
            a2.ctl("migrate", "-d", "-k", "tcp:%s:%d" % target)
            s2 = a2.wait_state(("unprotected",), 20)
            st = b.migrate_info()
            print("another primary: refused (%s); secondary %s, checkpoint %d"
                  % (s2["last_error"], st["state"], st["committed_epoch"]))
            check("migrate_incoming_reset" in s2["last_error"], "refusal does not say how to re-arm: %s" % s2)
            check(st["state"] == "peer-lost" and st["committed_epoch"] == before["committed_epoch"]
                  and st["session"] == before["session"], "another primary replaced the checkpoint: %s" % st)
            a2.close()
            # The kept checkpoint is still the good one.
            b.ctl("cont")
            b.wait_state(("failed-over",), 10)
            v = client.verify()
            print("after cont: verify %d keys, %d lost" % (v["checked"], v["lost"]))
            check(v["lost"] == 0 and v["wrong"] == 0, "acknowledged writes lost: %s" % v)
        finally:
            close_all(client, nodes)


def quit_under_load(work, rounds=6):
    hook, log = make_hook(work)
    rnd = random.Random(5)
    with Topology() as topo:
        img = make_image(os.path.join(work, "q.img"))
        client = Client(topo, work)
        client.acks = os.path.join(work, "q.acks")
        nodes = []
        try:
            p = Node(topo, "A", work, "q0", img, "shared", False, extra=["--event-hook", hook])
            nodes.append(p)
            wait_ready(p)
            for i in range(rounds):
                s = Node(topo, "B" if p.h == "A" else "A", work, "q%d" % (i + 1), img, "shared", True,
                         extra=["--event-hook", hook])
                nodes.append(s)
                p.protect_to(s.h)
                if os.path.exists(log):
                    os.unlink(log)
                client.start_load(seconds=3600, keys=50, seed=i + 1)
                time.sleep(rnd.uniform(0.2, 0.6))
                how = "quit" if i % 2 == 0 else "SIGTERM"
                if how == "quit":
                    p.ctl("quit", check_rc=False)
                else:
                    p.proc.send_signal(signal.SIGTERM)
                rc = p.proc.wait(20)
                fo = s.wait_state(("failed-over",), 10)
                events = open(log).read().split() if os.path.exists(log) else []
                print("%-7s under load: exit %d, hook events %s; secondary took over from checkpoint %d"
                      % (how, rc, events, fo["committed_epoch"]))
                check("peer-lost" not in events, "%s ran the peer-lost hook (a healthy secondary "
                      "would be marked stale)" % how)
                st, v = client.finish()
                check(v["lost"] == 0, "lost after %s: %s" % (how, v))
                p = s
        finally:
            close_all(client, nodes)


def cancel(work):
    hook, log = make_hook(work)
    with Topology() as topo:
        img = make_image(os.path.join(work, "c.img"))
        client = Client(topo, work)
        client.acks = os.path.join(work, "c.acks")  # each part its own log
        nodes = []
        try:
            a = Node(topo, "A", work, "c", img, "shared", False, extra=["--event-hook", hook])
            nodes.append(a)
            wait_ready(a)
            for label, cut in (("confirmed", False), ("link cut", True)):
                if os.path.exists(log):
                    os.unlink(log)
                b = secondary(topo, work, "c-" + label.replace(" ", ""), img)
                nodes.append(b)
                a.protect_to("B")
                client.run("put", "k0", label)
                if cut:
                    topo.cut_replication("A")
                t = time.monotonic()
                a.ctl("migrate_cancel")
                sa = a.wait_state(("unprotected",), 15)
                took = time.monotonic() - t
                events = open(log).read().split() if os.path.exists(log) else []
                sb = b.migrate_info()
                print("cancel, %-9s: %.2f s, primary %s (%s); hook %s; secondary %s, checkpoint %d"
                      % (label, took, sa["state"], sa["last_error"], events, sb["state"], sb["committed_epoch"]))
                if cut:
                    check("did not confirm" in sa["last_error"] and "peer-lost" in events,
                          "an unconfirmed CANCEL released output without revoking the secondary: %s %s"
                          % (sa, events))
                    topo.ip("A", "link", "set", "repA", "up")
                else:
                    check(sa["last_error"] == "protection cancelled (migrate_cancel)" and not events,
                          "a confirmed cancel: %s, hook %s" % (sa, events))
                    check(sb["state"] == "waiting" and sb["committed_epoch"] == 0,
                          "the secondary kept a checkpoint after CANCEL_OK: %s" % sb)
                check(answers(client), "the guest does not answer after the cancel")
                b.close()
        finally:
            close_all(client, nodes)


def test(work):
    require_kvm()
    cancel(work)
    quit_under_load(work)
    handover_without_ok(work)
    first_ack_lost(work)
    stray_connections(work)


main(test)
