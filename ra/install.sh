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
