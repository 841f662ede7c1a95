#!/usr/bin/env python3
"""A TCP relay for the replication link, whose faults the nemesis controls:
it forwards one connection at a time from LISTEN to TARGET and reads its
mode from the control file CTL (one line, re-read whenever the file
changes):

  pass          forward as it comes
  delay MS      every chunk, both ways, leaves MS milliseconds after it came
                (order kept): a slow or congested link
  reorder       the two halves of the next chunk of 64 bytes or more from
                the primary swap places: bytes out of order inside the
                stream (whole messages swapped would often be a valid
                stream; the framing's checksums must catch this)
  corrupt       one byte of the next chunk from the primary is flipped

This kernel has no netem; this is the user-space stand-in.
  usage: relay.py LISTEN_HOST:PORT TARGET_HOST:PORT CTL
"""
import collections
import os
import socket
import sys
import threading
import time


class Control:
    def __init__(self, path):
        self.path, self.mtime, self.mode, self.arg = path, None, "pass", 0
        self.lock = threading.Lock()

    def read(self):
        """(mode, arg), re-reading the file when it changed."""
        try:
            m = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return self.mode, self.arg
        with self.lock:
            if m != self.mtime:
                self.mtime = m
                with open(self.path) as f:
                    words = (f.read().split() or ["pass"])
                self.mode = words[0]
                self.arg = int(words[1]) if len(words) > 1 else 0
            return self.mode, self.arg

    def done(self):
        """A one-shot fault happened: back to pass (until the file changes)."""
        with self.lock:
            self.mode = "pass"


def pump(src, dst, ctl, from_primary, stop):
    """src -> dst through a queue that a sender empties (delay keeps order)."""
    q = collections.deque()
    cv = threading.Condition()

    def sender():
        try:
            while True:
                with cv:
                    while not q:
                        if stop.is_set():
                            return
                        cv.wait(0.1)
                    due, data = q.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if data is None:
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            stop.set()
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    def queue(data, delay=0.0):
        with cv:
            q.append((time.monotonic() + delay, data))
            cv.notify()

    try:
        while not stop.is_set():
            data = src.recv(65536)
            if not data:
                break
            mode, arg = ctl.read()
            if from_primary and mode == "corrupt":
                b = bytearray(data)
                b[len(b) // 2] ^= 0x5A
                data = bytes(b)
                ctl.done()
            elif from_primary and mode == "reorder" and len(data) >= 64:
                half = len(data) // 2
                if data[:half] != data[half:2 * half]:
                    data = data[half:] + data[:half]
                    ctl.done()
            queue(data, arg / 1000.0 if mode == "delay" else 0.0)
    except OSError:
        pass
    queue(None)
    t.join()


def main():
    lh, lp = sys.argv[1].rsplit(":", 1)
    th, tp = sys.argv[2].rsplit(":", 1)
    ctl = Control(sys.argv[3])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((lh, int(lp)))
    ls.listen(4)
    print("relay: %s -> %s" % (sys.argv[1], sys.argv[2]), flush=True)
    while True:
        c, _ = ls.accept()
        try:
            u = socket.create_connection((th, int(tp)), timeout=5)
            u.settimeout(None)
        except OSError:
            c.close()
            continue
        for s in (c, u):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stop = threading.Event()
        a = threading.Thread(target=pump, args=(c, u, ctl, True, stop), daemon=True)
        b = threading.Thread(target=pump, args=(u, c, ctl, False, stop), daemon=True)
        a.start()
        b.start()
        a.join()
        b.join()
        c.close()
        u.close()


if __name__ == "__main__":
    main()
