#!/bin/sh
# Builds ftvm (installing what it needs) and prints the benchmark figures.
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh >/tmp/ftvm-bench-build.log 2>&1 || { tail -20 /tmp/ftvm-bench-build.log; exit 1; }
if [ "${1:-}" = "--scale" ]; then
    shift
    exec python3 bench/bench_scale.py "$@"
fi
if [ "${1:-}" = "--redis" ]; then
    shift
    exec python3 bench/bench_redis.py "$@"
fi
if [ "${1:-}" = "--colo" ]; then
    shift
    exec python3 bench/bench_colo.py "$@"
fi
if [ "${1:-}" = "--ft" ]; then
    shift
    exec python3 bench/bench_ft.py "$@"
fi
exec python3 bench/bench_baseline.py "$@"
