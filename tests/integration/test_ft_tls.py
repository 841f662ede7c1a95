#!/usr/bin/env python3
"""An authenticated replication link (--tls-creds), and what it keeps out.

For each mode, psk (a pre-shared key) and x509 (certificates from a CA,
made here with GnuTLS's certtool):
1. a secondary and a primary with the same credentials: protected, the
   link is TLS 1.3 (info migrate `cipher`), acknowledged writes flow;
2. the primary dies. Then each of these tries the orphaned secondary:
   an ftvm with other credentials (psk: another key; x509: a certificate
   from another CA, and one from the right CA for another address than
   the connection's), an ftvm without TLS, a bare TCP connection sending
   bytes. Every one is refused as a stray ("authentication failed"); the
   secondary stays peer-lost with its committed checkpoint;
3. `cont` on the secondary resumes the guest with every acknowledged write.
Then (psk) a primary towards a "secondary" that cannot authenticate: one
with another key, and a listener that records every byte it is sent. The
primary refuses both, and the listener got nothing but a TLS ClientHello:
no guest data leaves before the peer proved it holds the key."""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from ftvmtest import check, main, require_kvm, skip  # noqa: E402
from drill import REP_IP, REP_PORT, Client, Node, Topology, close_all, make_image, make_psk, wait_ready  # noqa: E402

URI_B = "tcp:%s:%d" % (REP_IP["B"], REP_PORT)


def certtool(*args):
    subprocess.run(["certtool"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_ca(work, name):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    tmpl = os.path.join(d, "ca.tmpl")
    with open(tmpl, "w") as f:
        f.write('cn = "%s"\nca\ncert_signing_key\nexpiration_days = 30\n' % name)
    certtool("--generate-privkey", "--outfile", os.path.join(d, "ca-key.pem"))
    certtool("--generate-self-signed", "--load-privkey", os.path.join(d, "ca-key.pem"), "--template", tmpl,
             "--outfile", os.path.join(d, "ca-cert.pem"))
    return d


def make_host(work, name, ca, ip, trust=None):
    """A credentials directory: a host certificate for ip signed by ca,
    trusting `trust` (default: ca)."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    tmpl = os.path.join(d, "host.tmpl")
    with open(tmpl, "w") as f:
        f.write('cn = "%s"\nip_address = "%s"\ntls_www_server\ntls_www_client\nsigning_key\n'
                'encryption_key\nexpiration_days = 30\n' % (name, ip))
    key = os.path.join(d, "host-key.pem")
    certtool("--generate-privkey", "--outfile", key)
    os.chmod(key, 0o600)
    certtool("--generate-certificate", "--load-privkey", key, "--load-ca-certificate",
             os.path.join(ca, "ca-cert.pem"), "--load-ca-privkey", os.path.join(ca, "ca-key.pem"),
             "--template", tmpl, "--outfile", os.path.join(d, "host-cert.pem"))
    with open(os.path.join(trust or ca, "ca-cert.pem")) as src, open(os.path.join(d, "ca-cert.pem"), "w") as dst:
        dst.write(src.read())
    return "x509:" + d


def secondary(topo, work, tag, img, creds):
    extra = ["--incoming", URI_B] + (["--tls-creds", creds] if creds else [])
    return Node(topo, "B", work, tag, img, "shared", False, extra=extra)


def primary(topo, work, tag, img, creds):
    return Node(topo, "A", work, tag, img, "shared", False, extra=["--tls-creds", creds] if creds else [])


def try_protect(topo, work, tag, img, creds, nodes):
    """An ftvm on A that tries to protect towards B; returns its info."""
    n = primary(topo, work, tag, img, creds)
    nodes.append(n)
    n.ctl("migrate", "-d", "-k", URI_B)
    st = n.wait_state(("unprotected", "protected"), 30)
    n.close()
    return st


def bare_tcp(topo):
    code = ("import socket,sys\ns=socket.create_connection(('%s',%d),5)\n"
            "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'+bytes(range(256))*64)\n"
            "s.settimeout(5)\ntry:\n d=s.recv(65536)\nexcept Exception:\n d=b''\n"
            "print(len(d))\n" % (REP_IP["B"], REP_PORT))
    r = subprocess.run(topo.cmd("A", sys.executable, "-c", code), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    return r.stdout.strip() or r.stderr.strip()


def drill(topo, work, mode, good_a, good_b, attackers):
    img = make_image(os.path.join(work, mode + ".img"))
    client = Client(topo, work)
    client.acks = os.path.join(work, mode + ".acks")
    nodes = []
    try:
        b = secondary(topo, work, mode + "-b", img, good_b)
        nodes.append(b)
        a = primary(topo, work, mode + "-a", img, good_a)
        nodes.append(a)
        wait_ready(a)
        st = a.protect_to("B")
        sb = b.migrate_info()
        print("%s: protected; primary tls %s cipher %s; secondary cipher %s"
              % (mode, st["tls"], st["cipher"], sb["cipher"]))
        check(st["cipher"].startswith("TLS1.3") and sb["cipher"].startswith("TLS1.3"),
              "%s: the link is not TLS 1.3: %s / %s" % (mode, st["cipher"], sb["cipher"]))
        # Where the records are encrypted: the kernel exactly when the
        # probe said it can (kTLS); else user space, and why.
        print("%s: records encrypted in %s" % (mode, st["tls_offload"]))
        for who, s in (("primary", st), ("secondary", sb)):
            check(("(kTLS)" in s["cipher"]) == s["tls_offload"].startswith("kernel"),
                  "%s: cipher %s but offload %s" % (who, s["cipher"], s["tls_offload"]))
        client.start_load(seconds=3600, keys=50)
        time.sleep(1.0)
        a.kill()
        sb = b.wait_state(("peer-lost",), 10)
        held = sb["committed_epoch"]
        rc, s = client.stop_load()
        print("%s: primary killed; secondary peer-lost at checkpoint %d; %d PUTs acknowledged"
              % (mode, held, s["puts_acked"]))
        check(held > 0 and s["puts_acked"] > 0, "%s: nothing to protect: %s" % (mode, sb))
        for i, (what, creds) in enumerate(attackers):
            st = try_protect(topo, work, "%s-x%d" % (mode, i), img, creds, nodes)
            sb = b.migrate_info()
            print("  %-28s -> it: %s (%s); secondary: %s, checkpoint %d, strays %d: %s"
                  % (what, st["state"], st["last_error"][:90], sb["state"], sb["committed_epoch"],
                     sb["stray_connections"], sb["last_stray"][:110]))
            check(st["state"] == "unprotected", "%s: %s got protection" % (mode, what))
            check(sb["state"] == "peer-lost" and sb["committed_epoch"] == held,
                  "%s: %s changed the secondary: %s" % (mode, what, sb))
            check(sb["stray_connections"] == i + 1 and "authentication failed" in sb["last_stray"],
                  "%s: %s was not refused as unauthenticated: %s" % (mode, what, sb["last_stray"]))
        got = bare_tcp(topo)
        sb = b.migrate_info()
        print("  %-28s -> it read %s bytes back; secondary: %s, checkpoint %d: %s"
              % ("a bare TCP connection", got, sb["state"], sb["committed_epoch"], sb["last_stray"][:100]))
        check(sb["state"] == "peer-lost" and sb["committed_epoch"] == held
              and "authentication failed" in sb["last_stray"],
              "%s: a bare connection changed the secondary: %s" % (mode, sb))
        b.ctl("cont")
        b.wait_state(("failed-over",), 10)
        v = client.verify()
        print("%s: cont -> failed over; verify: %d keys, %d lost" % (mode, v["checked"], v["lost"]))
        check(v["lost"] == 0 and v["wrong"] == 0, "%s: acknowledged writes lost: %s" % (mode, v))
    finally:
        if client.load and client.load.poll() is None:
            client.load.kill()
        close_all(None, nodes)


def no_data_to_strangers(topo, work, k1, k2):
    img = make_image(os.path.join(work, "strangers.img"))
    nodes = []
    try:
        a = primary(topo, work, "st-a", img, k1)
        nodes.append(a)
        wait_ready(a)
        # A secondary with another key.
        b = secondary(topo, work, "st-b", make_image(os.path.join(work, "st-b.img")), k2)
        nodes.append(b)
        a.ctl("migrate", "-d", "-k", URI_B)
        st = a.wait_state(("unprotected", "protected"), 30)
        sb = b.migrate_info()
        print("towards a secondary with another key: %s (%s); it: %s, %d checkpoints received"
              % (st["state"], st["last_error"], sb["state"], sb["epochs"]))
        check(st["state"] == "unprotected" and "authentication failed" in st["last_error"],
              "the primary protected towards another key: %s" % st)
        check(sb["epochs"] == 0 and sb["committed_epoch"] == 0, "it received checkpoints: %s" % sb)
        b.close()
        # A listener that keeps every byte.
        code = ("import socket\nl=socket.socket()\nl.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                "l.bind(('%s',%d))\nl.listen(1)\nc,_=l.accept()\nc.settimeout(3)\nd=b''\n"
                "while True:\n try:\n  x=c.recv(65536)\n except Exception:\n  break\n if not x:\n  break\n d+=x\n"
                "print(len(d),d[:1].hex())\n" % (REP_IP["B"], REP_PORT))
        lst = subprocess.Popen(topo.cmd("B", sys.executable, "-c", code), stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        a.ctl("migrate", "-d", "-k", URI_B)
        st = a.wait_state(("unprotected", "protected"), 30)
        out = lst.communicate(timeout=30)[0].split()
        n, first = int(out[0]), out[1] if len(out) > 1 else ""
        print("towards a listener that keeps what it gets: %s (%s); it got %d bytes, first byte %s"
              % (st["state"], st["last_error"][:100], n, first))
        check(st["state"] == "unprotected", "the primary protected towards a bare listener")
        # 0x16: a TLS handshake record (the ClientHello); a few hundred bytes.
        check(first == "16" and n < 4096, "the listener got %d bytes starting %s: more than a ClientHello"
              % (n, first))
    finally:
        close_all(None, nodes)


def test(work):
    require_kvm()
    k1, k2 = make_psk(work, "k1.psk"), make_psk(work, "k2.psk")
    with Topology() as topo:
        drill(topo, work, "psk", k1, k1, [("an ftvm with another key", k2), ("an ftvm without TLS", None)])
        no_data_to_strangers(topo, work, k1, k2)
        if subprocess.run(["which", "certtool"], stdout=subprocess.DEVNULL).returncode != 0:
            skip("x509: certtool (gnutls-bin) is not installed; run scripts/setup.sh")
        ca1, ca2 = make_ca(work, "ca1"), make_ca(work, "ca2")
        xa = make_host(work, "hostA", ca1, REP_IP["A"])
        xb = make_host(work, "hostB", ca1, REP_IP["B"])
        evil = make_host(work, "evil", ca2, REP_IP["A"], trust=ca1)
        # Signed by the right CA, but for another address than the one the
        # connection comes from.
        elsewhere = make_host(work, "elsewhere", ca1, "10.99.0.9")
        drill(topo, work, "x509", xa, xb, [("an ftvm with another CA's cert", evil),
                                           ("the CA's cert for another host", elsewhere),
                                           ("an ftvm without TLS", None)])


if __name__ == "__main__":
    main(test)
