#!/bin/sh
# Fuzzes the secondary's stream step (fuzz/fuzz_receive.c) with libFuzzer:
# builds the target with clang into OUT (default build-fuzz), seeds the
# corpus from fuzz/seeds_receive.py and runs for SECONDS (default 3600: the
# long run, outside CI; CTest fuzz_receive runs it for 30 s). A crash or a
# broken rule leaves the input in OUT/crashes and fails; replay it with
# OUT/fuzz/fuzz_receive FILE.
#   usage: scripts/fuzz.sh [SECONDS [OUT]]
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-3600}
out=${2:-$src/build-fuzz}
if ! command -v clang >/dev/null 2>&1; then
	echo "SKIP: no clang (scripts/setup.sh installs clang and libclang-rt-dev)"
	exit 77
fi
if [ ! -e "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]; then
	echo "SKIP: clang has no libFuzzer runtime (Debian package libclang-rt-dev)"
	exit 77
fi
cmake -S "$src" -B "$out" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFTVM_FUZZ=ON >/dev/null
cmake --build "$out" -j"$(nproc)" --target fuzz_receive >/dev/null
corpus=$out/corpus/receive
mkdir -p "$corpus" "$out/crashes"
python3 "$src/fuzz/seeds_receive.py" "$corpus"
echo "fuzz_receive: ${secs} s on $(nproc) core(s)"
# -timeout: one input that takes a second is a hang; -rss_limit_mb: a
# stream must not make the secondary allocate without bound.
"$out/fuzz/fuzz_receive" -max_total_time="$secs" -timeout=1 -rss_limit_mb=1024 -max_len=65536 \
	-print_final_stats=1 -artifact_prefix="$out/crashes/" "$corpus" 2>"$out/fuzz_receive.log" || {
	tail -40 "$out/fuzz_receive.log"
	echo "FAIL: fuzz_receive found an input that breaks the step (in $out/crashes)"
	exit 1
}
grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|cov:" "$out/fuzz_receive.log" | tail -3
echo "PASS: fuzz_receive, no crash and no broken rule in ${secs} s"
