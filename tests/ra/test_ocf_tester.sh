#!/bin/sh
# ocf-tester on ra/ftvm, against a real ftvm: one node (a network namespace
# with a tap device, a replication address and its own host name), a real
# disk image and the built guest, no cluster. ocf-tester drives meta-data
# (checked against ra-api-1.dtd with xmllint), validate-all, probes, start,
# monitor, notify, promote (here: booting the guest, as on a fresh cluster),
# demote (back to a waiting secondary), stop, and the idempotent repeats.
#
# Exit 0 passed, 1 failed, 77 skipped (not root, no /dev/kvm, no
# ocf-tester/xmllint: scripts/setup.sh installs resource-agents and
# libxml2-utils).
HERE=$(dirname "$0")
. "$HERE/lib.sh"

require ocf-tester xmllint su
trap cleanup EXIT
trap 'exit 1' INT TERM
make_work
node_add 1
truncate -s 64M "$WORK/vm.img"
write_config "$WORK/vm1.conf" vm1 shared "$WORK/vm.img"

# ocf-tester checks the agent's permissions by running meta-data as nobody
# (which reads the library files next to it too).
agent=$AGENT
if ! su nobody -s /bin/sh -c "test -x '$AGENT' && test -r '$AGENT' && test -r '$RA/ftvm-common.sh'"; then
	echo "note: $AGENT is not reachable by nobody here; testing a copy in $WORK"
	mkdir -p "$WORK/ra"
	cp "$AGENT" "$RA/ftvm-event" "$WORK/ra/"
	for f in $RA_LIBS; do
		cp "$RA/$f" "$WORK/ra/"
		chmod 644 "$WORK/ra/$f"
	done
	chmod 755 "$WORK/ra" "$WORK/ra/ftvm" "$WORK/ra/ftvm-event"
	agent=$WORK/ra/ftvm
fi

out=$WORK/ocf-tester.out
host=ftvm-ra-node1
t0=$(date +%s)
# Inside the node: its own UTS namespace so that the node name (no cluster:
# uname -n) is the one in node_addrs.
on 1 unshare --uts sh -c "hostname $host && exec ocf-tester -v -n ftvm-test \
	-o config='$WORK/vm1.conf' \
	-o node_addrs='$host=10.99.0.1 ftvm-ra-node2=10.99.0.2' \
	-o state_dir='$WORK/run' \
	-o vmm_timeout=5 '$agent'" >"$out" 2>&1
rc=$?
t1=$(date +%s)

grep -E '^(Testing|Checking|Promoting|Demoting|Restarting|Stopping|\*|ocf-exit-reason)|passed all tests|Tests failed' "$out"
echo "ocf-tester exit $rc in $((t1 - t0)) s"
if [ $rc -ne 0 ] || ! grep -q "passed all tests" "$out"; then
	echo "--- ocf-tester output ---"
	cat "$out"
	echo "--- ftvm log ---"
	tail -n 30 "$WORK/run/vm1.log" 2>/dev/null
	fail "ocf-tester did not pass on $agent"
fi

# The actions really ran the VM: the guest booted (promote) and the
# secondary listened (start/demote), and stop left no process behind.
grep -q "ftvm-guest: ready" "$WORK/run/vm1.serial" || fail "the guest never booted (promote)"
grep -q "secondary: waiting for a primary on tcp:10.99.0.1:4444" "$WORK/run/vm1.log" ||
	fail "no secondary ever listened (start)"
left=$(ip netns pids "$(ns_name 1)")
[ -z "$left" ] || fail "processes left after the last stop: $left"
for f in vm1.sock vm1.pid vm1.peers; do
	[ ! -e "$WORK/run/$f" ] || fail "stop left $WORK/run/$f behind"
done

# The agent finds its library files next to its real path (tests/cluster
# installs it as a symlink), in ../../lib/ftvm from it (ra/install.sh's
# layout, here under a DESTDIR: not where OCF_ROOT says), and says why
# when they are missing. OCF_ROOT here is a directory with no lib/ftvm.
mkdir -p "$WORK/ocf/resource.d/ftvm" "$WORK/lone"
ln -s "$AGENT" "$WORK/ocf/resource.d/ftvm/ftvm"
cp "$AGENT" "$WORK/lone/ftvm"
DESTDIR=$WORK/inst OCF_ROOT=/usr/lib/ocf BUILD_DIR=$WORK/no-build sh "$RA/install.sh" >"$WORK/install.out" 2>&1 ||
	fail "ra/install.sh: $(cat "$WORK/install.out")"
inst=$WORK/inst/usr/lib/ocf
for f in $RA_LIBS; do
	[ "$(stat -c %a "$inst/lib/ftvm/$f")" = 644 ] || fail "$inst/lib/ftvm/$f is not mode 0644"
done
[ "$(stat -c %a "$inst/lib/ftvm/ftvm-event")" = 755 ] || fail "$inst/lib/ftvm/ftvm-event is not mode 0755"
funcs=$OCF_ROOT/lib/heartbeat
for a in "$WORK/ocf/resource.d/ftvm/ftvm" "$inst/resource.d/ftvm/ftvm"; do
	if ! OCF_ROOT=$WORK/ocf OCF_FUNCTIONS_DIR=$funcs "$a" meta-data >"$WORK/md.xml" 2>&1 ||
		! grep -q '<resource-agent name="ftvm"' "$WORK/md.xml"; then
		fail "meta-data of $a: $(cat "$WORK/md.xml")"
	fi
done
OCF_ROOT=$WORK/ocf OCF_FUNCTIONS_DIR=$funcs "$WORK/lone/ftvm" meta-data >"$WORK/lone.out" 2>&1
rc=$?
if [ $rc != 5 ] || ! grep -q "cannot find ftvm-common.sh" "$WORK/lone.out"; then
	fail "an agent without its library files: rc $rc, not 5 (OCF_ERR_INSTALLED): $(cat "$WORK/lone.out")"
fi
# The installed event hook runs on its own (an event it does not handle: 0).
OCF_ROOT=$WORK/ocf OCF_FUNCTIONS_DIR=$funcs OCF_RESOURCE_INSTANCE=ftvm-test \
	OCF_RESKEY_config="$WORK/vm1.conf" OCF_RESKEY_node_addrs="$host=10.99.0.1" \
	OCF_RESKEY_CRM_meta_on_node=$host OCF_RESKEY_state_dir="$WORK/run" \
	FTVM_EVENT=no-such-event "$inst/lib/ftvm/ftvm-event" >"$WORK/event.out" 2>&1 ||
	fail "the installed ftvm-event: rc $?: $(cat "$WORK/event.out")"
echo "ok: the agent finds its library files (symlink; installed under a DESTDIR; none: rc 5)"
echo "PASS: ocf-tester passed on $agent"
