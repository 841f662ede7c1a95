#!/bin/sh
# The main demo: builds ftvm (installing what it needs) and runs the
# kill-the-primary failover drill (demo/failover_drill.py --help).
# demo/kv_demo.py is the smaller tour of one unprotected guest.
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh >/tmp/ftvm-demo-build.log 2>&1 || {
    echo "demo: build failed, see /tmp/ftvm-demo-build.log" >&2
    tail -20 /tmp/ftvm-demo-build.log >&2
    exit 1
}
exec python3 demo/failover_drill.py "$@"
