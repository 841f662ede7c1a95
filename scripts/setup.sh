#!/bin/sh
# Installs every Debian package the build, the tests and the demo need.
# Idempotent: packages already present are left alone.
set -eu

PKGS="build-essential cmake pkg-config iproute2 socat python3 \
      liblz4-dev libgnutls28-dev gnutls-bin librdmacm-dev libibverbs-dev libqb-dev libcpg-dev libvotequorum-dev procps qemu-system-x86 \
      resource-agents libxml2-utils pacemaker-cli-utils corosync pacemaker pcs crmsh nftables rasdaemon \
      clang libclang-rt-dev dpkg-dev redis-tools python3-redis gnuplot-nox"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install:$missing" >&2
        exit 1
    fi
    echo "setup: installing:$missing"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
else
    echo "setup: all packages present"
fi

# lwIP, the guest's TCP/IP stack: Debian's source package, into the build
# tree (the guest's CMake fetches it itself into any other build tree).
"$(dirname "$0")/fetch_lwip.sh" "$(cd "$(dirname "$0")/.." && pwd)/build/_deps"
