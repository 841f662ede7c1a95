#!/bin/sh
# Runs the libFuzzer targets of fuzz/ (clang builds them into OUT, default
# build-fuzz), each for SECONDS (default 3600: the long run, outside CI;
# CTest runs each briefly):
#   receive      the secondary's stream step (ft/receive.c), seeded by fuzz/seeds_receive.py
#   transport    the transport's receive path over a socketpair (framed or raw)
#   page_codec   LZ4 page decode, and the encode/decode round trip
#   json         the monitor's JSON strings: valid UTF-8 whatever they hold
#   outputs      the event tap's output list on an in-memory disk, seeded by fuzz/seeds_outputs.py
#   snapshot     the snapshot reader, the device tables, and a whole VM state through
#                vm__check_state and its apply (vCPU, platform, machine; fuzz/fake_kvm.c) (seeds: fuzz/seeds_snapshot.c)
#   virtio       the virtio-mmio, queue and blk models as a guest driver drives them (seeds: fuzz/seeds_virtio.py)
#   guest_net    the guest's network stack and kv service, compiled for the host (seeds: fuzz/seeds_guest_net.py)
# A crash or a broken rule leaves the input in OUT/crashes and fails; replay
# it with OUT/fuzz/fuzz_TARGET FILE.
#   usage: scripts/fuzz.sh [SECONDS [OUT [TARGET...]]]   (default: all targets)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-3600}
out=${2:-$src/build-fuzz}
[ $# -ge 2 ] && shift 2 || set --
targets=${*:-receive transport page_codec json outputs snapshot virtio guest_net}
if ! command -v clang >/dev/null 2>&1; then
	echo "SKIP: no clang (scripts/setup.sh installs clang and libclang-rt-dev)"
	exit 77
fi
if [ ! -e "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]; then
	echo "SKIP: clang has no libFuzzer runtime (Debian package libclang-rt-dev)"
	exit 77
fi
cmake -S "$src" -B "$out" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFTVM_FUZZ=ON >/dev/null
mkdir -p "$out/crashes"
for t in $targets; do
	cmake --build "$out" -j"$(nproc)" --target "fuzz_$t" >/dev/null
	corpus=$out/corpus/$t
	mkdir -p "$corpus"
	[ -f "$src/fuzz/seeds_$t.py" ] && python3 "$src/fuzz/seeds_$t.py" "$corpus"
	[ -x "$out/fuzz/seeds_$t" ] && "$out/fuzz/seeds_$t" "$corpus"
	# Inputs that once broke a rule: they must pass now (regression seeds).
	[ -d "$src/fuzz/regressions/$t" ] && cp "$src/fuzz/regressions/$t"/* "$corpus"/
	echo "fuzz_$t: ${secs} s on $(nproc) core(s)"
	# -timeout: one input that takes a second is a hang; -rss_limit_mb: no
	# input may make the code allocate without bound.
	"$out/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=1 -rss_limit_mb=1024 -max_len=65536 \
		-print_final_stats=1 -artifact_prefix="$out/crashes/$t-" "$corpus" 2>"$out/fuzz_$t.log" || {
		tail -40 "$out/fuzz_$t.log"
		echo "FAIL: fuzz_$t found an input that breaks it (in $out/crashes)"
		exit 1
	}
	grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|cov:" "$out/fuzz_$t.log" | tail -3
	echo "PASS: fuzz_$t, no crash and no broken rule in ${secs} s"
done
