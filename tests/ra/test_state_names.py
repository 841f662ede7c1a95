#!/usr/bin/env python3
"""The agent's state names are the VMM's: every protection state that
ra/ftvm* compares against (`[ "$VM_STATE" = X ]`, the arms of `case
"$VM_STATE" in`, the lists given to `vmm_wait_state`) is in the one table
the VMM uses, ft/ft_states.h, as `ftvmctl --states` prints it. A state
renamed or removed in the VMM and not in the agent fails here, not in a
cluster at 3 a.m."""
import glob
import os
import re
import subprocess
import sys

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("FTVM_BUILD", os.path.join(SRC, "build"))
FTVMCTL = os.path.join(BUILD, "tools", "ftvmctl")


def agent_states():
    used = {}
    for path in sorted(glob.glob(os.path.join(SRC, "ra", "ftvm*"))):
        if path.endswith("ftvmd.service"):
            continue
        with open(path) as f:
            lines = f.read().splitlines()
        depth = 0  # inside `case "$VM_STATE" in` (nested cases counted)
        for no, line in enumerate(lines, 1):
            where = "%s:%d" % (os.path.relpath(path, SRC), no)
            for m in re.finditer(r'"\$VM_STATE" !?= ([a-z-]+)', line):
                used.setdefault(m.group(1), where)
            m = re.search(r"vmm_wait_state ([a-z,-]+)", line)
            if m and not line.strip().startswith("vmm_wait_state()"):
                for s in m.group(1).split(","):
                    used.setdefault(s, where)
            if re.search(r'case "\$VM_STATE" in', line):
                depth = 1
                continue
            if depth:
                if re.match(r"\s*case\b", line):
                    depth += 1
                elif re.match(r"\s*esac\b", line):
                    depth -= 1
                elif depth == 1:
                    m = re.match(r"\s*([a-z|* -]+)\)", line)
                    if m:
                        for s in m.group(1).split("|"):
                            s = s.strip()
                            if s and s != "*":
                                used.setdefault(s, where)
    return used


def main():
    if not os.path.exists(FTVMCTL):
        print("SKIP: %s not built" % FTVMCTL)
        return 77
    out = subprocess.run([FTVMCTL, "--states"], stdout=subprocess.PIPE, text=True, check=True).stdout
    table = {l.split()[0] for l in out.splitlines() if l.strip()}
    used = agent_states()
    print("the VMM's states: %s" % " ".join(sorted(table)))
    print("the agent compares against: %s" % " ".join(sorted(used)))
    bad = {s: w for s, w in used.items() if s not in table}
    if len(used) < 8:
        print("FAIL: only %d state names found in the agent: the scan is broken" % len(used))
        return 1
    if bad:
        for s, w in sorted(bad.items()):
            print("FAIL: %s: state '%s' is not in ft/ft_states.h (ftvmctl --states)" % (w, s))
        return 1
    print("PASS: all %d state names of the agent are the VMM's" % len(used))
    return 0


if __name__ == "__main__":
    sys.exit(main())
