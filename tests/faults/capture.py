#!/usr/bin/env python3
"""Prints, one line each, the CLOCK_MONOTONIC time of every reply the guest
sends out of a tap device: an IPv4 UDP datagram from GUEST_IP:PORT (the kv
protocol, docs/kv-protocol.md). Run inside the host's network namespace; the nemesis reads the lines
of both hosts to see which VMM answered each time.
  usage: capture.py TAP GUEST_IP PORT
"""
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def main():
    dev, ip, port = sys.argv[1], socket.inet_aton(sys.argv[2]), int(sys.argv[3])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((dev, 0))
    print("capturing on %s" % dev, flush=True)
    while True:
        frame, addr = s.recvfrom(65536)
        t = time.monotonic()
        if addr[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 8:
            continue          # towards the guest, or too short
        if frame[12:14] != b"\x08\x00" or frame[14 + 9] != 17 or frame[14 + 12:14 + 16] != ip:
            continue          # not IPv4 UDP from the guest
        udp = 14 + (frame[14] & 0x0F) * 4
        if struct.unpack("!H", frame[udp:udp + 2])[0] == port:
            print("%.6f" % t, flush=True)


if __name__ == "__main__":
    main()
