# shellcheck shell=sh
#
# ftvm-common.sh - the parts of ocf:ftvm:ftvm that both of its entry points
# use, ra/ftvm (the agent) and ra/ftvm-event (the VMM's event hook): the
# return code names and the parameters' defaults, small helpers, nodes and
# addresses, validation, and the paths under the state directory.
# Sourced after ocf-shellfuncs; POSIX sh.
# Lint: shellcheck -x -a ra/ftvm (it checks this file with the agent).

#######################################################################
# Initialization

# Older ocf-returncodes know only the old name.
: "${OCF_RUNNING_PROMOTED:=${OCF_RUNNING_MASTER:-8}}"

OCF_RESKEY_port_default=4444
OCF_RESKEY_state_dir_default=/run/ftvm
OCF_RESKEY_sync_timeout_default=60
OCF_RESKEY_vmm_timeout_default=5
OCF_RESKEY_watcher_fifo_default=""
OCF_RESKEY_ftvmd_control_default=""

: "${OCF_RESKEY_config=}"
: "${OCF_RESKEY_node_addrs=}"
: "${OCF_RESKEY_port=${OCF_RESKEY_port_default}}"
: "${OCF_RESKEY_state_dir=${OCF_RESKEY_state_dir_default}}"
: "${OCF_RESKEY_sync_timeout=${OCF_RESKEY_sync_timeout_default}}"
: "${OCF_RESKEY_vmm_timeout=${OCF_RESKEY_vmm_timeout_default}}"
: "${OCF_RESKEY_watcher_fifo=${OCF_RESKEY_watcher_fifo_default}}"
: "${OCF_RESKEY_ftvmd_control=${OCF_RESKEY_ftvmd_control_default}}"
: "${OCF_RESKEY_log_dir=}"
: "${OCF_RESKEY_CRM_meta_interval=0}"
: "${OCF_RESKEY_CRM_meta_timeout=60000}"

#######################################################################
# Small helpers

# Prints a value quoted for eval: 'it'\''s'. (No fork unless the value
# has a quote: every action reads the configuration, and notifications are
# on the failover's critical path.)
ftvm_quote() {
	case "$1" in
	*\'*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
	*) printf "'%s'" "$1" ;;
	esac
}

# Reads the VM's configuration file in a subshell, so that it cannot touch
# the agent's own variables, and sets CONF_<key> here.
ftvm_read_config() {
	_dump=$(
		unset name kernel append memory smp drive drive_mode tap mac ftvm ftvmctl ftvmd \
			policy heartbeat_ms heartbeat_timeout_ms test_mode
		# shellcheck disable=SC1090
		. "$OCF_RESKEY_config" >/dev/null 2>&1 || exit 1
		for _k in name kernel append memory smp drive drive_mode tap mac ftvm ftvmctl ftvmd \
			policy heartbeat_ms heartbeat_timeout_ms test_mode; do
			eval "_v=\${$_k-}"
			printf 'CONF_%s=' "$_k"
			ftvm_quote "$_v"
			echo
		done
	) || return 1
	eval "$_dump"
	: "${CONF_smp:=1}"
	: "${CONF_drive_mode:=shared}"
	: "${CONF_ftvm:=ftvm}"
	: "${CONF_ftvmctl:=ftvmctl}"
	: "${CONF_ftvmd:=ftvmd}"
	return 0
}

# Value of a string member of a one-line JSON object ("" if absent).
# Quotes inside strings are escaped, so the last unescaped match is the
# top-level member.
json_str() {
	printf '%s\n' "$2" | sed -n "s/.*[{,]\"$1\":\"\([^\"]*\)\".*/\1/p"
}

# Value of an integer member ("" if absent).
json_num() {
	printf '%s\n' "$2" | sed -n "s/.*[{,]\"$1\":\(-\{0,1\}[0-9][0-9]*\).*/\1/p"
}

# The readable message of an ftvmctl failure: the error's desc, else the
# text ftvmctl printed.
ctl_error() {
	_d=$(json_str desc "$1")
	if [ -n "$_d" ]; then
		printf '%s\n' "$_d"
	else
		printf '%s\n' "$1" | tr '\n' ' ' | sed 's/ *$//'
	fi
}

# Is word $1 in the space-separated list $2?
in_list() {
	case " $2 " in
	*" $1 "*) return 0 ;;
	esac
	return 1
}

# Seconds left for this action, less a margin for the agent's own work.
action_budget() {
	_t=$((OCF_RESKEY_CRM_meta_timeout / 1000 - 5))
	[ "$_t" -lt 5 ] && _t=5
	echo "$_t"
}

now() {
	date +%s
}

#######################################################################
# Nodes and addresses

# This node's name as Pacemaker knows it.
ftvm_nodename() {
	if [ -n "${OCF_RESKEY_CRM_meta_on_node:-}" ]; then
		echo "$OCF_RESKEY_CRM_meta_on_node"
	else
		crm_node -n 2>/dev/null || uname -n
	fi
}

# Replication address of node $1.
node_addr() {
	for _p in $OCF_RESKEY_node_addrs; do
		case "$_p" in
		"$1="*)
			echo "${_p#*=}"
			return 0
			;;
		esac
	done
	return 1
}

# Node whose replication address is $1 ("" if none).
addr_node() {
	for _p in $OCF_RESKEY_node_addrs; do
		if [ "${_p#*=}" = "$1" ]; then
			echo "${_p%%=*}"
			return 0
		fi
	done
	return 1
}

# Every node named in node_addrs.
all_nodes() {
	for _p in $OCF_RESKEY_node_addrs; do
		printf '%s ' "${_p%%=*}"
	done
}

#######################################################################
# Validation

ftvm_validate() {
	if [ -z "$OCF_RESKEY_config" ]; then
		ocf_exit_reason "parameter 'config' is required"
		return $OCF_ERR_CONFIGURED
	fi
	if [ ! -r "$OCF_RESKEY_config" ]; then
		ocf_exit_reason "VM configuration $OCF_RESKEY_config is missing or unreadable"
		return $OCF_ERR_INSTALLED
	fi
	if ! ftvm_read_config; then
		ocf_exit_reason "VM configuration $OCF_RESKEY_config cannot be read as shell key=value lines"
		return $OCF_ERR_CONFIGURED
	fi
	# shellcheck disable=SC2154  # CONF_* are set by ftvm_read_config's eval
	case "$CONF_name" in
	'' | *[!A-Za-z0-9_.-]*)
		ocf_exit_reason "$OCF_RESKEY_config: 'name' must be set to letters, digits, '_', '.', '-' (is '$CONF_name')"
		return $OCF_ERR_CONFIGURED
		;;
	esac
	if [ -z "$CONF_kernel" ]; then
		ocf_exit_reason "$OCF_RESKEY_config: 'kernel' is not set"
		return $OCF_ERR_CONFIGURED
	fi
	case "$CONF_drive_mode" in
	shared | replicated) ;;
	*)
		ocf_exit_reason "$OCF_RESKEY_config: drive_mode must be shared or replicated (is '$CONF_drive_mode')"
		return $OCF_ERR_CONFIGURED
		;;
	esac
	case "$OCF_RESKEY_port" in
	'' | *[!0-9]*)
		ocf_exit_reason "parameter 'port' must be a number (is '$OCF_RESKEY_port')"
		return $OCF_ERR_CONFIGURED
		;;
	esac
	_x=""
	for _v in sync_timeout vmm_timeout; do
		eval "_x=\$OCF_RESKEY_$_v"
		case "$_x" in
		'' | *[!0-9]*)
			ocf_exit_reason "parameter '$_v' must be a whole number of seconds (is '$_x')"
			return $OCF_ERR_CONFIGURED
			;;
		esac
	done
	case "${OCF_RESKEY_tls_creds:-}" in
	'') ;;
	psk:*)
		if [ ! -r "${OCF_RESKEY_tls_creds#psk:}" ]; then
			ocf_exit_reason "tls_creds: the key file ${OCF_RESKEY_tls_creds#psk:} is missing or unreadable"
			return $OCF_ERR_INSTALLED
		fi
		;;
	x509:*)
		if [ ! -r "${OCF_RESKEY_tls_creds#x509:}/ca-cert.pem" ]; then
			ocf_exit_reason "tls_creds: ${OCF_RESKEY_tls_creds#x509:}/ca-cert.pem is missing or unreadable"
			return $OCF_ERR_INSTALLED
		fi
		;;
	*)
		ocf_exit_reason "parameter 'tls_creds' must be psk:FILE or x509:DIR (is '$OCF_RESKEY_tls_creds')"
		return $OCF_ERR_CONFIGURED
		;;
	esac
	if [ -z "$OCF_RESKEY_node_addrs" ]; then
		ocf_exit_reason "parameter 'node_addrs' is required (nodename=address ...)"
		return $OCF_ERR_CONFIGURED
	fi
	for _p in $OCF_RESKEY_node_addrs; do
		case "$_p" in
		?*=?*) ;;
		*)
			ocf_exit_reason "node_addrs: '$_p' is not nodename=address"
			return $OCF_ERR_CONFIGURED
			;;
		esac
	done
	if ! MY_ADDR=$(node_addr "$NODENAME"); then
		ocf_exit_reason "node_addrs has no address for this node ($NODENAME)"
		return $OCF_ERR_CONFIGURED
	fi
	if [ "${OCF_RESKEY_CRM_meta_notify+set}" = set ] && ocf_is_ms &&
		! ocf_is_true "$OCF_RESKEY_CRM_meta_notify"; then
		ocf_exit_reason "the promotable clone needs notify=true (re-protection and promotion use notifications)"
		return $OCF_ERR_CONFIGURED
	fi
	# Binaries: have_binary honours ocf-tester's OCF_TESTER_FAIL_HAVE_BINARY.
	for _b in "$CONF_ftvm" "$CONF_ftvmctl"; do
		if ! have_binary "$_b"; then
			ocf_exit_reason "cannot find the program '$_b' (set ftvm= / ftvmctl= in $OCF_RESKEY_config or PATH)"
			return $OCF_ERR_INSTALLED
		fi
	done
	FTVM=$(command -v "$CONF_ftvm")
	FTVMCTL=$(command -v "$CONF_ftvmctl")
	FTVMD=""
	if [ -n "$OCF_RESKEY_ftvmd_control" ]; then
		if ! have_binary "$CONF_ftvmd"; then
			ocf_exit_reason "ftvmd_control is set but the program '$CONF_ftvmd' is missing (set ftvmd= in $OCF_RESKEY_config or PATH)"
			return $OCF_ERR_INSTALLED
		fi
		FTVMD=$(command -v "$CONF_ftvmd")
	fi
	if [ ! -r "$CONF_kernel" ]; then
		ocf_exit_reason "kernel $CONF_kernel is missing on this node"
		return $OCF_ERR_INSTALLED
	fi
	if [ -n "$CONF_drive" ] && [ ! -e "$CONF_drive" ]; then
		ocf_exit_reason "disk image $CONF_drive is missing on this node"
		return $OCF_ERR_INSTALLED
	fi
	if [ -n "$CONF_tap" ] && [ ! -e /dev/net/tun ]; then
		ocf_exit_reason "/dev/net/tun is missing: no tap device '$CONF_tap' possible"
		return $OCF_ERR_INSTALLED
	fi
	if [ ! -e /dev/kvm ]; then
		ocf_exit_reason "/dev/kvm is missing on this node"
		return $OCF_ERR_INSTALLED
	fi
	return $OCF_SUCCESS
}

# Paths under the state directory (the VM's name is known after validation).
ftvm_paths() {
	_base="${OCF_RESKEY_state_dir%/}/$CONF_name"
	SOCK="$_base.sock"
	PIDFILE="$_base.pid"
	_logs="${OCF_RESKEY_log_dir:-$OCF_RESKEY_state_dir}"
	LOG="${_logs%/}/$CONF_name.log"
	SERIAL="${_logs%/}/$CONF_name.serial"
	PEERS="$_base.peers"
	STATUS_CACHE="$_base.status"
	DATA_CACHE="$_base.data"
	REVOKED="$_base.revoked"
	CTL_ERR="$_base.ctl-err"
}
