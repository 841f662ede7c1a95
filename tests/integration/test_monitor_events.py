#!/usr/bin/env python3
"""The monitor's asynchronous events (docs/monitor.md, "Events") and the
ftvmctl modes built on them, on a real primary/secondary pair:

- `ftvmctl --events` on both sides: the primary reports setup -> syncing ->
  protected as STATE events, stop/cont as STOP/RESUME; the secondary
  reports receiving, then, when the primary is killed, receiving ->
  peer-lost (STATE) and PEER_LOST, then FAILOVER and failed-over after
  `cont`. Every event line is one JSON object with event, data, timestamp.
- `ftvmctl --events --until peer-lost` returns (exit 0) as the state is
  reached; `--until` with a state that does not come exits 2 at its
  timeout; an unknown state name is a usage error (the state table).
- `ftvmctl --shell info migrate` is eval-safe: a value holding quotes,
  $() and a newline comes back byte for byte through sh's eval.
- `events` in text mode is refused with a clear error; events never reach
  a client that did not ask for them (its answers stay in step).
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import FTVMCTL, Failure, check, main, require_kvm  # noqa: E402
from drill import Node, Topology, close_all, make_image, wait_ready  # noqa: E402


class Follower:
    """ftvmctl SOCK --events, its lines collected."""

    def __init__(self, sock):
        self.p = subprocess.Popen([FTVMCTL, sock, "--events"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(json.loads(line))

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.lines:
                if pred(e):
                    return e
            time.sleep(0.01)
        raise Failure("no event %s in %.0f s; got %s" % (what, timeout, [(e["event"], e["data"].get("state"))
                                                                       for e in self.lines]))

    def states(self):
        return [e["data"]["state"] for e in self.lines if e["event"] in ("STATE", "SNAPSHOT")]

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
        self.p.wait(10)


def is_event(name, state=None):
    return lambda e: e["event"] == name and (state is None or e["data"].get("state") == state)


def raw_monitor(sock, lines):
    """Sends lines on a fresh connection; returns everything read until quiet."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(sock)
    s.sendall("".join(l + "\n" for l in lines).encode())
    buf = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
            if buf.count(b"\n") >= len(lines) + 1 and (buf.endswith(b"(ftvm) ") or buf.endswith(b"}\n")):
                time.sleep(0.2)
                s.settimeout(0.2)
    except socket.timeout:
        pass
    s.close()
    return buf.decode(errors="replace")


def test(work):
    require_kvm()
    with Topology() as topo:
        img = make_image(os.path.join(work, "shared.img"))
        nodes = []
        fa = fb = None
        try:
            a = Node(topo, "A", work, "g0", img, "shared", False)
            nodes.append(a)
            wait_ready(a)
            # an event hook (a primary's; never run here) whose text is hostile to a shell
            nasty = "/bin/true 'it''s' \"$(touch %s/pwned)\" `x` \\ ; end" % work
            b = Node(topo, "B", work, "g0", img, "shared", False,
                     extra=["--incoming", "tcp:10.99.0.2:4444", "--event-hook", nasty])
            nodes.append(b)
            fa, fb = Follower(a.sock), Follower(b.sock)
            fa.wait(is_event("SNAPSHOT"), 5, "SNAPSHOT on the primary")
            fb.wait(is_event("SNAPSHOT", "waiting"), 5, "SNAPSHOT waiting on the secondary")

            # a client that did not ask for events gets only its answers
            plain = raw_monitor(a.sock, ["json", "info status", "info status"])
            check('"event"' not in plain, "events reached a client that did not ask: %r" % plain)
            text = raw_monitor(a.sock, ["events"])
            check("error: events are JSON lines" in text, "events in text mode: %r" % text)

            a.protect_to("B")
            for st in ("setup", "syncing", "protected"):
                e = fa.wait(is_event("STATE", st), 30, "STATE %s on the primary" % st)
                check(e["data"]["role"] == "primary" and "from" in e["data"], "STATE event: %s" % e)
            e = fb.wait(is_event("STATE", "receiving"), 10, "STATE receiving on the secondary")
            check(e["data"]["from"] == "waiting" and len(e["data"]["session"]) == 16, "secondary STATE: %s" % e)
            for e in fa.lines + fb.lines:
                check(set(e) >= {"event", "data"} and (e["event"] == "SNAPSHOT" or
                      set(e["timestamp"]) == {"seconds", "microseconds"}), "event line shape: %s" % e)
            a.ctl("stop")
            a.ctl("cont")
            fa.wait(is_event("STOP"), 5, "STOP")
            fa.wait(is_event("RESUME"), 5, "RESUME")
            print("primary's events: %s" % [(e["event"], e["data"].get("state")) for e in fa.lines])

            # --shell: eval-safe, byte for byte
            r = subprocess.run(["sh", "-c", 'eval "$("$1" "$2" --shell info migrate)" || exit 9; '
                                'printf "%s|%s|%s" "$FTVM_STATE" "$FTVM_ROLE" "$FTVM_EVENT_HOOK"',
                                "sh", FTVMCTL, b.sock], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=20)
            check(r.returncode == 0, "eval of --shell: %d %s" % (r.returncode, r.stderr))
            check(r.stdout == "receiving|secondary|" + nasty, "--shell round trip: %r vs %r" % (r.stdout, nasty))
            check(not os.path.exists(os.path.join(work, "pwned")), "--shell output ran a command")
            r = subprocess.run([FTVMCTL, b.sock, "--shell=VM_", "info", "migrate"], stdout=subprocess.PIPE,
                               text=True, timeout=20)
            check("VM_COMMITTED_EPOCH='" in r.stdout and "VM_STATE='receiving'" in r.stdout,
                  "--shell=VM_: %s" % r.stdout[:300])

            # --until: a usage error for a name not in the table, a timeout
            r = subprocess.run([FTVMCTL, b.sock, "--events", "--until", "peer-lots"], stderr=subprocess.PIPE,
                               text=True, timeout=10)
            check(r.returncode == 2 and "ftvmctl --states" in r.stderr, "--until typo: %d %s" % (r.returncode, r.stderr))
            t = time.monotonic()
            r = subprocess.run([FTVMCTL, b.sock, "--events", "--until", "failed-over", "--timeout", "0.5"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=10)
            check(r.returncode == 2 and time.monotonic() - t < 5, "--until timeout: %d %s" % (r.returncode, r.stderr))

            # the primary dies: the secondary says so, at once, as events
            until = subprocess.Popen([FTVMCTL, b.sock, "--events", "--until", "peer-lost,failed",
                                      "--timeout", "20"], stdout=subprocess.PIPE, text=True)
            time.sleep(0.3)
            t = time.monotonic()
            a.kill()
            out, _ = until.communicate(timeout=30)
            took = time.monotonic() - t
            check(until.returncode == 0, "--until peer-lost: exit %d, %s" % (until.returncode, out))
            last = json.loads(out.splitlines()[-1])
            check(last["data"]["state"] == "peer-lost", "--until ended on %s" % last)
            e = fb.wait(is_event("PEER_LOST"), 5, "PEER_LOST")
            check(e["data"]["epoch"] > 0 and e["data"]["role"] == "secondary", "PEER_LOST: %s" % e)
            print("secondary: peer-lost %.0f ms after the kill (--until returned)" % (took * 1000))
            b.ctl("cont")
            e = fb.wait(is_event("FAILOVER"), 10, "FAILOVER")
            check(e["data"]["checkpoint"] > 0 and e["data"]["why"] == "cont" and e["data"]["running"] is True,
                  "FAILOVER: %s" % e)
            fb.wait(is_event("STATE", "failed-over"), 5, "STATE failed-over")
            print("secondary's events: %s" % [(e["event"], e["data"].get("state")) for e in fb.lines])
            # the follower of a VMM that ends exits 0
            b.ctl("quit", check_rc=False)
            fb.p.wait(20)
            check(fb.p.returncode == 0, "--events after the VMM ended: exit %d" % fb.p.returncode)
        finally:
            for f in (fa, fb):
                if f:
                    f.stop()
            close_all(None, nodes)


main(test)
