#!/bin/sh
# Fetches lwIP, the guest's TCP/IP stack, from Debian's source package
# (lwip 2.1.3+dfsg1-2, bookworm) into DEST/lwip, with Debian's patches
# applied. None of lwIP is in this repository: the guest build
# (guest/CMakeLists.txt) calls this at configure time, and
# scripts/setup.sh for the default build tree.
#
# apt runs with a sources list, package lists and cache of its own under
# DEST/apt (its -o options), so the machine's apt configuration is left
# as it is. apt checks the files against the signed Release of bookworm;
# dpkg-source unpacks them and applies debian/patches.
#   usage: scripts/fetch_lwip.sh DEST
set -eu
dest=${1:?usage: fetch_lwip.sh DEST}
version=2.1.3+dfsg1-2
mirror=${FTVM_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -f "$dest/lwip/src/core/tcp.c" ] && [ "$(cat "$dest/lwip/.ftvm-version" 2>/dev/null)" = "$version" ]; then
	exit 0
fi
for tool in apt-get dpkg-source; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "fetch_lwip: $tool not found (scripts/setup.sh installs dpkg-dev)" >&2
		exit 1
	fi
done
apt=$dest/apt
rm -rf "$apt" "$dest/lwip" "$dest/lwip.tmp"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$apt/src"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main" \
	>"$apt/sources.list"
set -- -o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts="$apt/parts" \
	-o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" -o APT::Sandbox::User=root -q
echo "fetch_lwip: lwip $version from $mirror (Debian's source package)"
apt-get "$@" update >"$apt/update.log" 2>&1 || {
	cat "$apt/update.log" >&2
	echo "fetch_lwip: apt-get update failed (network? $mirror)" >&2
	exit 1
}
(cd "$apt/src" && apt-get "$@" source --download-only "lwip=$version") >"$apt/source.log" 2>&1 || {
	cat "$apt/source.log" >&2
	echo "fetch_lwip: cannot download lwip $version" >&2
	exit 1
}
dpkg-source -x "$apt/src/lwip_$version.dsc" "$dest/lwip.tmp" >"$apt/unpack.log" 2>&1 || {
	cat "$apt/unpack.log" >&2
	exit 1
}
echo "$version" >"$dest/lwip.tmp/.ftvm-version"
mv "$dest/lwip.tmp" "$dest/lwip"
echo "fetch_lwip: lwip $version in $dest/lwip"
