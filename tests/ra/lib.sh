#!/bin/sh
# shellcheck disable=SC2034  # globals used by the tests that source this file
# lib.sh - shared by the resource agent tests (sourced, POSIX sh).
#
# A "node" is a network namespace with a tap device for the guest (tap0)
# and a replication address on a veth pair joined to the other nodes
# through a bridge in the first node's namespace. Everything the tests
# start lives in these namespaces and is ended through their pid lists.

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${FTVM_BUILD:-$SRC/build}
RA=$SRC/ra
AGENT=$RA/ftvm
# the agent's library files, next to it (ra/ftvm-event too: the event hook)
RA_LIBS="ftvm-common.sh ftvm-cib.sh ftvm-vmm.sh"
FTVM=$BUILD/vmm/ftvm
FTVMCTL=$BUILD/tools/ftvmctl
GUEST=$BUILD/guest/ftvm-guest.elf
export OCF_ROOT=${OCF_ROOT:-/usr/lib/ocf}

TAG="ra$$"
NODES=""
WORK=""

skip() {
	echo "SKIP: $*"
	exit 77
}

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# Exit 77 (with the reason) when this machine cannot run the test.
require() {
	[ "$(id -u)" = 0 ] || skip "network namespaces and tap devices need root"
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm is not available on this machine"
	[ -r "$OCF_ROOT/lib/heartbeat/ocf-shellfuncs" ] ||
		skip "no $OCF_ROOT/lib/heartbeat/ocf-shellfuncs (Debian package resource-agents; scripts/setup.sh installs it)"
	for _b in "$FTVM" "$FTVMCTL" "$GUEST"; do
		[ -e "$_b" ] || fail "$_b is missing: build first (cmake --build build)"
	done
	for _c in ip unshare setsid "$@"; do
		command -v "$_c" >/dev/null 2>&1 || skip "'$_c' is not installed (scripts/setup.sh)"
	done
}

# A work directory every user can traverse (ocf-tester runs meta-data as
# nobody), removed at exit.
make_work() {
	WORK=$(mktemp -d /tmp/ftvm-ra-test.XXXXXX)
	chmod 755 "$WORK"
}

ns_name() {
	echo "ftvm-$TAG-$1"
}

# node_add N: namespace ftvm-<tag>-N with tap0 and replication address
# 10.99.0.N/24 on veth "rep0"; nodes after the first are joined to the
# first one's bridge.
node_add() {
	_ns=$(ns_name "$1")
	ip netns add "$_ns" || fail "ip netns add $_ns"
	NODES="$NODES $1"
	ip -n "$_ns" link set lo up
	ip -n "$_ns" tuntap add tap0 mode tap || fail "no tap device in $_ns"
	ip -n "$_ns" addr add 10.0.0.1/24 dev tap0
	ip -n "$_ns" link set tap0 up
	_br=$(ns_name 1)
	if [ "$1" = 1 ]; then
		ip -n "$_ns" link add repbr type bridge || fail "no bridge"
		ip -n "$_ns" link set repbr up
		ip -n "$_ns" addr add 10.99.0.1/24 dev repbr
	else
		ip link add "r$TAG-$1" type veth peer name rep0 || fail "no veth"
		ip link set "r$TAG-$1" netns "$_br"
		ip link set rep0 netns "$_ns"
		ip -n "$_br" link set "r$TAG-$1" master repbr
		ip -n "$_br" link set "r$TAG-$1" up
		ip -n "$_ns" addr add "10.99.0.$1/24" dev rep0
		ip -n "$_ns" link set rep0 up
	fi
}

# Runs a command in node N's namespace.
on() {
	_n=$1
	shift
	ip netns exec "$(ns_name "$_n")" "$@"
}

# Ends every process left in our namespaces (the VMMs the agent started),
# by pid, and removes the namespaces and the work directory (kept with
# FTVM_RA_KEEP=1).
cleanup() {
	for _n in $NODES; do
		for _p in $(ip netns pids "$(ns_name "$_n")" 2>/dev/null); do
			kill -s KILL "$_p" 2>/dev/null
		done
	done
	sleep 0.2
	for _n in $NODES; do
		ip netns del "$(ns_name "$_n")" 2>/dev/null
	done
	if [ -n "${FTVM_RA_KEEP:-}" ]; then
		echo "kept $WORK"
	elif [ -n "$WORK" ]; then
		rm -rf "$WORK"
	fi
}

# write_config FILE NAME MODE IMAGE: a VM configuration for the agent.
write_config() {
	cat >"$1" <<EOF
# ftvm VM configuration (ra/ftvm: shell key=value)
name=$2
kernel=$GUEST
append="workload=kv ip=10.0.0.10/24 port=7777"
memory=256M
smp=1
drive=$4
drive_mode=$3
tap=tap0
mac=52:54:00:12:34:56
ftvm=$FTVM
ftvmctl=$FTVMCTL
test_mode=1
EOF
}

# fake_pacemaker DIR: Pacemaker's command-line tools as the agent uses them,
# with node attributes kept as files (DIR/attr/NODE/NAME) and the Promoted
# instances crm_resource --locate reports in DIR/promoted (node names, one
# per line). Put DIR/bin first in PATH. crm_attribute without -N is the
# node in OCF_RESKEY_CRM_meta_on_node, as the agent's own node.
fake_pacemaker() {
	mkdir -p "$1/bin" "$1/attr"
	: >"$1/promoted"
	cat >"$1/bin/crm_attribute" <<FAKE
#!/bin/sh
node=\${OCF_RESKEY_CRM_meta_on_node:-} name="" op="" val=""
while [ \$# -gt 0 ]; do
	case "\$1" in
	--promotion) name="master-\${OCF_RESOURCE_INSTANCE%%:*}" ;;
	-N) node=\$2; shift ;;
	-n) name=\$2; shift ;;
	-l) shift ;;
	-G) op=get ;;
	-D) op=del ;;
	-v) op=set val=\$2; shift ;;
	-q) ;;
	*) echo "fake crm_attribute: unexpected \$1" >&2; exit 64 ;;
	esac
	shift
done
f="$1/attr/\$node/\$name"
case \$op in
get) [ -f "\$f" ] || exit 105; cat "\$f" ;;
del) rm -f "\$f" ;;
set) mkdir -p "$1/attr/\$node" && echo "\$val" >"\$f" ;;
*) exit 64 ;;
esac
FAKE
	cat >"$1/bin/crm_resource" <<FAKE
#!/bin/sh
case " \$* " in
*" --locate "*)
	echo "resource \$2 is running on: (unpromoted elsewhere)"
	while read -r n; do echo "resource \$2 is running on: \$n Promoted"; done <"$1/promoted"
	;;
esac
exit 0
FAKE
	printf '#!/bin/sh\n[ "$1" = -q ] && echo 1\nexit 0\n' >"$1/bin/crm_node"
	printf '#!/bin/sh\nexit 0\n' >"$1/bin/attrd_updater"
	chmod 755 "$1/bin/"*
}

# attr_of DIR NODE NAME: a node attribute in a fake_pacemaker store ("" if none).
attr_of() {
	cat "$1/attr/$2/$3" 2>/dev/null
}
