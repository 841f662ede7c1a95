#!/usr/bin/env python3
"""The peer-lost event hook (--event-hook): when the primary loses a
secondary that holds a committed checkpoint, it holds all output until the
hook exits 0 (the cluster agent uses it to make the lost secondary
unpromotable before anything it does not have reaches a client).

- while the hook fails, the primary is `revoking-peer`, the guest's answers
  stay held and the hook is retried; its environment names the event, the
  lost peer, the protection session (the one the secondary reported) and
  the last acknowledged checkpoint;
- once it exits 0 the output goes out, the primary is `unprotected`, and
  nothing acknowledged is lost;
- a hook that hangs is killed at event-hook-timeout-ms and retried;
  `migrate_cancel` ends the wait (operator's decision);
- a fatal disk error (EIO, injected with x-disk-fault) runs the hook with
  FTVM_EVENT=io-error;
- a hook that exits 3 says the lost secondary took over (ftvmd's arbiter
  decided so): the primary stops its guest for good (`stopped`), releases
  nothing it held, and refuses `cont`;
- the secondary reports committed_age_ms; --pidfile holds the pid and is
  removed at exit."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import FTVMCTL, Failure, check, main, require_kvm  # noqa: E402
from drill import Client, Node, Topology, close_all, make_image, wait_ready  # noqa: E402

HOOK = r"""#!/bin/sh
d=$(dirname "$0")
echo "event=$FTVM_EVENT peer=$FTVM_PEER session=$FTVM_SESSION epoch=$FTVM_EPOCH vm=$FTVM_VM" >>"$d/hook.log"
printf '%s\n' "$FTVM_DETAIL" >"$d/detail.$FTVM_EVENT"
[ -e "$d/hang" ] && exec sleep 60
[ -e "$d/allow" ] && exit 0
[ -e "$d/superseded" ] && exit 3
exit 1
"""


def hook_lines(work):
    try:
        with open(os.path.join(work, "hook.log")) as f:
            return [dict(kv.split("=", 1) for kv in l.split()) for l in f.read().splitlines() if l]
    except FileNotFoundError:
        return []


def answers(client):
    r = client.run("--timeout-ms", "50", "--max-timeout-ms", "50", "--deadline-ms", "200", "time", timeout=10)
    return r.returncode == 0


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise Failure("timed out waiting for " + what)


def test(work):
    require_kvm()
    hook = os.path.join(work, "hook.sh")
    with open(hook, "w") as f:
        f.write(HOOK)
    os.chmod(hook, 0o755)
    pidfile = os.path.join(work, "a.pid")
    with Topology() as topo:
        img = make_image(os.path.join(work, "shared.img"))
        client = Client(topo, work)
        nodes = []
        try:
            a = Node(topo, "A", work, "g0", img, "shared", False,
                     extra=("--event-hook", hook, "--pidfile", pidfile))
            nodes.append(a)
            wait_ready(a)
            with open(pidfile) as f:
                check(int(f.read()) == a.proc.pid, "--pidfile does not hold the VMM's pid")
            b = Node(topo, "B", work, "g0", img, "shared", True)
            nodes.append(b)
            a.protect_to("B")
            client.start_load(seconds=3600, keys=100)
            time.sleep(0.8)
            sb = b.migrate_info()
            sa = a.migrate_info()
            check(sb["session"] and sb["session"] == sa["session"],
                  "primary and secondary disagree on the session: %s / %s" % (sa["session"], sb["session"]))
            check(0 < sb["committed_epoch"] and sb["committed_age_ms"] < 5000,
                  "secondary: committed_epoch %d, committed_age_ms %d" % (sb["committed_epoch"], sb["committed_age_ms"]))
            print("protected: session %s, secondary at checkpoint %d, %d ms old"
                  % (sb["session"], sb["committed_epoch"], sb["committed_age_ms"]))

            # 1. The hook fails: output stays held, the hook is retried.
            t = time.monotonic()
            b.kill()
            st = a.wait_state(("revoking-peer",), 5)
            wait_for(lambda: len(hook_lines(work)) >= 2, 10, "a second hook attempt")
            st = a.migrate_info()
            check(st["state"] == "revoking-peer", "primary left revoking-peer while the hook fails: %s" % st)
            check(not answers(client), "the guest answered while the lost secondary was not revoked")
            check(st["held_outputs"] > 0, "nothing held while revoking: %s" % st)
            h = hook_lines(work)[0]
            check(h["event"] == "peer-lost" and h["session"] == sb["session"] and int(h["epoch"]) > 0
                  and h["peer"].startswith("10.99.0.2:") and h["vm"] == "g0-A",
                  "hook environment: %s" % h)
            print("secondary killed: %d hook attempts in %.1f s, guest held (%d outputs); last_error: %s"
                  % (len(hook_lines(work)), time.monotonic() - t, st["held_outputs"], st["last_error"]))

            # 2. The hook succeeds: output goes out, nothing lost.
            open(os.path.join(work, "allow"), "w").close()
            t = time.monotonic()
            st = a.wait_state(("unprotected",), 5)
            back = wait_for(lambda: answers(client) and time.monotonic() - t, 5, "answers after revocation")
            check(st["held_outputs"] == 0 and st["revoke_ms"] >= 1000 and "revoked" in st["last_error"],
                  "after revocation: %s" % st)
            print("hook succeeded: unprotected, answering %.0f ms later; revoke_ms %d"
                  % (back * 1000, st["revoke_ms"]))

            # 3. A hook that hangs is killed and retried; migrate_cancel ends the wait.
            os.unlink(os.path.join(work, "allow"))
            b2 = Node(topo, "B", work, "g1", img, "shared", True)
            nodes.append(b2)
            a.protect_to("B")
            a.ctl("migrate_set_parameter", "event-hook-timeout-ms", "300")
            open(os.path.join(work, "hang"), "w").close()
            time.sleep(0.5)
            n0 = len(hook_lines(work))
            b2.kill()
            a.wait_state(("revoking-peer",), 5)
            wait_for(lambda: "did not finish in 300 ms" in a.migrate_info()["last_error"], 5,
                     "the hung hook's timeout")
            wait_for(lambda: len(hook_lines(work)) >= n0 + 2, 5, "a retry after the timeout")
            check(not answers(client), "the guest answered while the hook hung")
            t = time.monotonic()
            a.ctl("migrate_cancel")
            back = wait_for(lambda: answers(client) and time.monotonic() - t, 5, "answers after migrate_cancel")
            st = a.migrate_info()
            check(st["state"] == "unprotected" and st["held_outputs"] == 0, "after migrate_cancel: %s" % st)
            print("hung hook: killed after 300 ms and retried; migrate_cancel released output in %.0f ms"
                  % (back * 1000))

            s, v = client.finish()
            print("verify: %d keys, %d lost" % (v["checked"], v["lost"]))

            # 4. A fatal disk error is reported through the hook ("io-error").
            a.ctl("x-disk-fault", "eio", "1")
            r = client.run("--deadline-ms", "3000", "put", "io-error-key", "v")
            wait_for(lambda: any(h["event"] == "io-error" for h in hook_lines(work)), 5, "the io-error report")
            with open(os.path.join(work, "detail.io-error")) as f:
                detail = f.read().strip()
            check("Input/output error" in detail, "io-error detail: %r" % detail)
            print("disk write failed with EIO (client PUT exit %d): hook ran with FTVM_EVENT=io-error (%s)"
                  % (r.returncode, detail))
            a.ctl("quit")
            a.proc.wait(10)
            check(not os.path.exists(pidfile), "--pidfile left behind after exit")

            # 5. The hook says the lost secondary took over (exit 3).
            os.unlink(os.path.join(work, "hang"))
            open(os.path.join(work, "superseded"), "w").close()
            a2 = Node(topo, "A", work, "g2", img, "shared", False, extra=("--event-hook", hook))
            nodes.append(a2)
            wait_ready(a2)
            b3 = Node(topo, "B", work, "g3", img, "shared", False, extra=["--incoming", "tcp:10.99.0.2:4444"])
            nodes.append(b3)
            a2.protect_to("B")
            check(answers(client), "the new primary does not answer")
            b3.kill()
            st = a2.wait_state(("stopped",), 10)
            check("took over" in st["last_error"], "stopped, but why: %s" % st["last_error"])
            time.sleep(0.3)
            check(not answers(client), "a primary whose secondary took over answered")
            r = subprocess.run([FTVMCTL, a2.sock, "--json", "cont"], stdout=subprocess.PIPE, text=True, timeout=20)
            check(r.returncode == 1 and "must not run" in r.stdout, "cont after a takeover: %d %s" % (r.returncode, r.stdout))
            check(not answers(client), "the guest answered after cont")
            print("hook exit 3 (the secondary took over): primary stopped for good (%s); cont refused"
                  % st["last_error"][-80:])
        finally:
            close_all(client, nodes)


main(test)
