#!/usr/bin/env python3
"""Who may use the monitor, and what no one may do with it.

1. The socket is mode 0600 whatever the umask (ftvm is started with umask
   000 here).
2. A client of another uid is refused by its credentials (SO_PEERCRED) even
   when the socket's mode would let it in (chmod 0666): it reads "not
   yours" and the connection closes; the VMM logs the uid.
3. `--monitor unix:PATH,group=NAME`: mode 0660, that group; a client of
   that group is served, one of another uid and group is not.
4. A client that sends commands and never reads its answers is dropped;
   meanwhile another client is answered.
5. `migrate_set_parameter event-hook CMD` is refused (the hook runs a
   command as the VMM's user: it is set only with --event-hook).
6. `savevm` does not replace an existing file unless -f, and never writes
   through a link planted at FILE.tmp.
7. Without --test-mode the test-only commands do not exist (x-ram-crc,
   x-disk-fault), x-inject and x-outputs-chunk are refused, and a --x-*
   flag stops ftvm at start."""
import grp
import os
import socket
import stat
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import FTVM, FTVMCTL, GUEST, check, main, require_kvm  # noqa: E402

NOBODY = 65534


def start(work, name, monitor_spec):
    err = open(os.path.join(work, name + ".stderr"), "w")
    p = subprocess.Popen([FTVM, "--name", name, "--memory", "128M", "--kernel", GUEST,
                          "--append", "workload=dirty pages=16 rate=10",
                          "--serial", "file:" + os.path.join(work, name + ".serial"),
                          "--monitor", monitor_spec],
                         stdout=subprocess.DEVNULL, stderr=err, preexec_fn=lambda: os.umask(0))
    sock = monitor_spec[5:].split(",")[0]
    for _ in range(500):
        if os.path.exists(sock):
            break
        time.sleep(0.01)
    return p, sock, err.name


def connect_as(sock, uid, gid, line=b"info status\n"):
    """What a client of uid/gid reads after sending line (or the error)."""
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(%r)\nexcept OSError as e:\n print('connect:',e.strerror);sys.exit()\n"
            "s.settimeout(3)\nd=b''\ntry:\n d=s.recv(4096)\n s.sendall(%r)\n time.sleep(0.3)\n"
            " while True:\n  x=s.recv(4096)\n  if not x: break\n  d+=x\n  if b'status' in d: break\n"
            "except Exception:\n pass\nprint(repr(d))\n" % (sock, line))
    code = "import time\n" + code
    r = subprocess.run(["/usr/bin/python3", "-c", code], user=uid, group=gid, extra_groups=[],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    return (r.stdout + r.stderr).strip()


def ctl(sock, *words):
    return subprocess.run([FTVMCTL, sock, "--json"] + list(words), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=30)


def test(work):
    require_kvm()
    os.chmod(work, 0o755)	# the test's other users must reach the sockets
    procs = []
    try:
        p, sock, errf = start(work, "a", "unix:%s/a.mon" % work)
        procs.append(p)
        mode = stat.S_IMODE(os.stat(sock).st_mode)
        print("socket mode under umask 000: %04o" % mode)
        check(mode == 0o600, "monitor socket mode %04o, not 0600" % mode)

        # 2: another uid, through a socket opened wide by hand.
        os.chmod(sock, 0o666)
        got = connect_as(sock, NOBODY, NOBODY)
        log = open(errf).read()
        print("uid %d on a 0666 socket: %s; VMM: %s" % (NOBODY, got, [l for l in log.splitlines() if "refused" in l]))
        check("not yours" in got and "status" not in got, "another uid was served: %s" % got)
        check("refused a client of uid %d" % NOBODY in log, "the VMM did not log the refusal")
        check(ctl(sock, "info", "status").returncode == 0, "the owner is not served")

        # 3: a group.
        g = grp.getgrgid(NOBODY).gr_name
        p2, sock2, _ = start(work, "b", "unix:%s/b.mon,group=%s" % (work, g))
        procs.append(p2)
        st = os.stat(sock2)
        print("group=%s: mode %04o gid %d" % (g, stat.S_IMODE(st.st_mode), st.st_gid))
        check(stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == NOBODY, "group socket: %04o gid %d"
              % (stat.S_IMODE(st.st_mode), st.st_gid))
        got = connect_as(sock2, NOBODY, NOBODY)
        print("a member of %s: %s" % (g, got[:80]))
        check("running" in got, "the group's member was not served: %s" % got)
        os.chmod(sock2, 0o666)
        got = connect_as(sock2, NOBODY - 1, NOBODY - 1)
        print("uid %d, another group: %s" % (NOBODY - 1, got))
        check("not yours" in got, "a non-member was served: %s" % got)

        # 4: a client that never reads.
        hog = socket.socket(socket.AF_UNIX)
        hog.connect(sock)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stop = threading.Event()

        def flood():
            try:
                while not stop.is_set():
                    hog.sendall(b"help\n" * 100)
            except OSError:
                pass
        t = threading.Thread(target=flood, daemon=True)
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        r = ctl(sock, "info", "status")
        took = time.monotonic() - t0
        time.sleep(2.5)
        stop.set()
        log = open(errf).read()
        print("with a client that never reads: another answered in %.2f s (rc %d); dropped: %s"
              % (took, r.returncode, "did not read its answer" in log))
        check(r.returncode == 0 and took < 4.0, "the monitor stalled behind a client that does not read")
        check("did not read its answer" in log, "the stuck client was not dropped")
        hog.close()

        # 5: the event hook.
        r = ctl(sock, "migrate_set_parameter", "event-hook", "/tmp/pwned.sh")
        print("migrate_set_parameter event-hook: %s" % (r.stdout.strip() or r.stderr.strip()))
        check(r.returncode != 0 and "--event-hook" in r.stdout + r.stderr, "event-hook was accepted")

        # 6: savevm.
        snap = os.path.join(work, "s.snap")
        with open(snap, "w") as f:
            f.write("keep me")
        r = ctl(sock, "savevm", snap)
        print("savevm over an existing file: %s" % r.stdout.strip()[:120])
        check(r.returncode != 0 and "exists" in r.stdout and open(snap).read() == "keep me",
              "savevm replaced an existing file without -f")
        r = ctl(sock, "savevm", "-f", snap)
        check(r.returncode == 0 and os.path.getsize(snap) > 4096, "savevm -f: %s" % r.stdout)
        victim = os.path.join(work, "victim")
        with open(victim, "w") as f:
            f.write("victim")
        os.symlink(victim, os.path.join(work, "t.snap.tmp"))
        r = ctl(sock, "savevm", os.path.join(work, "t.snap"))
        print("savevm with a link planted at FILE.tmp: %s" % r.stdout.strip()[:140])
        check(r.returncode != 0 and open(victim).read() == "victim", "savevm wrote through a planted link")

        # 7: test-only things, without --test-mode (this VMM has none).
        r = ctl(sock, "x-ram-crc", os.path.join(work, "crc"))
        print("x-ram-crc: %s" % r.stdout.strip()[:100])
        check(r.returncode != 0 and "CommandNotFound" in r.stdout, "x-ram-crc exists without --test-mode")
        r = ctl(sock, "migrate_set_parameter", "x-inject", "die-after-commit")
        print("x-inject: %s" % r.stdout.strip()[:120])
        check(r.returncode != 0 and "--test-mode" in r.stdout, "x-inject accepted without --test-mode")
        r = subprocess.run([FTVM, "--kernel", GUEST, "--x-tsc-khz", "1000"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        print("ftvm --x-tsc-khz 1000: rc %d: %s" % (r.returncode, r.stderr.strip().splitlines()[-1]))
        check(r.returncode != 0 and "--x-tsc-khz is test only" in r.stderr, "--x-tsc-khz accepted")
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main(test)
