#!/bin/sh
# Installs the resource agent as ocf:ftvm:ftvm, and the watcher if built:
#   $DESTDIR$OCF_ROOT/resource.d/ftvm/ftvm   (mode 0755)
#   $DESTDIR$OCF_ROOT/lib/ftvm/ftvm-common.sh, ftvm-cib.sh, ftvm-vmm.sh
#   (mode 0644: the agent's library files) and ftvm-event (mode 0755: the
#   VMM's event hook)
#   $DESTDIR/usr/sbin/ftvmd, $DESTDIR/etc/systemd/system/ftvmd@.service
#   (ftvmd from $BUILD_DIR, default ./build, when it is there)
# OCF_ROOT defaults to /usr/lib/ocf. Run on every cluster node (or package
# it). ftvm and ftvmctl must be in PATH on the nodes, or named in each VM's
# configuration file (ftvm=, ftvmctl=). See docs/operations.md.
#
#   sudo ra/install.sh            install
#   sudo ra/install.sh --check    install, then check the meta-data against
#                                 the OCF DTD (needs xmllint)
#   sudo ra/install.sh --psk FILE make the replication link's pre-shared key
#                                 (32 random bytes, hex, mode 0600) unless
#                                 FILE exists; copy it to every node at the
#                                 same path (scp -p), then tls_creds=psk:FILE
#   sudo ra/install.sh --mce-trigger
#                                 only the machine-check trigger:
#                                 $DESTDIR/usr/lib/ftvm/ftvm-mce-trigger
#                                 (0755), set as rasdaemon's MC_UE_TRIGGER
#                                 (and MCE_UE_TRIGGER where it has one) in
#                                 its environment file when its build runs
#                                 triggers; linked into /etc/mcelog, with
#                                 the mcelog.conf lines printed, when mcelog
#                                 is there; says what to do when neither
#                                 can run it. RASDAEMON (the binary) and
#                                 RASDAEMON_CONF (its file, without
#                                 DESTDIR) override what is found.
set -eu

if [ "${1:-}" = --psk ]; then
	key=${2:?"usage: ra/install.sh --psk FILE"}
	if [ -e "$key" ]; then
		echo "$key exists: left as it is"
	else
		install -d -m 0700 "$(dirname "$key")"
		(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$key" && echo >>"$key")
		echo "made $key (mode 0600). Copy it to every node at the same path, e.g."
		echo "  scp -p $key node2:$key"
	fi
	echo "then: pcs resource update <vm> tls_creds=psk:$key (docs/security.md)"
	exit 0
fi

here=$(cd "$(dirname "$0")" && pwd)

# set_env_var FILE KEY VALUE: KEY=VALUE in a shell-style environment file
# (rasdaemon's), the rest of the file kept byte for byte. Active KEY lines
# that are empty or name ftvm-mce-trigger already are replaced in place
# (all of them: the last assignment wins); none: appended. Returns 2, changing nothing, when
# KEY is set to something else (an administrator's own trigger, in
# SET_ENV_OTHER).
set_env_var() {
	_f=$1 _k=$2 _v=$3
	_re="^[ \\t]*(export[ \\t]+)?$_k="
	if [ -f "$_f" ]; then
		_cur=$(awk -v re="$_re" -v v="$_v" '$0 ~ re {
				x = $0; sub(re, "", x); sub("[ \t]*(#.*)?$", "", x)
				gsub("[\"\047]", "", x)
				if (x != "" && x != v && x !~ "(^|/)ftvm-mce-trigger$") print x
			}' "$_f" | tail -n 1)
		if [ -n "$_cur" ]; then
			SET_ENV_OTHER=$_cur
			return 2
		fi
		if grep -Eq "^[[:space:]]*(export[[:space:]]+)?$_k=" "$_f"; then
			_tmp=$(mktemp "$_f.ftvm.XXXXXX")
			awk -v re="$_re" -v kv="$_k=$_v" '$0 ~ re { print kv; next } { print }' "$_f" >"$_tmp"
			# into the file itself: its inode, mode and owner stay
			cmp -s "$_tmp" "$_f" || cat "$_tmp" >"$_f"
			rm -f "$_tmp"
			return 0
		fi
	else
		install -d -m 0755 "$(dirname "$_f")"
	fi
	printf '# ftvm: uncorrected errors to ftvmd (ra/install.sh --mce-trigger)\n%s=%s\n' "$_k" "$_v" >>"$_f"
}

# The machine-check trigger (ra/ftvm-mce-trigger) and its configuration.
mce_trigger() {
	trig=/usr/lib/ftvm/ftvm-mce-trigger
	install -D -m 0755 "$here/ftvm-mce-trigger" "${DESTDIR:-}$trig"
	echo "installed ${DESTDIR:-}$trig"
	configured=""

	rd=${RASDAEMON:-$(command -v rasdaemon 2>/dev/null || true)}
	if [ -z "$rd" ] && [ -x /usr/sbin/rasdaemon ]; then
		rd=/usr/sbin/rasdaemon	# (sbin not in PATH)
	fi
	if [ -n "$rd" ] && [ -x "$rd" ]; then
		rdver=$("$rd" --version 2>/dev/null | head -n 1 || true)
		[ -n "$rdver" ] || rdver="rasdaemon (version unknown)"
		conf=${RASDAEMON_CONF:-}
		if [ -z "$conf" ]; then
			# its unit's EnvironmentFile= (Debian: /etc/default/rasdaemon,
			# upstream: /etc/sysconfig/rasdaemon)
			for u in /etc/systemd/system/rasdaemon.service /lib/systemd/system/rasdaemon.service \
				/usr/lib/systemd/system/rasdaemon.service; do
				[ -r "$u" ] || continue
				conf=$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$u" | head -n 1)
				[ -z "$conf" ] || break
			done
		fi
		if [ -z "$conf" ]; then
			conf=/etc/default/rasdaemon
			[ -d /etc/default ] || [ ! -d /etc/sysconfig ] || conf=/etc/sysconfig/rasdaemon
		fi
		if grep -aq MC_UE_TRIGGER "$rd"; then
			f=${DESTDIR:-}$conf
			# with TRIGGER_DIR set, rasdaemon takes trigger names relative to it
			tdir=""
			if [ -f "$f" ]; then
				tdir=$(sed -n "s/^[[:space:]]*TRIGGER_DIR=[\"']\{0,1\}\([^\"' #]*\).*/\1/p" "$f" | tail -n 1)
			fi
			val=$trig
			if [ -n "$tdir" ]; then
				install -d -m 0755 "${DESTDIR:-}$tdir"
				ln -sfn "$trig" "${DESTDIR:-}$tdir/ftvm-mce-trigger"
				val=ftvm-mce-trigger
				echo "linked ${DESTDIR:-}$tdir/ftvm-mce-trigger -> $trig (TRIGGER_DIR=$tdir)"
			fi
			keys=MC_UE_TRIGGER
			if grep -aq MCE_UE_TRIGGER "$rd"; then
				keys="$keys MCE_UE_TRIGGER"
			fi
			for k in $keys; do
				SET_ENV_OTHER=""
				if set_env_var "$f" "$k" "$val"; then
					echo "rasdaemon: $k=$val in $f ($rdver)"
					configured="$configured rasdaemon"
				else
					echo "rasdaemon: $k is $SET_ENV_OTHER in $f: left as it is; have that" \
						"trigger run $trig too (it exits 0), or set $k=$val yourself" >&2
				fi
			done
			case $configured in
			*rasdaemon*) echo "  then: systemctl restart rasdaemon (it reads $conf at start only)" ;;
			esac
		else
			cat >&2 <<EOF
rasdaemon: NO trigger support in $rdver ($rd):
  no MC_UE_TRIGGER in it (upstream rasdaemon runs triggers from 0.8.1 on).
  It logs machine checks but cannot pass them on; left as it is: $conf.
  For machine checks to move the VM, either
  - upgrade rasdaemon to a build with triggers, then run
    ra/install.sh --mce-trigger again (it sets MC_UE_TRIGGER), or
  - use mcelog (its trigger lines are printed when /etc/mcelog exists), or
  - have a monitor of your own write one "mce ..." line to
    /run/ftvmd-<resource>.events (docs/operations.md, "ftvmd").
EOF
		fi
	fi

	if [ -d "${DESTDIR:-}/etc/mcelog" ] || [ -d /etc/mcelog ]; then
		# mcelog runs triggers by name from its [trigger] directory
		# (/etc/mcelog): an absolute path there is not found
		install -d -m 0755 "${DESTDIR:-}/etc/mcelog"
		ln -sfn "$trig" "${DESTDIR:-}/etc/mcelog/ftvm-mce-trigger"
		echo "linked ${DESTDIR:-}/etc/mcelog/ftvm-mce-trigger -> $trig"
		cat <<EOF
mcelog: set these in /etc/mcelog/mcelog.conf (daemon mode; each key once:
  they replace dimm-error-trigger and socket-memory-error-trigger for
  uncorrected errors, the corrected-error triggers stay), then restart it:
    [dimm]
    uc-error-trigger = ftvm-mce-trigger
    uc-error-threshold = 1 / 24h
    [socket]
    mem-uc-error-trigger = ftvm-mce-trigger
    mem-uc-error-threshold = 1 / 24h
    bus-uc-threshold-trigger = ftvm-mce-trigger
EOF
		configured="$configured mcelog"
	fi

	if [ -z "$configured" ]; then
		[ -n "$rd" ] || echo "no rasdaemon and no /etc/mcelog here: only the trigger was installed" >&2
		echo "nothing runs $trig yet: a machine check here does not move the VM" >&2
	fi
}

if [ "${1:-}" = --mce-trigger ]; then
	mce_trigger
	exit 0
fi

root=${OCF_ROOT:-/usr/lib/ocf}
dest="${DESTDIR:-}$root/resource.d/ftvm"
lib="${DESTDIR:-}$root/lib/ftvm"

# The library files first: an agent that runs finds them.
install -d -m 0755 "$lib"
for f in ftvm-common.sh ftvm-cib.sh ftvm-vmm.sh; do
	install -m 0644 "$here/$f" "$lib/$f"
done
install -m 0755 "$here/ftvm-event" "$lib/ftvm-event"
echo "installed $lib/ (ftvm-common.sh ftvm-cib.sh ftvm-vmm.sh ftvm-event)"

install -d -m 0755 "$dest"
install -m 0755 "$here/ftvm" "$dest/ftvm"
echo "installed $dest/ftvm (ocf:ftvm:ftvm)"

build=${BUILD_DIR:-$here/../build}
if [ -x "$build/ftvmd" ]; then
	install -D -m 0755 "$build/ftvmd" "${DESTDIR:-}/usr/sbin/ftvmd"
	install -D -m 0644 "$here/ftvmd.service" "${DESTDIR:-}/etc/systemd/system/ftvmd@.service"
	echo "installed ${DESTDIR:-}/usr/sbin/ftvmd and ftvmd@.service (systemctl enable --now ftvmd@<resource>)"
else
	echo "ftvmd not installed: no $build/ftvmd (./scripts/build.sh builds it)"
fi

if [ "${1:-}" = --check ]; then
	dtd_dir=/usr/share/resource-agents
	[ -r "$dtd_dir/ra-api-1.dtd" ] || {
		echo "install: no $dtd_dir/ra-api-1.dtd (Debian package resource-agents)" >&2
		exit 1
	}
	OCF_ROOT=$root "$dest/ftvm" meta-data | (cd "$dtd_dir" && xmllint --noout --valid -)
	echo "meta-data valid against ra-api-1.dtd"
fi
