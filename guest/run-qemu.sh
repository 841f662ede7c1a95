#!/bin/sh
# Boots ftvm-guest.elf under QEMU's microvm with KVM, the way the guest
# expects a VMM to (docs/guest-abi.md), with a disk and user-mode
# networking that forwards UDP 127.0.0.1:PORT to the guest.
#
#   guest/run-qemu.sh ELF "workload=kv ip=10.0.2.15/24" [DISK [HOSTPORT]] [-- QEMU ARGS]
#
# HOSTPORT (default: the guest's port= or 7777) forwards to the guest's
# port. Then: echo -n 'PUT 1 a b' | socat - udp:127.0.0.1:7777
# The guest's exit value V comes back as QEMU status (V << 1) | 1.
set -eu
[ $# -ge 2 ] || { sed -n '2,11p' "$0"; exit 2; }
elf=$1; append=$2; shift 2
gport=7777
for w in $append; do
	case $w in port=*) gport=${w#port=} ;; esac
done
disk=""; port=$gport
if [ $# -gt 0 ] && [ "$1" != "--" ]; then disk=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then port=$1; shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift

# -arch-capabilities: on AMD hosts (PVM) KVM offers IA32_ARCH_CAPABILITIES
# to -cpu host but refuses the MSR, and QEMU 7.2 aborts at start ("failed
# to set MSR 0x10a"); the guest does not use it. vmware-cpuid-freq
# (leaf 0x40000010, the TSC rate) needs +invtsc.
set -- -M microvm,x-option-roms=off,rtc=off,pic=off,pit=off \
	-accel kvm -cpu host,-arch-capabilities,vmware-cpuid-freq=on,+invtsc -m 256 \
	-nodefaults -no-user-config -nographic -serial stdio \
	-global virtio-mmio.force-legacy=false \
	-kernel "$elf" -append "$append" \
	-device isa-debug-exit,iobase=0xf4,iosize=4 \
	-netdev user,id=n0,hostfwd=udp:127.0.0.1:$port-10.0.2.15:$gport \
	-device virtio-net-device,netdev=n0 "$@"
if [ -n "$disk" ]; then
	set -- "$@" -drive id=d0,file="$disk",format=raw,if=none \
		-device virtio-blk-device,drive=d0
fi
exec qemu-system-x86_64 "$@"
