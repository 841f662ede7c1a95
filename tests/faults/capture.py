#!/usr/bin/env python3
"""Prints, one line each, the kernel's time (CLOCK_REALTIME, as the frame
reached the tap) of every reply the guest
sends out of a tap device: an IPv4 UDP datagram from GUEST_IP:PORT (the kv
protocol, docs/kv-protocol.md). Run inside the host's network namespace; the nemesis reads the lines
of both hosts to see which VMM answered each time.
  usage: capture.py TAP GUEST_IP PORT
"""
import socket
import struct
import sys

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35      # asm-generic/socket.h (SCM_TIMESTAMPNS is the same)


def main():
    dev, ip, port = sys.argv[1], socket.inet_aton(sys.argv[2]), int(sys.argv[3])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    # The kernel's time of each frame, not when this process got to read it
    # (a capture that lags would put one host's reply after the other's).
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((dev, 0))
    print("capturing on %s" % dev, flush=True)
    while True:
        frame, anc, _, addr = s.recvmsg(65536, socket.CMSG_SPACE(16))
        t = None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = struct.unpack("qq", data[:16])
                t = sec + nsec / 1e9
        if t is None:
            continue
        if addr[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 8:
            continue          # towards the guest, or too short
        if frame[12:14] != b"\x08\x00" or frame[14 + 9] != 17 or frame[14 + 12:14 + 16] != ip:
            continue          # not IPv4 UDP from the guest
        udp = 14 + (frame[14] & 0x0F) * 4
        if struct.unpack("!H", frame[udp:udp + 2])[0] == port:
            print("%.6f" % t, flush=True)


if __name__ == "__main__":
    main()
