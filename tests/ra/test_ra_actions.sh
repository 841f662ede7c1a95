#!/bin/sh
# ra/ftvm's decisions, action by action, on two nodes with no cluster: the
# agent is called as Pacemaker would call it, with the notification
# variables Pacemaker passes to start/stop/promote/demote/notify of a
# promotable clone with notify=true (docs/operations.md). Real ftvm, real
# guest, a shared disk image, a kv client writing through the guest.
#
#  1. start on both nodes: two waiting secondaries;
#  2. promote node1 with no Promoted anywhere: boots the guest;
#  3. promote node2 while node1 is Promoted: refused, "not in sync";
#  4. post-start notify on node1: protection towards node2; node2 in sync;
#  5. node1's VMM killed: monitor says not running; a promote during which
#     the stale mark appears is refused (re-checked right before cont);
#     promote node2 with
#     node1's instance being stopped: failover, the kv data is there;
#  6. start node1 again, post-start notify on node2: re-protection;
#  7. switchover: demote node2 (stops the guest), promote node1 (failover
#     from its checkpoint), post-promote notify: node2 protected again;
#  8. a stale secondary (it refused a corrupt stream; the primary went on
#     unprotected) is never promoted; the primary's next monitor protects
#     it again;
#  9. a hung VMM (SIGSTOP): monitor fails with a reason; stop still ends it;
# 10. promotion scores when a primary dies (Pacemaker's attribute tools
#     faked, attributes kept in files): the protected primary gives its
#     secondary the in-sync score; a secondary that lost its primary keeps
#     it; a waiting secondary then gets no boot score and may not boot the
#     guest; once a primary runs on a third node, the one that lost its
#     primary drops its score and is re-armed for the new primary;
# 11. the event hook: every VMM runs ra/ftvm-event; on peer-lost it marks
#     the lost secondary's session stale and removes its score, and so does
#     the old action ftvm-event (a VMM started by an older agent runs
#     "<agent> ftvm-event").
#
# Exit 0 passed, 1 failed, 77 skipped (not root, no /dev/kvm, no
# resource-agents).
HERE=$(dirname "$0")
. "$HERE/lib.sh"

require
trap cleanup EXIT
trap 'exit 1' INT TERM
make_work
node_add 1
node_add 2
truncate -s 64M "$WORK/shared.img"
write_config "$WORK/vm.conf" vm1 shared "$WORK/shared.img"
KV=$BUILD/tools/ftvm-kv

# ra N ACTION [VAR=VALUE...]: runs the agent on node N; RC and OUT (its
# output) are set. A monitor is the recurring one (interval 10 s) unless
# OCF_RESKEY_CRM_meta_interval=0 (a probe) is given.
ra() {
	_node=$1
	_action=$2
	shift 2
	ra_env "$_node" "$_action" "$@" sh "$AGENT" "$_action"
}

# ra_env N ACTION [VAR=VALUE...] COMMAND...: runs COMMAND on node N with the
# environment the agent's ACTION has there; RC and OUT are set.
ra_env() {
	_node=$1
	_action=$2
	shift 2
	_interval=0
	[ "$_action" = monitor ] && _interval=10000
	OUT=$(on "$_node" env OCF_ROOT="$OCF_ROOT" OCF_RESOURCE_INSTANCE=ftvm \
		OCF_RESKEY_config="$WORK/vm.conf" \
		OCF_RESKEY_node_addrs="node1=10.99.0.1 node2=10.99.0.2" \
		OCF_RESKEY_state_dir="$WORK/run$_node" \
		OCF_RESKEY_sync_timeout=30 OCF_RESKEY_vmm_timeout=2 \
		OCF_RESKEY_CRM_meta_on_node="node$_node" \
		OCF_RESKEY_CRM_meta_timeout=30000 \
		OCF_RESKEY_CRM_meta_interval=$_interval \
		"$@" 2>&1)
	RC=$?
	printf '%s\n' "$OUT" >>"$WORK/agent.log"
}

expect() {
	# expect RC WHAT
	if [ "$RC" != "$1" ]; then
		echo "--- agent output ---"
		printf '%s\n' "$OUT"
		fail "$2: rc $RC, expected $1"
	fi
	echo "ok: $2 (rc $RC)"
}

migrate_info() {
	on "$1" "$FTVMCTL" "$WORK/run$1/vm1.sock" --json info migrate
}

state_of() {
	migrate_info "$1" | sed -n 's/.*"state":"\([^"]*\)".*/\1/p'
}

committed_of() {
	migrate_info "$1" | sed -n 's/.*"committed_epoch":\([0-9]*\).*/\1/p'
}

# Runs the agent with the notification variables (both naming schemes, as
# Pacemaker 2.1 sets them; " " is an empty list): ra_n N ACTION PROMOTED
# UNPROMOTED START STOP PROMOTE DEMOTE [VAR=VALUE...]
ra_n() {
	_n=$1 _a=$2
	shift 2
	_p=$1 _u=$2 _st=$3 _sp=$4 _pr=$5 _de=$6
	shift 6
	ra "$_n" "$_a" \
		"OCF_RESKEY_CRM_meta_notify_promoted_uname=${_p:- }" \
		"OCF_RESKEY_CRM_meta_notify_master_uname=${_p:- }" \
		"OCF_RESKEY_CRM_meta_notify_unpromoted_uname=${_u:- }" \
		"OCF_RESKEY_CRM_meta_notify_slave_uname=${_u:- }" \
		"OCF_RESKEY_CRM_meta_notify_start_uname=${_st:- }" \
		"OCF_RESKEY_CRM_meta_notify_stop_uname=${_sp:- }" \
		"OCF_RESKEY_CRM_meta_notify_promote_uname=${_pr:- }" \
		"OCF_RESKEY_CRM_meta_notify_demote_uname=${_de:- }" "$@"
}

# wait_state N STATE [TENTHS]: waits (default 5 s) for node N's VMM to reach STATE.
wait_state() {
	_i=0
	while [ "$(state_of "$1")" != "$2" ] && [ $_i -lt "${3:-50}" ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	[ "$(state_of "$1")" = "$2" ]
}

# notify_start P U: the post-start notification on primary node P, with
# node U starting; P must then be protected.
notify_start() {
	ra_n "$1" notify "node$1" "node$2" "node$2" "" "" "" \
		OCF_RESKEY_CRM_meta_notify_type=post OCF_RESKEY_CRM_meta_notify_operation=start
	expect 0 "notify post-start on node$1"
	[ "$(state_of "$1")" = protected ] || fail "node$1 is $(state_of "$1") after notify, not protected"
}

kv() {
	# kv NODE put|get ...: through the guest on that node's tap
	on "$1" "$KV" --server 10.0.0.10:7777 --deadline-ms 5000 "$2" "$3" ${4:+"$4"}
}

echo "== 1. two secondaries"
ra 1 start
expect 0 "start node1"
ra 2 start
expect 0 "start node2"
ra 1 monitor
expect 0 "monitor node1 (waiting secondary)"
ra 1 monitor OCF_RESKEY_CRM_meta_interval=0
expect 0 "probe node1 (waiting secondary)"
[ "$(state_of 2)" = waiting ] || fail "node2 is $(state_of 2), not waiting"
hook="'$RA/ftvm-event'"
migrate_info 1 | grep -qF "\"event_hook\":\"$hook\"" ||
	fail "node1's VMM does not have $hook as its event hook: $(migrate_info 1)"

echo "== 2. fresh cluster: promote boots the guest"
ra_n 1 promote "" "node1 node2" "" "" node1 ""
expect 0 "promote node1 with no Promoted anywhere"
ra 1 monitor
expect 8 "monitor node1 (primary)"
kv 1 put colour blue >/dev/null || fail "kv put through node1's guest"

echo "== 3. a secondary with no checkpoint is not promoted while a primary runs"
ra_n 2 promote node1 node2 "" "" node2 ""
expect 1 "promote node2 while node1 is Promoted"
printf '%s\n' "$OUT" | grep -q "ocf-exit-reason:.*not in sync" || fail "no exit reason: $OUT"
echo "   reason: $(printf '%s\n' "$OUT" | sed -n 's/.*ocf-exit-reason://p')"
ra 2 monitor
expect 0 "monitor node2 (still a secondary)"

echo "== 4. post-start notify on the primary protects towards node2"
notify_start 1 2
[ "$(cat "$WORK/run1/vm1.peers")" = "node2 " ] || fail "peers file: '$(cat "$WORK/run1/vm1.peers")'"
kv 1 put colour green >/dev/null || fail "kv put while protected"
kv 1 put shape circle >/dev/null || fail "kv put while protected"
ra 2 monitor
expect 0 "monitor node2 (in sync)"
[ "$(state_of 2)" = receiving ] && [ "$(committed_of 2)" -gt 0 ] ||
	fail "node2 not in sync: $(migrate_info 2)"
ra 1 monitor
expect 8 "monitor node1 (protected primary)"

echo "== 5. the primary's VMM dies; promote node2 = failover"
p1=$(cat "$WORK/run1/vm1.pid")
kill -s KILL "$p1"
sleep 1
ra 1 monitor
expect 7 "monitor node1 after SIGKILL"
[ "$(state_of 2)" = peer-lost ] || fail "node2 is $(state_of 2), not peer-lost"
# The primary's revocation may land while promote runs: a crm_attribute
# that has no stale mark the first time it is asked and has one (this
# session) from then on. promote must look again right before cont.
sess=$(migrate_info 2 | sed -n 's/.*"session":"\([0-9a-f]*\)".*/\1/p')
mkdir -p "$WORK/fakebin"
{
	echo '#!/bin/sh'
	echo 'case " $* " in'
	echo '*" -G "*stale*|*stale*" -G "*)'
	echo "	n=\$(cat '$WORK/fakebin/asked' 2>/dev/null || echo 0)"
	echo "	echo \$((n + 1)) >'$WORK/fakebin/asked'"
	echo "	[ \"\$n\" -ge 1 ] && { echo '$sess'; exit 0; }"
	echo '	exit 105 ;;'
	echo 'esac'
	echo 'exit 0'
} >"$WORK/fakebin/crm_attribute"
chmod 755 "$WORK/fakebin/crm_attribute"
ra_n 2 promote node1 node2 "" node1 node2 "" PATH="$WORK/fakebin:$PATH"
expect 1 "promote node2 while its session is revoked mid-promote"
printf '%s\n' "$OUT" | grep -q "ocf-exit-reason:.*revoked session" || fail "no exit reason: $OUT"
[ "$(state_of 2)" = peer-lost ] || fail "node2 is $(state_of 2) after a refused promote"
echo "   reason: $(printf '%s\n' "$OUT" | sed -n 's/.*ocf-exit-reason://p')"
ra_n 2 promote node1 node2 "" node1 node2 ""
expect 0 "promote node2 (failover)"
ra 2 monitor
expect 8 "monitor node2 (failed-over primary)"
v=$(kv 2 get colour) || fail "kv get after failover"
[ "$v" = green ] || fail "after failover colour=$v, expected green"
echo "   colour=$v after failover"

echo "== 6. node1 comes back; post-start notify on node2 re-protects"
ra 1 stop
expect 0 "stop node1 (clean its files)"
ra 1 start
expect 0 "start node1"
notify_start 2 1
kv 2 put colour red >/dev/null || fail "kv put on node2"
ra 1 monitor
expect 0 "monitor node1 (in sync)"
[ "$(committed_of 1)" -gt 0 ] || fail "node1 has no checkpoint: $(migrate_info 1)"

echo "== 7. switchover: demote node2, promote node1"
ra_n 2 demote node2 node1 "" "" node1 node2
expect 0 "demote node2"
[ "$(state_of 2)" = waiting ] || fail "node2 is $(state_of 2) after demote, not waiting"
ra_n 1 promote node2 node1 "" "" node1 node2
expect 0 "promote node1 (from its checkpoint)"
v=$(kv 1 get colour) || fail "kv get after switchover"
[ "$v" = red ] || fail "after switchover colour=$v, expected red"
echo "   colour=$v after switchover"
ra_n 1 notify node2 node1 "" "" node1 node2 \
	OCF_RESKEY_CRM_meta_notify_type=post OCF_RESKEY_CRM_meta_notify_operation=promote
expect 0 "notify post-promote on node1"
[ "$(state_of 1)" = protected ] || fail "node1 is $(state_of 1), not protected by node2"

echo "== 8. a stale secondary is never promoted"
on 1 "$FTVMCTL" "$WORK/run1/vm1.sock" migrate_set_parameter x-inject corrupt-pages >/dev/null
kv 1 put colour yellow >/dev/null || fail "kv put while the stream is corrupted"
wait_state 2 refused || fail "node2 did not refuse the corrupt stream: $(migrate_info 2)"
echo "   node2 refused the stream, keeps checkpoint $(committed_of 2); node1 is $(state_of 1)"
ra 2 monitor
expect 0 "monitor node2 (refused: running, not in sync)"
ra_n 2 promote node1 node2 "" "" node2 node1
expect 1 "promote the stale node2"
printf '%s\n' "$OUT" | grep -q "ocf-exit-reason:.*not in sync" || fail "no exit reason: $OUT"
echo "   reason: $(printf '%s\n' "$OUT" | sed -n 's/.*ocf-exit-reason://p')"
v=$(kv 1 get colour) || fail "kv get on node1"
[ "$v" = yellow ] || fail "node1 serves colour=$v, expected yellow"
# The unprotected primary's monitor retries protection towards the peers
# its notifications named.
ra 1 monitor
expect 8 "monitor node1 (unprotected primary: retries protection)"
wait_state 1 protected 100 || fail "node1 not protected again: $(migrate_info 1)"
ra 2 monitor
expect 0 "monitor node2 (in sync again)"
[ "$(state_of 2)" = receiving ] && [ "$(committed_of 2)" -gt 0 ] ||
	fail "node2 not in sync again: $(migrate_info 2)"

echo "== 9. a hung VMM"
p2=$(cat "$WORK/run2/vm1.pid")
kill -s STOP "$p2"
ra 2 monitor
expect 1 "monitor node2 (hung)"
printf '%s\n' "$OUT" | grep -q "ocf-exit-reason:.*does not answer" || fail "no exit reason: $OUT"
echo "   reason: $(printf '%s\n' "$OUT" | sed -n 's/.*ocf-exit-reason://p')"
ra 2 stop OCF_RESKEY_CRM_meta_timeout=15000
expect 0 "stop node2 (hung: quit, TERM, KILL)"
ra 2 monitor
expect 7 "monitor node2 after stop"

echo "== 10. promotion scores when the primary dies"
PM=$WORK/pacemaker
fake_pacemaker "$PM"
FAKE="PATH=$PM/bin:$PATH"
SCORE=master-ftvm
ra 2 start
expect 0 "start node2"
notify_start 1 2
kv 1 put colour violet >/dev/null || fail "kv put while protected"
ra 1 monitor "$FAKE"
expect 8 "monitor node1 (protected primary)"
[ "$(attr_of "$PM" node2 $SCORE)" = 100 ] ||
	fail "the protected primary left node2's score at '$(attr_of "$PM" node2 $SCORE)', not 100"
echo "   node2's score is 100, set by the primary"
rm -rf "$PM/attr"
kill -s KILL "$(cat "$WORK/run1/vm1.pid")"
wait_state 2 peer-lost || fail "node2 is $(state_of 2), not peer-lost"
ra 2 monitor "$FAKE"
expect 0 "monitor node2 (lost its primary)"
[ "$(attr_of "$PM" node2 $SCORE)" = 100 ] ||
	fail "node2, holding the last checkpoint, has score '$(attr_of "$PM" node2 $SCORE)', not 100"
ra 1 stop
expect 0 "stop node1 (its VMM was killed)"
ra 1 start
expect 0 "start node1 (a waiting secondary)"
ra 1 monitor "$FAKE"
expect 0 "monitor node1 (waiting, no Promoted anywhere)"
[ -z "$(attr_of "$PM" node1 $SCORE)" ] ||
	fail "waiting node1 got boot score $(attr_of "$PM" node1 $SCORE) while node2 holds the last checkpoint"
ra_n 1 promote "" "node1 node2" "" "" node1 "" "$FAKE"
expect 1 "promote waiting node1 while node2 holds the last checkpoint"
printf '%s\n' "$OUT" | grep -q "ocf-exit-reason:.*node2 holds the guest's last checkpoint" ||
	fail "no exit reason: $OUT"
echo "   reason: $(printf '%s\n' "$OUT" | sed -n 's/.*ocf-exit-reason://p')"
[ "$(state_of 1)" = waiting ] || fail "node1 is $(state_of 1) after a refused promote"
echo node3 >"$PM/promoted"
ra 2 monitor "$FAKE" OCF_RESKEY_node_addrs="node1=10.99.0.1 node2=10.99.0.2 node3=10.99.0.3"
expect 0 "monitor node2 (lost node1; a primary runs on node3)"
[ -z "$(attr_of "$PM" node2 $SCORE)" ] ||
	fail "superseded node2 kept score $(attr_of "$PM" node2 $SCORE)"
migrate_info 2 | grep -q '"rearmed":true' || fail "superseded node2 not re-armed: $(migrate_info 2)"
echo "   node2 dropped its score and takes the new primary's stream"
ra 2 stop
expect 0 "stop node2"
ra 1 stop
expect 0 "stop node1"

echo "== 11. the event hook revokes a lost secondary"
STALE=ftvm-ftvm-stale
# hook_lost SESSION COMMAND...: node1's primary lost node2 (session SESSION)
# and runs its event hook COMMAND, as the VMM does (sh -c).
hook_lost() {
	mkdir -p "$PM/attr/node2"
	echo 100 >"$PM/attr/node2/$SCORE"
	rm -f "$WORK/run1/vm1.revoked"
	_s=$1
	shift
	ra_env 1 ftvm-event "$FAKE" FTVM_EVENT=peer-lost FTVM_PEER=10.99.0.2:4444 \
		FTVM_SESSION="$_s" FTVM_EPOCH=7 FTVM_DETAIL=test "$@"
	expect 0 "event hook $*: peer-lost"
	[ "$(attr_of "$PM" node2 $STALE)" = "$_s" ] ||
		fail "$STALE of node2 is '$(attr_of "$PM" node2 $STALE)', not $_s: $OUT"
	[ -z "$(attr_of "$PM" node2 $SCORE)" ] || fail "node2 kept score $(attr_of "$PM" node2 $SCORE)"
	[ "$(cat "$WORK/run1/vm1.revoked" 2>/dev/null)" = node2 ] || fail "node1 did not note node2 as revoked"
}
hook_lost 00000000000000a1 sh -c "$hook"
hook_lost 00000000000000a2 sh -c "'$AGENT' ftvm-event"
echo "   both mark node2's session stale and remove its score"
for n in 1 2; do
	left=$(ip netns pids "$(ns_name $n)")
	[ -z "$left" ] || fail "processes left on node$n: $left"
done
echo "PASS: ra/ftvm actions"
