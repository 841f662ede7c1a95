#!/bin/sh
# The main demo: builds ftvm (installing what it needs), boots the kv guest
# on a tap device in a network namespace, and drives it with the kv client.
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh >/tmp/ftvm-demo-build.log 2>&1 || {
    echo "demo: build failed, see /tmp/ftvm-demo-build.log" >&2
    tail -20 /tmp/ftvm-demo-build.log >&2
    exit 1
}
exec python3 demo/kv_demo.py "$@"
