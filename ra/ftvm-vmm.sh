# shellcheck shell=sh
#
# ftvm-vmm.sh - ocf:ftvm:ftvm's control of the VMM, for ra/ftvm: ftvmctl
# commands, the VMM's process and state, starting and ending ftvm, and the
# primary's protection towards a secondary.
# Sourced after ocf-shellfuncs, ftvm-common.sh and ftvm-cib.sh; POSIX sh.
# Lint: shellcheck -x -a ra/ftvm (it checks this file with the agent).

#######################################################################
# The VMM

# Runs one monitor command in JSON mode: CTL_OUT holds the answer line (or
# ftvmctl's message), the return is ftvmctl's status (0 ok, 1 error answer,
# 2 unreachable or no answer in time).
ctl() {
	CTL_OUT=$("$FTVMCTL" "$SOCK" --json --timeout "$OCF_RESKEY_vmm_timeout" "$@" 2>&1)
}

# Is process $1 alive? A zombie is not: the VMM is reparented when the
# agent that started it exits, and its new parent may reap it late.
pid_alive() {
	kill -s 0 "$1" 2>/dev/null || return 1
	[ -r "/proc/$1/stat" ] || return 0
	[ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]
}

# The VMM's pid if its process is alive, else "".
vmm_pid() {
	_pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	case "$_pid" in
	'' | *[!0-9]*) return 1 ;;
	esac
	pid_alive "$_pid" || return 1
	# A recycled pid is some other program: ours has our socket on its
	# command line.
	if [ -r "/proc/$_pid/cmdline" ] &&
		! tr '\0' ' ' <"/proc/$_pid/cmdline" | grep -qF -- "unix:$SOCK"; then
		return 1
	fi
	echo "$_pid"
}

# One monitor command whose answer comes as shell assignments (ftvmctl
# --shell=P_, eval-safe whatever a value holds) and is evaluated here: P_KEY
# for every top-level member. Returns ftvmctl's status; CTL_OUT holds its
# message when it failed.
ctl_shell() {
	_p=$1
	shift
	_sh=$("$FTVMCTL" "$SOCK" --shell="$_p" --timeout "$OCF_RESKEY_vmm_timeout" "$@" 2>"$CTL_ERR")
	_rc=$?
	if [ $_rc -ne 0 ]; then
		CTL_OUT=$(cat "$CTL_ERR" 2>/dev/null)
		return $_rc
	fi
	eval "$_sh"
	return 0
}

# Reads the VMM's state into VM_STATE, VM_ROLE, VM_COMMITTED, VM_PEER,
# VM_ERROR, VM_STATUS, VM_LAG, VM_SESSION, VM_AGE. Returns 0 (answered), 7 (not running),
# 1 (running but not answering: hung; VM_ERROR says why).
vmm_query() {
	VM_STATE="" VM_ROLE="" VM_COMMITTED=0 VM_PEER="" VM_ERROR="" VM_STATUS="" VM_LAG=0
	VM_SESSION="" VM_AGE=0
	_pid=$(vmm_pid)
	M_STATE="" M_ROLE="" M_COMMITTED_EPOCH="" M_PEER="" M_LAST_ERROR="" M_PEER_LAG_MS=""
	M_SESSION="" M_COMMITTED_AGE_MS="" S_STATUS=""
	if ! ctl_shell M_ info migrate; then
		if [ -z "$_pid" ]; then
			return 7
		fi
		VM_ERROR="ftvm (pid $_pid) does not answer on $SOCK: $(ctl_error "$CTL_OUT")"
		return 1
	fi
	VM_STATE=$M_STATE
	VM_ROLE=$M_ROLE
	VM_COMMITTED=${M_COMMITTED_EPOCH:-0}
	VM_PEER=$M_PEER
	VM_ERROR=$M_LAST_ERROR
	VM_LAG=${M_PEER_LAG_MS:-0}
	VM_SESSION=$M_SESSION
	VM_AGE=${M_COMMITTED_AGE_MS:-0}
	if ! ctl_shell S_ info status; then
		VM_ERROR="ftvm does not answer 'info status' on $SOCK: $(ctl_error "$CTL_OUT")"
		return 1
	fi
	VM_STATUS=$S_STATUS
	return 0
}

# Waits, through the VMM's events (ftvmctl --events --until), until its
# state is one of $1 (comma-separated) or $2 seconds have passed; then
# reads it (vmm_query). Returns 0 when it got there, 1 otherwise.
vmm_wait_state() {
	"$FTVMCTL" "$SOCK" --events --until "$1" --timeout "$2" >/dev/null 2>"$CTL_ERR"
	_rc=$?
	vmm_query
	[ $_rc -eq 0 ]
}

# Starts ftvm in the background, in its own session; $1 = "incoming" for a
# secondary, "boot" for a primary booting the guest from its disk.
vmm_launch() {
	mkdir -p "$OCF_RESKEY_state_dir" || {
		ocf_exit_reason "cannot create $OCF_RESKEY_state_dir"
		return $OCF_ERR_PERM
	}
	if [ -n "$OCF_RESKEY_log_dir" ] && ! mkdir -p "$OCF_RESKEY_log_dir"; then
		ocf_exit_reason "cannot create log_dir $OCF_RESKEY_log_dir"
		return $OCF_ERR_PERM
	fi
	rm -f "$SOCK" "$PIDFILE"
	set -- "$1" --name "$CONF_name" --kernel "$CONF_kernel" --smp "$CONF_smp" \
		--serial "file:$SERIAL" --monitor "unix:$SOCK"
	[ -n "$CONF_memory" ] && set -- "$@" --memory "$CONF_memory"
	[ -n "$CONF_append" ] && set -- "$@" --append "$CONF_append"
	[ -n "$CONF_drive" ] && set -- "$@" --drive "file=$CONF_drive,mode=$CONF_drive_mode"
	if [ -n "$CONF_tap" ]; then
		set -- "$@" --netdev "tap,ifname=$CONF_tap${CONF_mac:+,mac=$CONF_mac}"
	fi
	[ -n "$CONF_policy" ] && set -- "$@" --ft-policy "$CONF_policy"
	# Test clusters only: the VMM's test-only commands (x-inject, x-ram-crc).
	[ "$CONF_test_mode" = 1 ] && set -- "$@" --test-mode
	[ -n "$CONF_heartbeat_ms" ] && set -- "$@" --heartbeat-ms "$CONF_heartbeat_ms"
	[ -n "$CONF_heartbeat_timeout_ms" ] &&
		set -- "$@" --heartbeat-timeout-ms "$CONF_heartbeat_timeout_ms"
	# On losing its secondary the primary holds all output until the event
	# hook has made that secondary unpromotable (ftvm-event). The VMM
	# inherits this action's environment (OCF_RESKEY_*, OCF_RESOURCE_INSTANCE).
	set -- "$@" --pidfile "$PIDFILE" --event-hook "$(ftvm_quote "$FTVM_LIB/ftvm-event")"
	[ -n "${OCF_RESKEY_tls_creds:-}" ] && set -- "$@" --tls-creds "$OCF_RESKEY_tls_creds"
	if [ "$1" = incoming ]; then
		set -- "$@" --incoming "tcp:$MY_ADDR:$OCF_RESKEY_port"
	fi
	shift
	echo "=== $(date '+%Y-%m-%d %H:%M:%S') $__OCF_ACTION: $FTVM $*" >>"$LOG"
	# setsid: the VMM outlives this agent and is not in its process group.
	setsid "$FTVM" "$@" >>"$LOG" 2>&1 </dev/null &
	LAUNCH_PID=$!	# ftvm itself writes PIDFILE (--pidfile) once it runs
	ocf_log info "$CONF_name: started ftvm (pid $LAUNCH_PID): $*"
	return $OCF_SUCCESS
}

# Waits until the just-launched VMM answers on its monitor (and, for a
# primary, runs the guest).
vmm_wait_up() {
	_deadline=$(($(now) + $(action_budget)))
	while :; do
		vmm_query
		case $? in
		0)
			if [ "$1" != running ] || [ "$VM_STATUS" = running ]; then
				return $OCF_SUCCESS
			fi
			;;
		7)
			if [ -z "$(vmm_pid)" ] && ! pid_alive "$LAUNCH_PID"; then
				ocf_exit_reason "ftvm exited at start: $(tail -n 3 "$LOG" 2>/dev/null | tr '\n' ' ')"
				return $OCF_ERR_GENERIC
			fi
			;;
		esac
		if [ "$(now)" -ge "$_deadline" ]; then
			ocf_exit_reason "ftvm did not come up in time (${VM_ERROR:-no answer on $SOCK}; status ${VM_STATUS:-none})"
			return $OCF_ERR_GENERIC
		fi
		sleep 0.2
	done
}

# Ends the VMM: `quit`, then TERM, then KILL; $1 = seconds to allow in all.
vmm_quit() {
	_pid=$(vmm_pid)
	if [ -z "$_pid" ]; then
		# No process of ours; a VMM without a pid file still has a monitor.
		ctl quit >/dev/null 2>&1
		rm -f "$SOCK" "$PIDFILE"
		return 0
	fi
	_all=${1:-30}
	_end=$(($(now) + _all / 2))
	if ! ctl quit; then
		# A VMM that does not take the command will not act on it later.
		ocf_log warn "$CONF_name: quit: $(ctl_error "$CTL_OUT")"
		_end=0
	fi
	while pid_alive "$_pid" && [ "$(now)" -lt "$_end" ]; do
		sleep 0.1
	done
	if pid_alive "$_pid"; then
		ocf_log warn "$CONF_name: ftvm (pid $_pid) still running after quit: SIGTERM"
		kill -s TERM "$_pid" 2>/dev/null
		kill -s CONT "$_pid" 2>/dev/null	# a stopped process acts on TERM only once continued
		_end=$(($(now) + _all / 4 + 1))
		while pid_alive "$_pid" && [ "$(now)" -lt "$_end" ]; do
			sleep 0.1
		done
	fi
	if pid_alive "$_pid"; then
		ocf_log warn "$CONF_name: ftvm (pid $_pid) still running after SIGTERM: SIGKILL"
		kill -s KILL "$_pid" 2>/dev/null
		sleep 0.5
	fi
	if pid_alive "$_pid"; then
		return 1
	fi
	rm -f "$SOCK" "$PIDFILE"
	return 0
}

#######################################################################
# Protection (on the primary)

# The nodes that will run an Unpromoted instance once the current transition
# is done, from the notification data, in node_addrs order.
notify_peers() {
	_unprom=${OCF_RESKEY_CRM_meta_notify_unpromoted_uname-${OCF_RESKEY_CRM_meta_notify_slave_uname-}}
	_start=${OCF_RESKEY_CRM_meta_notify_start_uname-}
	_stop=${OCF_RESKEY_CRM_meta_notify_stop_uname-}
	_demote=${OCF_RESKEY_CRM_meta_notify_demote_uname-}
	_promote=${OCF_RESKEY_CRM_meta_notify_promote_uname-}
	_cand="$_unprom $_start $_demote"
	for _n in $(all_nodes); do
		[ "$_n" = "$NODENAME" ] && continue
		in_list "$_n" "$_cand" || continue
		in_list "$_n" "$_promote" && continue
		if in_list "$_n" "$_stop" && ! in_list "$_n" "$_start"; then
			continue
		fi
		printf '%s ' "$_n"
	done
}

# Starts protection towards the first peer in the peers file that accepts.
# $1 = seconds to wait for "protected", trying the next peer when one
# fails; 0 = do not wait (monitor), and rotate the file so that the next
# retry starts with the next peer. Returns 0 once protected (or started,
# when not waiting), 1 otherwise.
protect() {
	_wait=$1
	_peers=$(cat "$PEERS" 2>/dev/null)
	[ -n "$_peers" ] || return 1
	# The secondary this primary last revoked (its link or node failed)
	# is tried last: another node is more likely to answer.
	_rev=$(cat "$REVOKED" 2>/dev/null)
	if [ -n "$_rev" ] && in_list "$_rev" "$_peers"; then
		_p=""
		for _n in $_peers; do
			[ "$_n" = "$_rev" ] || _p="$_p $_n"
		done
		_peers="$_p $_rev"
	fi
	for _n in $_peers; do
		_addr=$(node_addr "$_n") || continue
		_uri="tcp:$_addr:$OCF_RESKEY_port"
		if ! ctl migrate -d -k "$_uri"; then
			ocf_log warn "$CONF_name: protection towards $_n ($_uri) refused: $(ctl_error "$CTL_OUT")"
			continue
		fi
		ocf_log info "$CONF_name: protecting towards $_n ($_uri)"
		if [ "$_wait" -eq 0 ]; then
			# Not waiting (monitor): next time, start with the next peer.
			_after="" _before="" _seen=0
			for _m in $_peers; do
				if [ $_seen = 1 ]; then
					_after="$_after $_m"
				else
					_before="$_before $_m"
				fi
				[ "$_m" = "$_n" ] && _seen=1
			done
			echo $_after $_before >"$PEERS"
			return 0
		fi
		# Every state a sync can end in (ft/ft_states.h; ftvmctl refuses
		# a name that is not one).
		vmm_wait_state protected,unprotected,revoking-peer,stopped,handing-over,handed-over "$_wait"
		case "$VM_STATE" in
		protected)
			ocf_log info "$CONF_name: protected by $_n"
			set_score $SCORE_IN_SYNC "$_n"
			return 0
			;;
		setup | syncing)
			ocf_log warn "$CONF_name: $_n not in sync after ${_wait}s ($VM_STATE); protection continues in the background"
			return 1
			;;
		*)
			ocf_log warn "$CONF_name: protection towards $_n failed ($VM_STATE: $VM_ERROR)"
			;;
		esac
	done
	return 1
}
