#!/usr/bin/env python3
"""Bad command lines and bad files: each gets a clear error naming the
problem, a non-zero exit, and no crash (a signal death fails the test)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import *  # noqa: E402,F401,F403


def expect_error(args, words, label):
    r = subprocess.run([FTVM] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    print("%-28s exit %d: %s" % (label, r.returncode, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""))
    check(r.returncode > 0, "%s: exit status %d (want a non-zero exit, not a signal)" % (label, r.returncode))
    check(all(w in r.stderr for w in words), "%s: error does not say %s: %r" % (label, words, r.stderr))


def test(work):
    g = GUEST
    img = make_disk(os.path.join(work, "d.img"), 1)
    notelf = os.path.join(work, "notelf")
    open(notelf, "w").write("this is not a kernel\n" * 10)
    # An ELF without a PVH note: the host's own /bin/true.
    truncated = os.path.join(work, "trunc.elf")
    open(truncated, "wb").write(open(g, "rb").read()[:200])

    expect_error(["--bogus"], ["unknown flag", "--bogus"], "unknown flag")
    expect_error(["--kernel", g, "stray"], ["unexpected argument", "stray"], "stray argument")
    expect_error([], ["--kernel"], "no kernel")
    expect_error(["--kernel"], ["--kernel needs a value"], "flag without value")
    expect_error(["--kernel", g, "--memory", "lots"], ["--memory", "lots"], "bad memory")
    expect_error(["--kernel", g, "--memory", "3M"], ["--memory"], "memory too small")
    expect_error(["--kernel", g, "--memory", "257M"], ["--memory", "multiple"], "memory not 2M aligned")
    expect_error(["--kernel", g, "--smp", "0"], ["--smp"], "smp 0")
    expect_error(["--kernel", g, "--smp", "two"], ["--smp"], "smp not a number")
    expect_error(["--kernel", g, "--drive", "path=x"], ["--drive", "path=x"], "drive bad key")
    expect_error(["--kernel", g, "--drive", "file=" + img + ",mode=mirror"], ["--drive", "mode=mirror"], "drive bad mode")
    expect_error(["--kernel", g, "--netdev", "user"], ["--netdev", "tap"], "netdev not tap")
    expect_error(["--kernel", g, "--netdev", "tap"], ["ifname"], "netdev no ifname")
    expect_error(["--kernel", g, "--netdev", "tap,ifname=t0,mac=zz:00:00:00:00:00"], ["bad MAC"], "bad mac")
    expect_error(["--kernel", g, "--netdev", "tap,ifname=t0,mac=01:00:00:00:00:01"], ["bad MAC"], "multicast mac")
    expect_error(["--kernel", g, "--serial", "tcp:1"], ["--serial"], "bad serial")
    expect_error(["--kernel", g, "--monitor", "tcp:1"], ["--monitor"], "bad monitor")
    expect_error(["--kernel", g, "--incoming", "udp:1:2"], ["--incoming"], "bad incoming")
    expect_error(["--kernel", g, "--incoming", "tcp:0:99999"], ["--incoming"], "incoming port range")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP (part): the file checks below need /dev/kvm")
        return
    expect_error(["--kernel", os.path.join(work, "missing.elf")], ["cannot open", "missing.elf"], "missing kernel")
    expect_error(["--kernel", notelf], ["not an ELF"], "kernel not ELF")
    expect_error(["--kernel", "/bin/true"], ["no PVH entry note"], "ELF without PVH note")
    expect_error(["--kernel", truncated], ["--kernel"], "truncated ELF")
    expect_error(["--kernel", g, "--drive", "file=" + os.path.join(work, "missing.img")],
                 ["cannot open image", "missing.img"], "missing image")
    expect_error(["--restore", os.path.join(work, "missing.snap")], ["--restore", "missing.snap"], "missing snapshot")
    expect_error(["--restore", img], ["--restore", "not an ftvm snapshot"], "snapshot not a snapshot")


main(test)
