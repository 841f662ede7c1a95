#!/usr/bin/env python3
"""Seeds for fuzz_outputs: valid output lists (the OUTPUTS of a checkpoint)
for a 4 KiB-unit disk, so the fuzzer starts from lists that check accepts.
Input layout (fuzz/fuzz_outputs.c): u8 epoch-1, u8 disk units-1, then
u32 count, per item: u8 kind (1 frame, 2 write, 3 flush), u64 epoch,
u64 offset, u32 len, data."""
import os
import struct
import sys


def item(kind, epoch, offset, data=b""):
    return struct.pack("<BQQI", kind, epoch, offset, len(data)) + data


def seed(epoch, units, items):
    return bytes([epoch - 1, units - 1]) + struct.pack("<I", len(items)) + b"".join(items)


def main(out):
    os.makedirs(out, exist_ok=True)
    seeds = {
        "empty": seed(1, 1, []),
        "frame": seed(2, 1, [item(1, 2, 0, b"\xff" * 14 + b"frame")]),
        "write-flush-frame": seed(3, 4, [item(2, 3, 4096, b"w" * 512), item(3, 3, 0),
                                         item(1, 3, 0, b"\x02" * 60)]),
        "two-epochs": seed(5, 8, [item(2, 4, 0, b"a" * 4096), item(3, 4, 0), item(2, 5, 8192, b"b" * 100),
                                  item(1, 5, 0, b"c" * 64)]),
        "end-of-disk": seed(1, 2, [item(2, 1, 8192 - 16, b"e" * 16)]),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
