# shellcheck shell=sh
#
# ftvm-cib.sh - ocf:ftvm:ftvm's side of Pacemaker, for ra/ftvm and
# ra/ftvm-event: promotion scores, the node attributes (data, stale, status),
# quorum, where the Promoted instance is, whether this node may boot the
# guest, and the primary's revocation of the other nodes' scores.
# Sourced after ocf-shellfuncs and ftvm-common.sh; POSIX sh.
# Lint: shellcheck -x -a ra/ftvm (it checks this file with the agent).

#######################################################################
# Pacemaker: scores, attributes, where the Promoted instance is.
# Outside a cluster (ocf-tester, by hand) every call here fails; that is
# logged and otherwise ignored.

# Promotion scores (crm_attribute --promotion). An instance with no score
# is never promoted by Pacemaker; see docs/operations.md.
SCORE_PRIMARY=1000	# the running primary keeps the role
SCORE_IN_SYNC=100	# a secondary holding a committed checkpoint
SCORE_BOOTSTRAP=1	# no primary anywhere and this node may boot the guest
SCORE_BOOTSTRAP_LAST=2	# ... and this node ran the last primary

# The resource name as crm_attribute/crm_resource know it (no ":N").
rsc_name() {
	echo "${OCF_RESOURCE_INSTANCE%%:*}"
}

# Sets (or with "del" removes) the promotion score of node $2 (default: here).
set_score() {
	_node=${2:-}
	if [ "$1" = del ]; then
		_out=$(crm_attribute --promotion -l reboot ${_node:+-N "$_node"} -D 2>&1)
	else
		_out=$(crm_attribute --promotion -l reboot ${_node:+-N "$_node"} -v "$1" 2>&1)
	fi
	_rc=$?
	if [ $_rc -ne 0 ]; then
		ocf_log debug "promotion score $1${_node:+ on $_node} not updated (crm_attribute rc $_rc: $_out)"
	fi
	return $_rc
}

# Prints node $1's promotion score; returns non-zero when it has none (or
# the cluster cannot say).
score_of() {
	_out=$(crm_attribute --promotion -l reboot -N "$1" -G -q 2>/dev/null) || return 1
	[ -n "$_out" ] || return 1
	echo "$_out"
}

# Other nodes whose secondary holds a checkpoint to fail over to (their
# promotion score is SCORE_IN_SYNC), in IN_SYNC_ELSEWHERE. Returns 0 when
# there is one.
in_sync_elsewhere() {
	IN_SYNC_ELSEWHERE=""
	for _n in $(all_nodes); do
		[ "$_n" = "$NODENAME" ] && continue
		[ "$(score_of "$_n")" = "$SCORE_IN_SYNC" ] &&
			IN_SYNC_ELSEWHERE="$IN_SYNC_ELSEWHERE $_n"
	done
	[ -n "$IN_SYNC_ELSEWHERE" ]
}

# The node attribute "ftvm-<resource>-data" (lifetime forever) records whose
# disk may boot the guest in replicated mode: "primary" on the node that ran
# the last primary, "secondary" on nodes whose disk a primary has (re)synced.
data_attr() {
	echo "ftvm-$(rsc_name)-data"
}

# Prints node $1's data attribute. Returns 0 (printed), 1 (absent), 2 (no
# answer from the cluster).
data_get() {
	_out=$(crm_attribute -N "$1" -n "$(data_attr)" -l forever -G -q 2>/dev/null)
	case $? in
	0)
		[ -n "$_out" ] || return 1
		echo "$_out"
		return 0
		;;
	105 | 6) return 1 ;;
	*) return 2 ;;
	esac
}

data_set() {
	_out=$(crm_attribute -N "$1" -n "$(data_attr)" -l forever -v "$2" 2>&1) ||
		ocf_log debug "$(data_attr)=$2 on $1 not recorded: $_out"
}

# Records this node's data attribute when it changes (a CIB write; the last
# value is remembered in the state directory).
data_note() {
	[ "$(cat "$DATA_CACHE" 2>/dev/null)" = "$1" ] && return 0
	if data_set "$NODENAME" "$1"; then
		echo "$1" >"$DATA_CACHE"
	fi
}

# The node attribute "ftvm-<resource>-stale" (lifetime forever) holds the
# protection session (info migrate "session") a primary went on without:
# the secondary of that session on that node holds state older than what
# clients were told, and is never promoted. Written by the primary's event
# hook (ftvm_event) with quorum, before the primary releases any output.
stale_attr() {
	echo "ftvm-$(rsc_name)-stale"
}

# Is this node's secondary (session VM_SESSION) marked stale? 0 stale,
# 1 not stale, 2 cannot tell (no answer from the cluster).
stale_check() {
	_v=""
	_v=$(crm_attribute -N "$NODENAME" -n "$(stale_attr)" -l forever -G -q 2>/dev/null)
	case $? in
	0) ;;
	105 | 6) return 1 ;;
	102 | 127)
		# not connected (or no Pacemaker tools): no cluster here, as
		# promoted_elsewhere says; nothing can have been revoked
		ocf_log debug "no cluster to ask for $(stale_attr)"
		return 1
		;;
	*) return 2 ;;
	esac
	if [ -n "$VM_SESSION" ] && [ "$_v" = "$VM_SESSION" ]; then
		return 0
	fi
	return 1
}

# Is this node's partition quorate?
quorate() {
	[ "$(crm_node -q 2>/dev/null)" = 1 ]
}

# Publishes a readable status as the private node attribute
# "ftvm-<resource>-status" (attrd_updater -Q -A -n ftvm-<resource>-status
# shows it for every node), when it changes, and logs
# it with the detail $2.
status_note() {
	[ "$(cat "$STATUS_CACHE" 2>/dev/null)" = "$1" ] && return 0
	ocf_log info "$CONF_name: $1${2:+: $2}"
	echo "$1" >"$STATUS_CACHE"
	# private (never written to the CIB): a CIB change would abort the
	# transition in progress, and a failover is a chain of transitions.
	attrd_updater -p -n "ftvm-$(rsc_name)-status" -U "$1" >/dev/null 2>&1 ||
		ocf_log debug "status attribute not published (no cluster?)"
}

# Nodes where a Promoted instance runs, other than this one, in
# PROMOTED_ELSEWHERE. Returns 0 when known, 1 when the cluster could not
# be asked, 2 when there is no cluster at all (standalone use).
#
# During an action with notification data (start/stop/promote/demote of a
# clone with notify=true) the data says it: Promoted instances being
# demoted or stopped in this transition do not count (Pacemaker orders
# those before any promotion). Otherwise crm_resource --locate.
promoted_elsewhere() {
	PROMOTED_ELSEWHERE=""
	if [ "${OCF_RESKEY_CRM_meta_notify_promoted_uname+set}" = set ] ||
		[ "${OCF_RESKEY_CRM_meta_notify_master_uname+set}" = set ]; then
		_prom=${OCF_RESKEY_CRM_meta_notify_promoted_uname-${OCF_RESKEY_CRM_meta_notify_master_uname-}}
		_gone="${OCF_RESKEY_CRM_meta_notify_demote_uname-} ${OCF_RESKEY_CRM_meta_notify_stop_uname-}"
		for _n in $_prom; do
			[ "$_n" = "$NODENAME" ] && continue
			in_list "$_n" "$_gone" && continue
			PROMOTED_ELSEWHERE="$PROMOTED_ELSEWHERE $_n"
		done
		return 0
	fi
	_out=$(crm_resource --resource "$(rsc_name)" --locate 2>&1)
	_rc=$?
	case $_rc in
	0) ;;
	102 | 127)
		# not connected (or no Pacemaker tools at all): no cluster here
		ocf_log debug "no cluster to ask where the Promoted instance is ($_out)"
		return 2
		;;
	*)
		ocf_log warn "cannot tell where the Promoted instance is: crm_resource rc $_rc: $_out"
		return 1
		;;
	esac
	# "resource ftvm-clone is running on: node1 Promoted" ("Master" before 2.1)
	for _n in $(printf '%s\n' "$_out" |
		sed -n -e 's/.*is running on: *\([^ ]*\) *Promoted.*/\1/p' \
			-e 's/.*is running on: *\([^ ]*\) *Master.*/\1/p'); do
		[ "$_n" = "$NODENAME" ] && continue
		PROMOTED_ELSEWHERE="$PROMOTED_ELSEWHERE $_n"
	done
	return 0
}

# For a secondary that lost its primary (peer-lost): is a Promoted instance
# running on a node other than the one it lost? Then the guest runs from
# another copy. (The node it lost may still show as Promoted until
# Pacemaker sees the failure: that is not counted.) Sets PROMOTED_ELSEWHERE.
superseded() {
	_lost=$(addr_node "${VM_PEER%:*}") || return 1
	promoted_elsewhere || return 1
	_others=""
	for _n in $PROMOTED_ELSEWHERE; do
		[ "$_n" = "$_lost" ] || _others="$_others $_n"
	done
	PROMOTED_ELSEWHERE=$_others
	[ -n "$_others" ]
}

# May this node boot the guest from its own disk? Only with no Promoted
# instance anywhere, and in replicated mode only if this node ran the last
# primary or no node's disk was ever written by ftvm. Sets BOOT_WHY (why not)
# and BOOT_LAST (1 if this node ran the last primary). Returns 0 yes, 1 no.
may_boot() {
	BOOT_WHY=""
	BOOT_LAST=0
	promoted_elsewhere
	case $? in
	0)
		if [ -n "$PROMOTED_ELSEWHERE" ]; then
			BOOT_WHY="a Promoted instance runs on$PROMOTED_ELSEWHERE"
			return 1
		fi
		;;
	1)
		BOOT_WHY="cannot tell whether a Promoted instance runs elsewhere"
		return 1
		;;
	2)
		ocf_log info "no cluster: treating this as a standalone fresh start"
		return 0
		;;
	esac
	# A secondary that lost its primary holds the guest's last checkpoint:
	# booting from disk here would throw that away (and, with replicated
	# storage, the writes only its disk has).
	if in_sync_elsewhere; then
		BOOT_WHY="the secondary on$IN_SYNC_ELSEWHERE holds the guest's last checkpoint; it is the one to promote"
		return 1
	fi
	_mine=$(data_get "$NODENAME")
	[ "$_mine" = primary ] && BOOT_LAST=1
	[ "$CONF_drive_mode" = replicated ] || return 0
	[ "$BOOT_LAST" = 1 ] && return 0
	for _n in $(all_nodes); do
		_v=$(data_get "$_n")
		case $? in
		0)
			BOOT_WHY="replicated storage: this node's disk may be stale ($(data_attr) of $_n is '$_v'); only the node that ran the last primary ('primary') may boot the guest"
			return 1
			;;
		2)
			BOOT_WHY="replicated storage: cannot read $(data_attr) of $_n"
			return 1
			;;
		esac
	done
	return 0
}

# On the primary: only the secondary it protects right now may keep a
# promotion score, and it has SCORE_IN_SYNC from the primary's side too (its
# own monitor may not have run yet when the primary dies). Every other
# node's is removed, so that a secondary whose link was lost (and whose
# state the primary has moved past, releasing output unprotected) is never
# promoted.
revoke_peer_scores() {
	_keep=""
	if [ "$VM_STATE" = protected ]; then
		_keep=$(addr_node "${VM_PEER%:*}")
		[ -n "$_keep" ] && set_score $SCORE_IN_SYNC "$_keep"
	fi
	for _n in $(all_nodes); do
		[ "$_n" = "$NODENAME" ] && continue
		[ "$_n" = "$_keep" ] && continue
		set_score del "$_n"
	done
}

#######################################################################
# ftvmd: the nodes' decisions on a protection session (ftvmd/arbiter.h)

# Asks the node's ftvmd to decide session $2 at checkpoint $3 for act $1:
# "revoke" (the primary goes on without its secondary) or "claim" (the
# secondary takes over). The first valid one wins for good, on every node.
# Returns 0 granted, 3 the other act was decided first, 1 undecided (no
# majority of ftvmd instances, no answer), 2 no ftvmd (ARBITER_OUT says
# why). Without ftvmd_control: 0 (no arbitration configured).
arbiter_request() {
	ARBITER_OUT=""
	[ -n "$OCF_RESKEY_ftvmd_control" ] || return 0
	ARBITER_OUT=$("$FTVMD" --request "$1" --session "$2" --epoch "${3:-0}" \
		--control "$OCF_RESKEY_ftvmd_control" --timeout 12 2>&1)
}

