#!/usr/bin/env python3
"""A disk that fills up or fails under protection never costs an
acknowledged write.

- Disk full (shared mode, the image on a 1 MiB tmpfs, one PUT per new
  key): protected, the guest sees the full disk when it writes, as it does
  unprotected (its PUT answers ERR); no PUT that was acknowledged is
  missing when the image is booted alone afterwards. (Before the fix the
  guest's write was "done" when held, failed at release, and its OK went
  out anyway: 1,153 of 3,200 acknowledged PUTs were lost.)
- EIO at release on the primary (x-disk-fault, shared mode): the frame
  that reports the write is never sent by the primary; the primary hands
  the guest over to the secondary, which re-issues the write and runs on;
  the primary's guest never runs again. Every acknowledged write is on
  the image booted alone afterwards.
- A flush that fails at release on a replicated primary (x-disk-fault
  eio-flush): the reply may already be out (the primary flushes its own
  image after the frames, the secondary's image had the write flushed
  before its ACK), so the primary hands over; the write is on the
  secondary's image, booted alone afterwards.
- The same flush failing in the event tap's flusher thread (shared mode,
  `async-release always`): the write was issued, the reply waits for the
  flush and is never sent by the primary; the primary hands over and the
  secondary re-issues write and reply.
- Disk full on a replicated secondary: the checkpoint is refused before
  it changes anything (its disk space is reserved first); the primary
  goes on unprotected and nothing acknowledged is lost.
- EIO while a replicated secondary applies a checkpoint: the secondary is
  marked unusable (it says why) and `cont` there is refused: its disk is
  between two checkpoints (before the fix its memory had been written
  first and `cont` resumed it); the primary goes on unprotected."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import check, main, require_kvm, sh  # noqa: E402
from drill import Client, Node, Topology, close_all, wait_ready  # noqa: E402


class SmallFs:
    """A tmpfs of `size` mounted on a fresh directory (a disk that fills up)."""

    def __init__(self, path, size="1m"):
        os.makedirs(path, exist_ok=True)
        sh("mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", path)
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        subprocess.run(["umount", "-l", self.path], stderr=subprocess.DEVNULL)


def sparse(path, mb=16):
    with open(path, "wb") as f:
        f.truncate(mb << 20)
    return path


def load_new_keys(client, ops, acks, tag):
    """PUTs only, keys drawn from a pool far larger than ops (nearly every
    PUT a new key, a new log record). Returns the load's JSON summary."""
    r = client.run("--deadline-ms", "5000", "--json", "load", "--ops", str(ops), "--keys", "1000000",
                   "--read-ratio", "0", "--seed", "7", "--key-prefix", tag, "--ack-log", acks,
                   timeout=600)
    lines = [l for l in r.stdout.splitlines() if l.strip().startswith("{")]
    check(lines, "load printed nothing: %s %s" % (r.stdout[-300:], r.stderr[-300:]))
    return json.loads(lines[-1])


def verify_alone(topo, work, img, client, acks, tag):
    """Boots the image with no protection and checks every acknowledged PUT."""
    n = Node(topo, "A", work, "alone-" + tag, img, "shared", False)
    try:
        wait_ready(n)
        client.acks = acks
        v = client.verify()
        print("%-10s image booted alone: %s" % (tag, v))
        check(v["lost"] == 0 and v["wrong"] == 0, "%s: acknowledged writes lost: %s" % (tag, v))
        return v
    finally:
        n.close()


def disk_full(work):
    with Topology() as topo, SmallFs(os.path.join(work, "full")) as fs:
        img = sparse(os.path.join(fs.path, "shared.img"))
        client = Client(topo, work)
        acks = os.path.join(work, "full.acks")
        nodes = []
        try:
            a = Node(topo, "A", work, "full", img, "shared", False)
            nodes.append(a)
            wait_ready(a)
            b = Node(topo, "B", work, "full", img, "shared", True)
            nodes.append(b)
            a.protect_to("B")
            s = load_new_keys(client, 3200, acks, "f")
            st = a.migrate_info()
            print("disk full  protected load: %d PUTs acknowledged, %d refused (ERR), %d gave up; "
                  "primary %s, epochs %d" % (s["puts_acked"], s["puts_failed"], s.get("puts_gave_up", 0),
                                             st["state"], st["epochs"]))
        finally:
            close_all(client, nodes)
        verify_alone(topo, work, img, client, acks, "full")
        check(s["puts_failed"] > 0, "the guest never saw the disk full (its writes were all "
              "'done'): %s" % s)
        check(s["puts_acked"] > 100, "too few PUTs acknowledged: %s" % s)
        check(st["state"] == "protected", "protection ended on a full disk: %s" % st)


def fault_at_release(work, tag, mode, fault, async_release=None):
    """The primary's disk fails at release (fault: x-disk-fault's kind).
    Shared, EIO on the write: the frame reporting it is never sent by the
    primary. Replicated, EIO on the flush: the reply may be out already
    (the frames go before the primary's own flush; the secondary's image
    had the write, flushed, before its ACK). Either way the primary hands
    the guest over, the secondary runs on, and every acknowledged write is
    on the image the secondary keeps."""
    with Topology() as topo:
        img = sparse(os.path.join(work, tag + "-a.img"), 64)
        simg = img if mode == "shared" else sparse(os.path.join(work, tag + "-b.img"), 64)
        client = Client(topo, work)
        acks = os.path.join(work, tag + ".acks")
        nodes = []
        try:
            a = Node(topo, "A", work, tag, img, mode, False)
            nodes.append(a)
            wait_ready(a)
            b = Node(topo, "B", work, tag, simg, mode, True)
            nodes.append(b)
            a.protect_to("B")
            if async_release:
                a.ctl("migrate_set_parameter", "async-release", async_release)
            client.acks = acks
            s = load_new_keys(client, 50, acks, tag[0])
            check(s["puts_acked"] == 50, "load before the fault: %s" % s)
            a.ctl("x-disk-fault", fault, "1")
            r = client.run("--deadline-ms", "10000", "put", "after-" + tag, "1")
            print("%-10s PUT after the fault: rc %d %s" % (tag, r.returncode, r.stdout.strip()))
            with open(acks, "a") as f:
                if r.returncode == 0:
                    f.write("PUT after-%s 1\n" % tag)
            sb = b.wait_state(("failed-over",), 20)
            deadline = time.monotonic() + 10
            while a.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            err = a.errors()
            print("%-10s primary: %s" % (tag, [l for l in err.splitlines() if "handing" in l or "handed" in l]))
            print("%-10s secondary: %s from checkpoint %d, re-issued %d frames %d writes"
                  % (tag, sb["state"], sb["committed_epoch"], sb["reissued_frames"], sb["reissued_writes"]))
            check(not a.alive(), "the primary still runs after handing the guest over")
            check("handed over" in err, "the primary did not hand over: %s" % err[-800:])
            check(r.returncode == 0, "the PUT was not acknowledged: %s" % r.stderr)
            if async_release:
                check(sb["reissued_writes"] > 0, "the secondary re-issued no write: %s" % sb)
            client.acks = acks
            v = client.verify()
            print("%-10s on the secondary: %s" % (tag, v))
            check(v["lost"] == 0 and v["wrong"] == 0, "lost on the secondary: %s" % v)
        finally:
            close_all(client, nodes)
        verify_alone(topo, work, simg, client, acks, tag)


def replicated_secondary_full(work):
    with Topology() as topo, SmallFs(os.path.join(work, "rfull"), "2m") as fs:
        pimg = sparse(os.path.join(work, "rprimary.img"), 16)
        simg = sparse(os.path.join(fs.path, "rsecondary.img"), 16)
        client = Client(topo, work)
        acks = os.path.join(work, "rfull.acks")
        nodes = []
        try:
            a = Node(topo, "A", work, "rfull", pimg, "replicated", False)
            nodes.append(a)
            wait_ready(a)
            b = Node(topo, "B", work, "rfull", simg, "replicated", True,
                     extra=[])
            nodes.append(b)
            a.protect_to("B")
            s = load_new_keys(client, 6000, acks, "r")
            sa, sb = a.migrate_info(), b.migrate_info()
            print("repl full  load: %d acknowledged, %d ERR; primary %s (%s); secondary %s, committed %d (%s)"
                  % (s["puts_acked"], s["puts_failed"], sa["state"], sa["last_error"], sb["state"],
                     sb["committed_epoch"], sb["last_error"]))
            check(s["puts_failed"] == 0 and s["puts_acked"] == 6000, "the primary's disk is not full: %s" % s)
            check(sa["state"] == "unprotected", "the primary was not told: %s" % sa)
            check("reserving disk space" in sb["last_error"] and "No space" in sb["last_error"],
                  "the secondary did not name the full disk: %s" % sb["last_error"])
            check(sb["unusable"] == "", "a refused checkpoint made the secondary unusable: %s" % sb)
            client.acks = acks
            v = client.verify()
            check(v["lost"] == 0 and v["wrong"] == 0, "lost on the primary: %s" % v)
        finally:
            close_all(client, nodes)


def replicated_secondary_eio(work):
    with Topology() as topo:
        pimg = sparse(os.path.join(work, "eprimary.img"), 16)
        simg = sparse(os.path.join(work, "esecondary.img"), 16)
        client = Client(topo, work)
        client.acks = os.path.join(work, "reio.acks")
        nodes = []
        try:
            a = Node(topo, "A", work, "reio", pimg, "replicated", False)
            nodes.append(a)
            wait_ready(a)
            b = Node(topo, "B", work, "reio", simg, "replicated", False,
                     extra=["--incoming", "tcp:10.99.0.2:4444"])
            nodes.append(b)
            a.protect_to("B")
            s = load_new_keys(client, 100, client.acks, "x")
            check(s["puts_acked"] == 100, "load before the fault: %s" % s)
            b.ctl("x-disk-fault", "eio", "1")
            r = client.run("--deadline-ms", "10000", "put", "after-eio", "1")
            sb = b.wait_state(("failed",), 10)
            sa = a.wait_state(("unprotected",), 10)
            cont = b.ctl("cont", check_rc=False)
            print("repl eio   secondary %s, committed %d, unusable: %s; cont -> %s; primary %s; PUT rc %d"
                  % (sb["state"], sb["committed_epoch"], sb["unusable"], cont, sa["state"], r.returncode))
            check("writing its disk blocks" in sb["unusable"] and "Input/output error" in sb["unusable"],
                  "the secondary does not say why it is unusable: %s" % sb)
            check("error" in cont and "cannot fail over" in cont["error"]["desc"],
                  "cont resumed a secondary between two checkpoints: %s" % cont)
            check(b.ctl("info", "status")["status"] != "running", "the unusable secondary runs the guest")
            v = client.verify()
            check(v["lost"] == 0 and v["wrong"] == 0, "lost on the primary: %s" % v)
        finally:
            close_all(client, nodes)


def test(work):
    require_kvm()
    if os.geteuid() != 0:
        from ftvmtest import skip
        skip("mounting a tmpfs needs root")
    disk_full(work)
    fault_at_release(work, "eio", "shared", "eio")
    fault_at_release(work, "rflush", "replicated", "eio-flush")
    # Shared, the flush in the event tap's flusher thread (async-release
    # always): it fails after the write was issued, so the reply is never
    # sent here; the secondary's checkpoint still holds write and reply.
    fault_at_release(work, "aflush", "shared", "eio-flush", async_release="always")
    replicated_secondary_full(work)
    replicated_secondary_eio(work)


main(test)
