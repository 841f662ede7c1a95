#!/usr/bin/env python3
"""A Redis client load for the failover drill, run in the client's
namespace: CONNS persistent connections (redis-py, python3-redis), each
writing and reading back its own keys without pause, through every
failover of the guest it talks to.

Each connection owns keys r<c>:<k>; it SETs a key to the next value of
its own counter, and GETs a key it wrote. Because no one else writes its
keys, a GET must return exactly the last value whose SET was answered
+OK: anything else is a stale read. Connections are never reopened:
redis-py's retries are off, and an error on a connection (a reset, a
timeout) ends it and is counted. Every acknowledged SET goes to the ack
log (key value), which `verify` reads back.

  redis_load.py load HOST PORT --conns N --keys K --ack-log F [--seed S]
      runs until SIGINT, then prints one JSON line: ops, sets_acked,
      stale_reads, wrong_answers, errors, reconnects (always 0: none is
      made), stalls (the longest wait for an answer, ms, per connection)
      and max_stall_ms, and long_waits: [monotonic start, ms] of every wait
      over 20 ms (CLOCK_MONOTONIC: the drill matches them to its kills);
  redis_load.py verify HOST PORT --ack-log F
      prints {checked, lost, wrong}: each key's last acknowledged value
      must be what GET returns now.
"""
import argparse
import json
import random
import signal
import sys
import threading
import time

import redis


def connect(host, port, timeout):
    # One connection, no pool games: retry_on_timeout off, no retries, so
    # a broken connection raises instead of being silently replaced.
    r = redis.Redis(host=host, port=port, socket_timeout=timeout, socket_connect_timeout=10,
                    retry_on_timeout=False, single_connection_client=True)
    r.ping()
    return r


class Worker(threading.Thread):
    def __init__(self, idx, args, log, lock, stop):
        super().__init__(daemon=True)
        self.idx, self.args, self.log, self.lock, self.stop = idx, args, log, lock, stop
        self.rnd = random.Random(args.seed * 1000 + idx)
        self.ops = self.acked = self.stale = self.wrong = self.errors = 0
        self.max_wait = 0.0
        self.long_waits = []    # (monotonic start, ms) of waits over 20 ms
        self.error = None

    def timed(self, fn, *a):
        t = time.monotonic()
        v = fn(*a)
        d = time.monotonic() - t
        self.max_wait = max(self.max_wait, d)
        if d > 0.02 and len(self.long_waits) < 10000:
            self.long_waits.append((round(t, 4), round(d * 1000, 1)))
        return v

    def run(self):
        try:
            r = connect(self.args.host, self.args.port, self.args.timeout)
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            self.errors += 1
            self.error = "connect: %s" % e
            return
        last = {}
        seq = 0
        while not self.stop.is_set():
            k = "r%d:%d" % (self.idx, self.rnd.randrange(self.args.keys))
            try:
                if last and self.rnd.random() < 0.5:
                    k = self.rnd.choice(list(last))
                    got = self.timed(r.get, k)
                    self.ops += 1
                    if got is None or got.decode() != last[k]:
                        self.stale += 1
                        self.error = "GET %s = %r, last acknowledged %r" % (k, got, last[k])
                else:
                    seq += 1
                    v = "c%d-%d" % (self.idx, seq)
                    ok = self.timed(r.set, k, v)
                    self.ops += 1
                    if ok is not True:
                        self.wrong += 1
                        self.error = "SET %s answered %r" % (k, ok)
                        continue
                    last[k] = v
                    self.acked += 1
                    with self.lock:
                        self.log.write("%s %s\n" % (k, v))
                        self.log.flush()
            except redis.exceptions.ResponseError as e:
                self.wrong += 1
                self.error = "%s: %s" % (k, e)
            except Exception as e:  # noqa: BLE001 - the connection broke: counted, never reopened
                self.errors += 1
                self.error = "%s: %s: %s" % (k, type(e).__name__, e)
                return


def load(args):
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    lock = threading.Lock()
    with open(args.ack_log, "a") as log:
        ws = [Worker(i, args, log, lock, stop) for i in range(args.conns)]
        for w in ws:
            w.start()
        while not stop.is_set() and any(w.is_alive() for w in ws):
            stop.wait(0.1)
        stop.set()
        for w in ws:
            w.join(args.timeout + 5)
    rep = {"ops": sum(w.ops for w in ws), "sets_acked": sum(w.acked for w in ws),
           "stale_reads": sum(w.stale for w in ws), "wrong_answers": sum(w.wrong for w in ws),
           "errors": sum(w.errors for w in ws), "reconnects": 0,
           "stalls_ms": [round(w.max_wait * 1000, 1) for w in ws],
           "max_stall_ms": round(max(w.max_wait for w in ws) * 1000, 1),
           "long_waits": sorted(x for w in ws for x in w.long_waits),
           "problems": [w.error for w in ws if w.error][:5]}
    print(json.dumps(rep), flush=True)
    return 0


def verify(args):
    last = {}
    with open(args.ack_log) as f:
        for line in f:
            k, v = line.split()
            last[k] = v
    r = connect(args.host, args.port, args.timeout)
    lost = wrong = 0
    for k, v in last.items():
        got = r.get(k)
        if got is None:
            lost += 1
        elif got.decode() != v:
            # A later SET of the same key that was sent but not answered may
            # have landed: only a value of this connection, not older.
            c, n = v.rsplit("-", 1)
            gc, gn = got.decode().rsplit("-", 1)
            if gc != c or int(gn) < int(n):
                wrong += 1
    print(json.dumps({"checked": len(last), "lost": lost, "wrong": wrong}), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("load", "verify"))
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--keys", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ack-log", required=True)
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="a connection that waits this long for an answer is broken")
    args = ap.parse_args()
    return load(args) if args.mode == "load" else verify(args)


if __name__ == "__main__":
    sys.exit(main())
