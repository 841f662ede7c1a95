#!/usr/bin/env python3
"""Writes seed inputs for fuzz_receive (the format is in fuzz_receive.c):
valid streams, so that the fuzzer starts from checkpoints that commit.
  usage: fuzz/seeds_receive.py DIR
"""
import os
import struct
import sys

HEARTBEAT, SYNC_RAM, SYNC_DISK, BEGIN, PAGES, STATE, OUTPUTS, COMMIT = 12, 4, 5, 6, 7, 8, 9, 10
HANDOVER, CANCEL, ERROR = 14, 13, 3
MORE = 2
DELTA = 4
PAGE = 4096


def rec(typ, payload=b"", epoch=0, flags=0):
    return struct.pack("<BBBH", typ, flags, epoch, len(payload)) + payload


def pages(idx, fill):
    return struct.pack("<I", len(idx)) + b"".join(struct.pack("<Q", i) for i in idx) + \
        b"".join(bytes([f]) * PAGE for f in fill)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def delta_pages(base_fill):
    """A delta-coded PAGES payload (ft/page_cache.c): page 1 as a delta
    against a page of base_fill (bytes 8..15 become 0xaa), page 3 whole,
    page 4 zero."""
    new = bytearray([base_fill]) * PAGE
    new[8:16] = b"\xaa" * 8
    delta = struct.pack("<HH", 8, 8) + bytes(new[8:16])
    return (struct.pack("<I", 3) + struct.pack("<QQQ", 1, 3, 4) +
            struct.pack("<HHH", len(delta), 0xFFFF, 0xFFFE) +
            struct.pack("<I", crc32c(bytes(new))) + delta + b"\x33" * PAGE)


def outputs(items):
    out = struct.pack("<I", len(items))
    for kind, epoch, off, data in items:
        out += struct.pack("<BQQI", kind, epoch, off, len(data)) + data
    return out


def commit(npages, page_msgs, output_msgs):
    return struct.pack("<IIIIQ", npages, page_msgs, output_msgs, 0, 0)


def checkpoint(e, idx, fill, items=(), split=False):
    s = rec(BEGIN, struct.pack("<Q", 1000 + e), e)
    if idx:
        s += rec(PAGES, pages(idx, fill), e)
    s += rec(STATE, b"STATE", e)
    blob = outputs(list(items))
    if split:
        s += rec(OUTPUTS, blob[:3], e, MORE) + rec(OUTPUTS, blob[3:], e)
    else:
        s += rec(OUTPUTS, blob, e)
    return s + rec(COMMIT, commit(len(idx), 1 if idx else 0, 2 if split else 1), e)


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    seeds = {
        "shared-two-checkpoints": b"\x00" + rec(SYNC_RAM, pages([1, 2], [0x11, 0x22])) +
        checkpoint(1, [3], [0x33]) + rec(HEARTBEAT) + checkpoint(2, [3, 4], [0x44, 0x45], split=True),
        "shared-disk-handover": b"\x02" + checkpoint(1, [5], [0x55], [(2, 1, 4096, b"kv")]) +
        rec(HANDOVER, epoch=1),
        "replicated-sync-and-write": b"\x01" +
        rec(SYNC_DISK, struct.pack("<Q", 8192) + b"synced") + checkpoint(1, [], []) +
        checkpoint(2, [6], [0x66], [(2, 2, 0, b"block"), (3, 2, 0, b"")]),
        "cancel": b"\x00" + checkpoint(1, [7], [0x77]) + rec(CANCEL, epoch=1),
        "error": b"\x00" + rec(ERROR, b"primary going away"),
        "delta-pages": b"\x00" + rec(SYNC_RAM, pages([1], [0x11])) +
        rec(BEGIN, struct.pack("<Q", 1001), 1) + rec(PAGES, delta_pages(0x11), 1, DELTA) +
        rec(STATE, b"STATE", 1) + rec(OUTPUTS, outputs([]), 1) + rec(COMMIT, commit(3, 1, 1), 1),
        # found by the fuzzer: a page message with no pages
        "empty-pages": b"\x00" + rec(BEGIN, struct.pack("<Q", 1), 1) + rec(PAGES, struct.pack("<I", 0), 1) +
        rec(PAGES, struct.pack("<I", 0) + b"x", 1),
    }
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print("fuzz/seeds_receive.py: %d seeds in %s" % (len(seeds), d))


if __name__ == "__main__":
    main()
