#!/usr/bin/env python3
"""Seeds for fuzz_virtio: what a virtio-blk or virtio-net driver does
(virtio 1.x over MMIO): reset, ACKNOWLEDGE|DRIVER, VIRTIO_F_VERSION_1,
FEATURES_OK, queue 0 of 8 entries at known addresses, DRIVER_OK, then one
request (blk: read, write, flush, get-id; net: an RX buffer and a frame
delivered into it, then a frame sent on queue 1). Layout: fuzz/fuzz_virtio.c."""
import os
import struct
import sys

DESC, AVAIL, USED, HDR, DATA, STATUS = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000
REG = {"magic": 0x000, "version": 0x004, "dev_feat": 0x010, "dev_feat_sel": 0x014, "drv_feat": 0x020,
       "drv_feat_sel": 0x024, "q_sel": 0x030, "q_num_max": 0x034, "q_num": 0x038, "q_ready": 0x044,
       "notify": 0x050, "isr": 0x060, "isr_ack": 0x064, "status": 0x070, "desc_lo": 0x080, "desc_hi": 0x084,
       "avail_lo": 0x090, "avail_hi": 0x094, "used_lo": 0x0a0, "used_hi": 0x0a4, "config": 0x100}


def op(write, reg, value=0, deliver=False):
    return struct.pack("<BBI", (1 if write else 0) | (2 if deliver else 0), REG[reg] // 4, value)


def request(kind, sector, data_len, device_writes):
    ram = bytearray(STATUS + 1)
    chain = [(HDR, 16, 1, 1)]
    if data_len:
        chain.append((DATA, data_len, 1 | (2 if device_writes else 0), 2))
    chain.append((STATUS, 1, 2, 0))
    for i, (addr, ln, flags, nxt) in enumerate(chain):
        if i == len(chain) - 1:
            flags &= ~1
        struct.pack_into("<QIHH", ram, DESC + 16 * i, addr, ln, flags, nxt if i < len(chain) - 1 else 0)
    struct.pack_into("<HHH", ram, AVAIL, 0, 1, 0)
    struct.pack_into("<IIQ", ram, HDR, kind, 0, sector)
    for i in range(data_len):
        ram[DATA + i] = (i * 7) & 0xff
    return bytes(ram)


def driver(queues=(0,), deliver=False):
    setup = []
    for q in queues:
        base = 0x8000 * q
        setup += [op(1, "q_sel", q), op(0, "q_num_max"), op(1, "q_num", 8), op(1, "desc_lo", DESC + base),
                  op(1, "desc_hi", 0), op(1, "avail_lo", AVAIL + base), op(1, "avail_hi", 0),
                  op(1, "used_lo", USED + base), op(1, "used_hi", 0), op(1, "q_ready", 1)]
    return b"".join([
        op(0, "magic"), op(0, "version"), op(1, "status", 0), op(1, "status", 1), op(1, "status", 3),
        op(1, "dev_feat_sel", 1), op(0, "dev_feat"), op(1, "drv_feat_sel", 1), op(1, "drv_feat", 1),
        op(1, "drv_feat_sel", 0), op(1, "drv_feat", 0), op(1, "status", 11), op(0, "status"),
    ] + setup + [
        op(1, "status", 15), op(0, "config"), op(1, "notify", 0, deliver)] +
        [op(1, "notify", q) for q in queues[1:]] + [op(0, "isr"), op(1, "isr_ack", 1),
    ])


def main(out):
    os.makedirs(out, exist_ok=True)
    for name, (kind, sector, ln, dw) in {"read": (0, 2, 512, True), "write": (1, 3, 1024, False),
                                         "flush": (4, 0, 0, False), "get-id": (8, 0, 20, True),
                                         "past-end": (0, 10 ** 6, 512, True)}.items():
        ram = request(kind, sector, ln, dw)
        with open(os.path.join(out, "blk-" + name), "wb") as f:
            f.write(b"\x00" + struct.pack("<H", len(ram)) + ram + driver())
    # net: queue 0 (RX) gets one 1514-byte device-writable buffer; queue 1
    # (TX) one chain: a 12-byte virtio-net header and a 60-byte frame.
    ram = bytearray(0x8000 + STATUS + 1)
    ram[0:64] = bytes(range(64))
    struct.pack_into("<QIHH", ram, DESC, DATA, 1526, 2, 0)
    struct.pack_into("<HHH", ram, AVAIL, 0, 1, 0)
    struct.pack_into("<QIHH", ram, 0x8000 + DESC, 0x8000 + HDR, 12, 1, 1)
    struct.pack_into("<QIHH", ram, 0x8000 + DESC + 16, 0x8000 + DATA, 60, 0, 0)
    struct.pack_into("<HHH", ram, 0x8000 + AVAIL, 0, 1, 0)
    with open(os.path.join(out, "net-rx-tx"), "wb") as f:
        f.write(b"\x01" + struct.pack("<H", len(ram)) + bytes(ram) + driver((0, 1), deliver=True))


if __name__ == "__main__":
    main(sys.argv[1])
