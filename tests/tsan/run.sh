#!/bin/sh
# ThreadSanitizer over the threads that share state in the VMM and ft/:
# builds everything but the guest with -fsanitize=thread (FTVM_TSAN) into
# OUT, runs the event tap and transport unit tests and the ft integration
# tests on that build, and fails on any ThreadSanitizer report (printed)
# or failed test. Guest RAM is shared with the guest by design: the
# initial sync's reads of it are bracketed (vm__racy_reads_begin); nothing
# is suppressed.
#   usage: tests/tsan/run.sh SRC OUT
set -eu
src=$1
out=$2
if [ ! -w /dev/kvm ] || [ "$(id -u)" != 0 ]; then
	echo "SKIP: the ft tests need /dev/kvm and root"
	exit 77
fi
cmake -S "$src" -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFTVM_TSAN=ON >/dev/null
cmake --build "$out" -j"$(nproc)" --target ftvm ftvmctl ftvm-kv ftvm-guest test_eventtap \
	test_transport >/dev/null
logs=$out/tsan-logs
rm -rf "$logs"
mkdir -p "$logs"
export TSAN_OPTIONS="halt_on_error=0 history_size=7 log_path=$logs/tsan"
export FTVM_BUILD="$out"
failed=""
for u in tests/test_eventtap transport/test_transport; do
	echo "== $u"
	"$out/$u" >"$logs/$(basename "$u").out" 2>&1 || failed="$failed $u"
done
for t in ft_handover ft_kill_points ft_secondary_loss ft_cancel_and_silence ft_event_hook \
	ft_peer_faults ft_disk_faults ft_held_output ft_slow_phases sync_converge monitor_events; do
	echo "== $t"
	if ! python3 "$src/tests/integration/test_$t.py" >"$logs/$t.out" 2>&1; then
		failed="$failed $t"
		tail -5 "$logs/$t.out"
	fi
done
reports=$(cat "$logs"/tsan.* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer' || true)
if [ "$reports" != 0 ]; then
	cat "$logs"/tsan.*
	echo "FAIL: $reports ThreadSanitizer reports"
	exit 1
fi
if [ -n "$failed" ]; then
	echo "FAIL: under ThreadSanitizer:$failed"
	exit 1
fi
echo "PASS: the ft tests under ThreadSanitizer, no report"
