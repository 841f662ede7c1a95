#!/usr/bin/env python3
"""The RESP service's protocol, byte for byte, from a client host (run in
the client's namespace by test_resp.py): every command's answer, and
malformed input. Prints one line per case; exits 1 at the first wrong
answer.
   usage: resp_probe.py HOST PORT"""
import socket
import sys
import time

HOST, PORT = sys.argv[1], int(sys.argv[2])


def conn():
    s = socket.create_connection((HOST, PORT), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_reply(s, buf=b""):
    """One whole RESP reply from s (buf: bytes already read); (reply, rest)."""
    while True:
        r = parse(buf)
        if r is not None:
            return r
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("connection closed after %r" % buf)
        buf += chunk


def parse(b, at=0):
    """(value, rest) of the reply at b[at:], or None if incomplete."""
    e = b.find(b"\r\n", at)
    if e < 0:
        return None
    t, line = b[at:at + 1], b[at + 1:e]
    nxt = e + 2
    if t in (b"+", b"-", b":"):
        v = (t + line).decode()
        return v, b[nxt:]
    if t == b"$":
        n = int(line)
        if n < 0:
            return None if False else ("(nil)", b[nxt:])
        if len(b) < nxt + n + 2:
            return None
        return b[nxt:nxt + n].decode(errors="replace"), b[nxt + n + 2:]
    if t == b"*":
        n = int(line)
        items, rest = [], b[nxt:]
        for _ in range(n):
            r = parse(rest)
            if r is None:
                return None
            items.append(r[0])
            rest = r[1]
        return items, rest
    raise ValueError("not RESP: %r" % b[at:at + 40])


def closed(s, timeout=3.0):
    """True if the server closes s (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


failures = 0


def case(what, send, want, then_closed=False):
    """Sends raw bytes on a fresh connection; the reply must equal want
    (or start with it, for a str ending in '*')."""
    global failures
    s = conn()
    try:
        s.sendall(send)
    except (BrokenPipeError, ConnectionResetError):
        pass    # the server answered and closed before taking it all
    try:
        got, rest = read_reply(s)
    except (EOFError, ConnectionResetError) as e:
        got = "<closed: %s>" % e
    ok = got == want or (isinstance(want, str) and want.endswith("*") and isinstance(got, str)
                         and got.startswith(want[:-1]))
    if ok and then_closed:
        ok = closed(s)
    print("%-4s %-42s %r -> %r%s" % ("ok" if ok else "FAIL", what, send[:40], got,
                                      " (closed)" if then_closed else ""))
    failures += not ok
    s.close()


def cmd(*words):
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


# Every command.
case("PING", cmd(b"PING"), "+PONG")
case("PING msg", cmd(b"PING", b"hi"), "hi")
case("ECHO", cmd(b"ECHO", b"hello world"), "hello world")
case("SET", cmd(b"SET", b"p:k1", b"v1"), "+OK")
case("GET", cmd(b"GET", b"p:k1"), "v1")
case("GET missing", cmd(b"GET", b"p:none"), "(nil)")
case("EXISTS", cmd(b"EXISTS", b"p:k1", b"p:none", b"p:k1"), ":2")
case("INCR new", cmd(b"INCR", b"p:n"), ":1")
case("INCRBY", cmd(b"INCRBY", b"p:n", b"41"), ":42")
case("DECR", cmd(b"DECR", b"p:n"), ":41")
case("DECRBY", cmd(b"DECRBY", b"p:n", b"-9"), ":50")
case("INCR not a number", cmd(b"INCR", b"p:k1"), "-ERR value is not an integer or out of range")
case("INCRBY not a number", cmd(b"INCRBY", b"p:n", b"x1"), "-ERR value is not an integer or out of range")
case("INCR overflow", cmd(b"INCRBY", b"p:n", b"9223372036854775807"), "-ERR increment or decrement would overflow")
case("MSET", cmd(b"MSET", b"p:a", b"1", b"p:b", b"2"), "+OK")
case("MGET", cmd(b"MGET", b"p:a", b"p:b", b"p:none"), ["1", "2", "(nil)"])
case("MSET odd", cmd(b"MSET", b"p:a", b"1", b"p:b"), "-ERR wrong number of arguments for 'MSET' command")
case("DBSIZE", cmd(b"DBSIZE"), ":*")
case("SELECT 0", cmd(b"SELECT", b"0"), "+OK")
case("SELECT 1", cmd(b"SELECT", b"1"), "-ERR DB index is out of range (only 0)")
case("CONFIG GET save", cmd(b"CONFIG", b"GET", b"save"), ["save", ""])
case("CONFIG GET appendonly", cmd(b"CONFIG", b"GET", b"appendonly"), ["appendonly", "yes"])
case("CONFIG GET other", cmd(b"CONFIG", b"GET", b"maxmemory"), [])
case("INFO", cmd(b"INFO"), "# Server*")
case("COMMAND", cmd(b"COMMAND"), [])
case("lower case", cmd(b"get", b"p:k1"), "v1")
case("inline", b"SET p:inl v2\r\n", "+OK")
case("inline GET", b"GET p:inl\n", "v2")
case("QUIT", cmd(b"QUIT"), "+OK", then_closed=True)
case("unknown", cmd(b"FROB", b"x"), "-ERR unknown command 'FROB'")
case("arity", cmd(b"GET"), "-ERR wrong number of arguments for 'GET' command")
case("SET EX", cmd(b"SET", b"p:x", b"1", b"EX", b"10"), "-ERR SET options*")
case("DEL", cmd(b"DEL", b"p:a", b"p:none", b"p:a", b"p:b"), ":2")
case("DEL gone", cmd(b"MGET", b"p:a", b"p:b"), ["(nil)", "(nil)"])
case("DEL none", cmd(b"DEL", b"p:none"), ":0")
case("DEL arity", cmd(b"DEL"), "-ERR wrong number of arguments for 'DEL' command")
case("DBSIZE after DEL", cmd(b"EXISTS", b"p:a"), ":0")
# Keys and values up to 512 bytes, of any bytes, empty ones too.
K512, V512 = b"k" * 511 + b"\x01", bytes(range(32, 127)) * 5 + b"\r\n\x00 \t" + b"z" * 32
case("SET 512/512", cmd(b"SET", K512, V512), "+OK")
case("GET 512/512", cmd(b"GET", K512), V512.decode())
case("value grows", cmd(b"SET", b"p:grow", b"x"), "+OK")
case("value grows 2", cmd(b"SET", b"p:grow", b"y" * 300), "+OK")
case("value grows 3", cmd(b"GET", b"p:grow"), "y" * 300)
case("empty value", cmd(b"SET", b"p.empty", b""), "+OK")
case("GET empty value", cmd(b"GET", b"p.empty"), "")
case("token value", cmd(b"SET", b"p.token", b"v2"), "+OK")
case("empty key", cmd(b"SET", b"", b"nothing"), "+OK")
case("GET empty key", cmd(b"GET", b""), "nothing")
case("value too long", cmd(b"SET", b"p:big", b"v" * 513), "-ERR this store holds keys and values of up to 512 bytes")
case("key too long", cmd(b"SET", b"k" * 513, b"v"), "-ERR this store holds keys and values of up to 512 bytes")
case("MSET too long", cmd(b"MSET", b"p:c", b"1", b"p:d", b"v" * 513), "-ERR this store holds*")
case("MSET all or none", cmd(b"EXISTS", b"p:c"), ":0")

# Malformed input: an error, and the connection closed (as Redis does).
case("negative bulk length", b"*1\r\n$-5\r\nPING\r\n", "-ERR Protocol error: invalid bulk length", True)
case("huge bulk length", b"*1\r\n$99999999999\r\n", "-ERR Protocol error: invalid bulk length", True)
case("non-numeric bulk length", b"*1\r\n$abc\r\n", "-ERR Protocol error: invalid bulk length", True)
case("negative multibulk", b"*-3\r\n", "-ERR Protocol error: invalid multibulk length", True)
case("too many arguments", b"*100000\r\n", "-ERR Protocol error: invalid multibulk length", True)
case("no $", b"*1\r\n+PING\r\n", "-ERR Protocol error: expected '$'", True)
case("bulk without CRLF", b"*1\r\n$4\r\nPINGxx", "-ERR Protocol error: bulk not followed by CRLF", True)
case("endless inline", b"x" * 5000, "-ERR Protocol error: too big inline request", True)
# A command longer than the server's input buffer (one TCP window, 23360
# bytes): exactly that much of it, so that nothing is left unread.
case("command too large", (b"*100\r\n" + (b"$4000\r\n" + b"x" * 4000 + b"\r\n") * 7)[:23360],
     "-ERR Protocol error: command too large", True)

# A truncated command is no command: nothing comes back until it is whole.
s = conn()
s.sendall(b"*2\r\n$3\r\nGET\r\n$4\r\np:k")
s.settimeout(0.5)
try:
    early = s.recv(100)
except socket.timeout:
    early = b""
s.sendall(b"1\r\n")
got, _ = read_reply(s)
ok = early == b"" and got == "v1"
print("%-4s truncated, then completed: %r then %r" % ("ok" if ok else "FAIL", early, got))
failures += not ok
s.close()

# Pipelining: 100 commands in one send, 100 answers in order.
s = conn()
s.sendall(b"".join(cmd(b"INCR", b"p:pipe") for _ in range(100)))
buf, got = b"", []
for _ in range(100):
    v, buf = read_reply(s, buf)
    got.append(v)
ok = got == [":%d" % i for i in range(1, 101)]
print("%-4s pipelined 100 INCR: %s ... %s" % ("ok" if ok else "FAIL", got[:2], got[-1:]))
failures += not ok
s.close()

# A client that sends and never reads cannot stall the others.
hog = conn()
hog.setblocking(False)
sent, pending = 0, b""
t = time.monotonic()
while time.monotonic() - t < 3.0:
    pending = pending or cmd(b"GET", b"p:k1") * 64
    try:
        n = hog.send(pending)     # a partial send: the rest goes next
        sent += n
        pending = pending[n:]
    except BlockingIOError:
        time.sleep(0.05)
t = time.monotonic()
other = conn()
other.sendall(cmd(b"PING"))
got, _ = read_reply(other)
took = time.monotonic() - t
ok = got == "+PONG" and took < 1.0
# ... and it was not cut off: it is still connected (its window is shut).
hog.setblocking(True)
hog.settimeout(0.5)
try:
    alive = len(hog.recv(65536)) > 0
except socket.timeout:
    alive = True
ok = ok and alive
print("%-4s a client that never reads (%d bytes sent): another's PING answered in %.0f ms: %r; it is %s"
      % ("ok" if ok else "FAIL", sent, took * 1000, got, "still connected" if alive else "cut off"))
failures += not ok
other.close()
hog.close()

# 64 connections at once, each answered.
many = [conn() for _ in range(64)]
for i, s in enumerate(many):
    s.sendall(cmd(b"ECHO", b"c%d" % i))
ok = all(read_reply(s)[0] == "c%d" % i for i, s in enumerate(many))
print("%-4s 64 connections at once, each answered" % ("ok" if ok else "FAIL"))
failures += not ok
for s in many:
    s.close()

# The longest answer: MGET of 128 keys of 512-byte values (67 KB; the
# server runs a command only with room for it).
big = [b"p:m%03d" % i for i in range(128)]
s = conn()
for i in range(0, 128, 16):
    s.sendall(cmd(b"MSET", *[w for k in big[i:i + 16] for w in (k, k * 73 + b"." * (512 - 6 * 73))]))
    got, _ = read_reply(s)
    assert got == "+OK", got
s.sendall(cmd(b"MGET", *big))
got, _ = read_reply(s)
ok = got == [(k * 73 + b"." * (512 - 6 * 73)).decode() for k in big]
print("%-4s MGET of 128 values of 512 bytes: %d answers" % ("ok" if ok else "FAIL", len(got)))
failures += not ok
s.close()

# A value the UDP protocol cannot carry (set here, read over UDP 7777).
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.sendto(b"GET r1 p.empty", (HOST, 7777))
got = u.recv(200).decode()
u.sendto(b"GET r2 p.token", (HOST, 7777))
got2 = u.recv(200).decode()
ok = got == "ERR r1 unrepresentable" and got2 == "VAL r2 v2"
print("%-4s UDP GET of an empty RESP value: %r; of a token value: %r" % ("ok" if ok else "FAIL", got, got2))
failures += not ok
u.close()

# FLUSHALL last (it empties the store).
case("FLUSHALL bad option", cmd(b"FLUSHALL", b"NOW"), "-ERR syntax error")
case("FLUSHALL", cmd(b"FLUSHALL"), "+OK")
case("DBSIZE after FLUSHALL", cmd(b"DBSIZE"), ":0")
case("GET after FLUSHALL", cmd(b"GET", b"p:k1"), "(nil)")
case("SET after FLUSHALL", cmd(b"SET", b"p:after", b"1"), "+OK")
case("FLUSHDB ASYNC", cmd(b"FLUSHDB", b"ASYNC"), "+OK")
case("DBSIZE after FLUSHDB", cmd(b"DBSIZE"), ":0")

print("%d failures" % failures)
sys.exit(1 if failures else 0)
