#!/usr/bin/env python3
"""cluster - a real corosync + pacemaker cluster of namespace nodes on one machine.

Every node is a network namespace plus a mount and UTS namespace (hostname =
node name) with private tmpfs on /run and /dev/shm and private bind-mounted
/etc/corosync, /var/lib/corosync, /var/lib/pacemaker, /var/log/pacemaker.
The node runs `corosync -f` and `pacemakerd`; fencing is done by our agent
ra/fence_ftvm_ns, which SIGKILLs every process of the target node.

    switch ns:  bridge "cl" ── p1 ─ cl0 (node1, 10.98.0.1/24)
                            ├─ p2 ─ cl0 (node2, 10.98.0.2/24)
                            └─ p3 ─ cl0 (node3, 10.98.0.3/24)

Use (see tests/cluster/README.md):

    from cluster import Cluster
    with Cluster(nodes=3) as c:          # down() always runs
        c.up()
        c.pcs("resource create st ocf:pacemaker:Stateful promotable notify=true")
        c.wait_for(lambda: c.crm_mon().promoted("st"), 60, what="a Promoted")
        c.kill_node("node1"); c.partition(2); c.heal(2); c.restart_node(1)

CLI: python3 tests/cluster/cluster.py up|down|status [--id ID]

Python 3 standard library only. Needs root.
"""
import argparse
import importlib.machinery
import importlib.util
import json
import os
import random
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
FENCE_AGENT = os.path.join(SRC, "ra", "fence_ftvm_ns")
FTVM_RA = os.path.join(SRC, "ra", "ftvm")
STATE_ROOT = os.environ.get("FTVM_CLUSTER_ROOT", "/var/tmp/ftvm-cluster")
LAN_PREFIX = "10.98.0."
LAN_BRIDGE = "cl"
LAN_IF = "cl0"
STONITH_ID = "fence-ftvm"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/root",
       "TERM": "dumb"}
PCMK_ENV = {"PCMK_logfile": "/var/log/pacemaker/pacemaker.log", "PCMK_logfacility": "none",
            "PCMK_debug": "no"}
NEEDED = ["corosync", "pacemakerd", "crm_mon", "crm_attribute", "cibadmin", "stonith_admin", "pcs",
          "corosync-cmapctl", "corosync-quorumtool", "nsenter", "unshare", "ip", "setsid"]
NEEDED_FILES = ["/usr/lib/ocf/resource.d/pacemaker/Stateful"]


class ClusterError(Exception):
    pass


def _load_agent():
    loader = importlib.machinery.SourceFileLoader("fence_ftvm_ns", FENCE_AGENT)
    spec = importlib.util.spec_from_loader("fence_ftvm_ns", loader)
    mod = importlib.util.module_from_spec(spec)
    dont = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ in ra/
    try:
        loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = dont
    return mod


fence_agent = _load_agent()


def missing_requirements():
    """Reasons this machine cannot run the cluster ([] = it can)."""
    why = []
    if os.geteuid() != 0:
        why.append("not root (namespaces, mounts and corosync need root)")
    for b in NEEDED:
        if not shutil.which(b, path=ENV["PATH"]):
            why.append("%s not installed (scripts/setup.sh installs corosync pacemaker "
                       "pacemaker-cli-utils pcs resource-agents)" % b)
    for f in NEEDED_FILES:
        if not os.path.exists(f):
            why.append("%s missing (package resource-agents/pacemaker)" % f)
    if not os.access(FENCE_AGENT, os.X_OK):
        why.append("%s is not executable" % FENCE_AGENT)
    try:
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read():
                why.append("no overlayfs (needed to show the agents in /usr/sbin inside the nodes)")
    except OSError:
        pass
    return why


def sh(cmd, timeout=60, check=True, input=None, env=None):
    """Runs a command (list, or string for /bin/sh -c) on the machine."""
    if isinstance(cmd, str):
        cmd = ["/bin/sh", "-c", cmd]
    try:
        r = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, env=env if env is not None else ENV, stdin=None if input is not None
                           else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ClusterError("timed out after %ss: %s" % (timeout, " ".join(cmd)))
    if check and r.returncode != 0:
        raise ClusterError("command failed (%d): %s\n%s%s" % (r.returncode, " ".join(cmd), r.stdout, r.stderr))
    return r


def wait_for(pred, timeout, interval=0.25, what="condition"):
    """Calls pred() until it returns something true; returns that value.
    ClusterError raised by pred counts as "not yet". Raises ClusterError
    after timeout seconds, with the last error seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except ClusterError as e:
            last = e
        if time.monotonic() >= deadline:
            raise ClusterError("timed out after %.0f s waiting for %s%s" % (
                timeout, what, (" (last error: %s)" % str(last).strip()[-500:]) if last else ""))
        time.sleep(interval)


def _pid_alive(pid, starttime=None):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return False
    if fields[0] == "Z":
        return False
    return starttime is None or fields[19] == str(starttime)


def _pid_starttime(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[19]


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.rename(tmp, path)


def _netns_id(name):
    try:
        return "net:[%d]" % os.stat("/run/netns/" + name).st_ino
    except OSError:
        return None


# ---------------------------------------------------------------- crm_mon

ROLE_NAMES = {"Master": "Promoted", "Slave": "Unpromoted"}


class Status:
    """One parsed `crm_mon -1 --output-as=xml`, as seen from node `via`.

    dc: name of the DC or None; quorate: bool; nodes: {name: attributes}
    (online, unclean, pending, standby, is_dc ... as strings "true"/"false");
    resources: list of dicts {id, clone, agent, role, node, active, failed,
    managed, blocked}, one per (instance, node); stopped instances have
    node None. xml: the raw text."""

    def __init__(self, text, via=None):
        self.xml = text
        self.via = via
        root = ET.fromstring(text)
        dc = root.find("summary/current_dc")
        self.dc = dc.get("name") if dc is not None and dc.get("present") == "true" else None
        self.quorate = dc is not None and dc.get("with_quorum") == "true"
        self.nodes = {n.get("name"): dict(n.attrib) for n in root.findall("nodes/node")}
        self.resources = []
        res = root.find("resources")
        if res is not None:
            for child in res:
                self._walk(child, None)

    def _walk(self, el, clone):
        if el.tag == "clone":
            for c in el:
                self._walk(c, el.get("id"))
        elif el.tag in ("group", "bundle", "replica"):
            for c in el:
                self._walk(c, clone)
        elif el.tag == "resource":
            base = dict(id=el.get("id"), clone=clone, agent=el.get("resource_agent"),
                        role=ROLE_NAMES.get(el.get("role"), el.get("role")), active=el.get("active") == "true",
                        failed=el.get("failed") == "true", managed=el.get("managed") == "true",
                        blocked=el.get("blocked") == "true")
            nodes = el.findall("node")
            if not nodes:
                self.resources.append(dict(base, node=None))
            for n in nodes:
                self.resources.append(dict(base, node=n.get("name")))

    def online(self):
        return sorted(n for n, a in self.nodes.items() if a.get("online") == "true")

    def unclean(self):
        return sorted(n for n, a in self.nodes.items() if a.get("unclean") == "true")

    def _match(self, r, rsc):
        return rsc is None or r["id"] == rsc or r["clone"] == rsc or r["id"].split(":")[0] == rsc

    def roles(self, rsc=None):
        """{node: role} of the (clone) resource rsc on the nodes where it runs."""
        return {r["node"]: r["role"] for r in self.resources if self._match(r, rsc) and r["node"]}

    def promoted(self, rsc=None):
        return sorted(n for n, role in self.roles(rsc).items() if role == "Promoted")

    def running_on(self, rsc=None):
        return sorted(self.roles(rsc))

    def __repr__(self):
        return "Status(via=%s dc=%s quorate=%s online=%s resources=%s)" % (
            self.via, self.dc, self.quorate, self.online(),
            ["%s:%s@%s" % (r["id"], r["role"], r["node"]) for r in self.resources])


# ---------------------------------------------------------------- links

class Link:
    """A link of a node that partition() cuts and heal() restores.

    kind "bridge": a veth whose far end `port` is a port of `bridge` in
    namespace `ns`; cut = the port leaves the bridge (the node's interface
    stays up, its packets go nowhere: a pulled cable on the switch side).
    kind "veth": a point-to-point veth; cut = the node's end goes down."""

    def __init__(self, node, ifname, kind, ns, port=None, bridge=None, peer_ifname=None):
        self.node, self.ifname, self.kind, self.ns = node, ifname, kind, ns
        self.port, self.bridge, self.peer_ifname = port, bridge, peer_ifname
        self.is_cut = False

    def cut(self):
        if self.kind == "bridge":
            sh(["ip", "-n", self.ns, "link", "set", self.port, "nomaster"])
        else:
            sh(["ip", "-n", self.node.netns, "link", "set", self.ifname, "down"])
        self.is_cut = True

    def heal(self):
        if self.kind == "bridge":
            sh(["ip", "-n", self.ns, "link", "set", self.port, "master", self.bridge])
            sh(["ip", "-n", self.ns, "link", "set", self.port, "up"])
        else:
            sh(["ip", "-n", self.node.netns, "link", "set", self.ifname, "up"])
        self.is_cut = False

    def __repr__(self):
        return "Link(%s:%s %s%s)" % (self.node.name, self.ifname, self.kind, " cut" if self.is_cut else "")


class Bridge:
    """A bridge in namespace ns (by default the switch namespace)."""

    def __init__(self, cluster, name, ns):
        self.cluster, self.name, self.ns = cluster, name, ns

    def __repr__(self):
        return "Bridge(%s in %s)" % (self.name, self.ns)


# ---------------------------------------------------------------- nodes

class Node:
    """One cluster node. name "nodeN", netns (the namespace's name, for
    `ip -n`), addr (cluster LAN address), dir (its state directory: logs,
    disks), links (list of Link), pid (the process holding its mount and
    UTS namespaces while it is up)."""

    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = "node%d" % index
        self.netns = "%s-%s" % (cluster.prefix, self.name)
        self.addr = LAN_PREFIX + str(index)
        self.dir = os.path.join(cluster.state_dir, self.name)
        self.links = []
        self.pid = None
        self.pid_start = None
        self.mntns = None
        self.procs = []

    # ---- commands inside the node
    def cmd(self, args):
        """argv that runs args (list, or string for sh -c) inside the node."""
        if self.pid is None or not _pid_alive(self.pid, self.pid_start):
            raise ClusterError("%s is down" % self.name)
        if isinstance(args, str):
            args = ["/bin/sh", "-c", args]
        return ["nsenter", "-t", str(self.pid), "-n", "-m", "-u", "--"] + list(args)

    def run(self, args, timeout=60, check=True, input=None, env=None):
        """Runs args inside the node; returns the CompletedProcess (text)."""
        e = dict(ENV)
        e.update(env or {})
        return sh(self.cmd(args), timeout=timeout, check=check, input=input, env=e)

    def popen(self, args, env=None, **kw):
        """Starts args inside the node in the background (subprocess.Popen)."""
        e = dict(ENV)
        e.update(env or {})
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.cmd(args), env=e, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def path(self, p):
        """The machine's path to file p as the node sees it (through
        /proc/<holder>/root: the node's private /run, /dev/shm...)."""
        if self.pid is None or not _pid_alive(self.pid, self.pid_start):
            raise ClusterError("%s is down" % self.name)
        return "/proc/%d/root%s" % (self.pid, p)

    def ip(self, *args, check=True):
        """`ip -n <netns> args...` (works while the node is down too)."""
        return sh(["ip", "-n", self.netns] + list(args), check=check)

    # ---- links
    def attach(self, bridge, name, addr=None, mac=None):
        """A veth from this node (interface `name`, optional addr "a.b.c.d/nn")
        to a port of `bridge` (a Bridge from Cluster.add_bridge). Returns the
        Link, registered for partition()/heal()."""
        port = self.cluster._port_name()
        sh(["ip", "link", "add", port, "netns", bridge.ns, "type", "veth", "peer", "name", name,
            "netns", self.netns])
        sh(["ip", "-n", bridge.ns, "link", "set", port, "master", bridge.name])
        sh(["ip", "-n", bridge.ns, "link", "set", port, "up"])
        if mac:
            self.ip("link", "set", name, "address", mac)
        if addr:
            self.ip("addr", "add", addr, "dev", name)
        self.ip("link", "set", name, "up")
        link = Link(self, name, "bridge", bridge.ns, port=port, bridge=bridge.name)
        self.links.append(link)
        return link

    def add_veth(self, peer, name, addr=None, peer_name=None, peer_addr=None):
        """A point-to-point veth: `name` (addr) in this node, `peer_name`
        (default: name; peer_addr) in peer, which is another Node or the name
        of a network namespace. Registered for partition()/heal() on this
        node, and on peer too when it is a Node. Returns this node's Link."""
        peer_name = peer_name or name
        peer_ns = peer.netns if isinstance(peer, Node) else peer
        sh(["ip", "link", "add", name, "netns", self.netns, "type", "veth", "peer", "name", peer_name,
            "netns", peer_ns])
        if addr:
            self.ip("addr", "add", addr, "dev", name)
        if peer_addr:
            sh(["ip", "-n", peer_ns, "addr", "add", peer_addr, "dev", peer_name])
        self.ip("link", "set", name, "up")
        sh(["ip", "-n", peer_ns, "link", "set", peer_name, "up"])
        link = Link(self, name, "veth", self.netns, peer_ifname=peer_name)
        self.links.append(link)
        if isinstance(peer, Node):
            peer.links.append(Link(peer, peer_name, "veth", peer.netns, peer_ifname=name))
        return link

    # ---- state
    def identity(self):
        return {"name": self.name, "netns_name": self.netns, "netns": _netns_id(self.netns),
                "mntns": self.mntns, "holder_pid": self.pid,
                "holder_start": self.pid_start}

    def pids(self):
        """Pids of every process of the node (its net or mount namespace)."""
        self.cluster._reap()
        return fence_agent.node_pids(_netns_id(self.netns), self._live_mntns())

    def _live_mntns(self):
        if self.mntns and self.pid and _pid_alive(self.pid, self.pid_start) \
                and fence_agent.ns_of(self.pid, "mnt") == self.mntns:
            return self.mntns
        return None

    def is_up(self):
        """True while the node's holder process lives (it has not lost power)."""
        self.cluster._reap()
        return self.pid is not None and _pid_alive(self.pid, self.pid_start) and fence_agent.ns_of(self.pid, "mnt") == self.mntns

    def daemon_pid(self, comm):
        """Pid of the node's process named comm (e.g. "corosync"), or None."""
        for pid in self.pids():
            try:
                with open("/proc/%d/comm" % pid) as f:
                    if f.read().strip() == comm:
                        return pid
            except OSError:
                pass
        return None

    def pgrep(self, pattern):
        """Pids of the node's processes whose command line contains pattern."""
        out = []
        for pid in self.pids():
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if pattern in f.read().replace(b"\0", b" ").decode(errors="replace"):
                        out.append(pid)
            except OSError:
                pass
        return out

    def log_path(self, which="pacemaker"):
        """Path (on the machine) of the node's log: pacemaker, corosync,
        pacemakerd.out, corosync.out, holder.err."""
        return {"pacemaker": os.path.join(self.dir, "log-pacemaker", "pacemaker.log"),
                "corosync": os.path.join(self.dir, "log-pacemaker", "corosync.log")}.get(
            which, os.path.join(self.dir, which))

    def tail(self, which="pacemaker", lines=40):
        try:
            with open(self.log_path(which), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return "(%s)" % e

    def crm_mon(self, timeout=20):
        """This node's view of the cluster (Status)."""
        r = self.run(["crm_mon", "-1", "--output-as=xml"], timeout=timeout, check=False)
        if r.returncode != 0 or not r.stdout.strip():
            raise ClusterError("%s: crm_mon failed (%d): %s" % (self.name, r.returncode, r.stderr.strip()[-300:]))
        try:
            return Status(r.stdout, via=self.name)
        except ET.ParseError as e:
            raise ClusterError("%s: crm_mon printed bad XML: %s" % (self.name, e))

    def __repr__(self):
        return "Node(%s %s)" % (self.name, "up" if self.is_up() else "down")


# ---------------------------------------------------------------- cluster

class Cluster:
    """A corosync + pacemaker cluster of `nodes` namespace nodes.

    token: corosync totem token timeout (ms). cluster_id: names the state
    directory STATE_ROOT/<id> and the namespaces (ftc<id>-...); random by
    default. auto_restart: restart a node the fence agent rebooted (or was
    asked to power on). ocf_agents: list of (provider, type, path) shown in
    the nodes as /usr/lib/ocf/resource.d/<provider>/<type> (ra/ftvm is added
    as ocf:ftvm:ftvm when it exists). persistent: survive the exit of this
    process (the CLI's `up`); otherwise a detached reaper tears the cluster
    down when this process dies without calling down(). log: a print-like
    function for progress lines, or None. keep_state: keep STATE_ROOT/<id>
    (logs, CIBs) after down() (also FTVM_CLUSTER_KEEP=1). dc_deadtime:
    written into the first CIB (pacemaker's default 20 s makes the first
    start 20 s slower). daemon_env: extra environment for pacemakerd, and
    so for the resource agents it runs (e.g. {"PATH": "...:/usr/bin"}).
    consensus, token_coefficient: corosync totem values (ms; None = corosync's
    defaults: 1.2 x the runtime token, 650); totem_extra: more totem
    key: value pairs. on_node_start(cluster, node): called after every start
    of a node (first start and restarts, corosync answering and pacemakerd
    started), to start per-node daemons."""

    def __init__(self, nodes=3, token=3000, cluster_id=None, auto_restart=False, ocf_agents=None,
                 persistent=False, log=print, keep_state=None, dc_deadtime="2s", daemon_env=None,
                 consensus=None, token_coefficient=None, totem_extra=None, on_node_start=None):
        self.n = nodes
        self.consensus = consensus
        self.token_coefficient = token_coefficient
        self.totem_extra = dict(totem_extra or {})
        self.on_node_start = on_node_start
        self.daemon_env = dict(daemon_env or {})
        self.dc_deadtime = dc_deadtime
        self.token = token
        self.id = cluster_id or "%04x" % random.randint(0, 0xffff)
        self.prefix = "ftc" + self.id
        self.state_dir = os.path.join(STATE_ROOT, self.id)
        self.switch_ns = self.prefix + "-sw"
        self.auto_restart = auto_restart
        self.persistent = persistent
        self.keep_state = keep_state if keep_state is not None else os.environ.get("FTVM_CLUSTER_KEEP") == "1"
        self._log = log
        self.ocf_agents = list(ocf_agents or [])
        if os.path.exists(FTVM_RA) and not any(a[0] == "ftvm" for a in self.ocf_agents):
            self.ocf_agents.append(("ftvm", "ftvm", FTVM_RA))
        self.nodes = [Node(self, i + 1) for i in range(nodes)]
        self.bridges = {}
        self.namespaces = []
        self._ports = 0
        self._lock = threading.RLock()
        self._watch = None
        self._stop = threading.Event()
        self.is_up = False
        self.timings = {}

    # ---- context manager: down() always
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    def log(self, msg):
        if self._log:
            self._log("cluster %s: %s" % (self.id, msg))

    def node(self, n):
        """A Node from 1, "1", "node1" or a Node."""
        if isinstance(n, Node):
            return n
        s = str(n)
        if s.startswith("node"):
            s = s[4:]
        try:
            return self.nodes[int(s) - 1]
        except (ValueError, IndexError):
            raise ClusterError("no node %r" % (n,))

    def _port_name(self):
        self._ports += 1
        return "p%d" % self._ports

    # ---- bring-up
    def up(self, nodes=None, timeout=90, before_start=None):
        """Builds the network, starts every node, waits until crm_mon shows
        all nodes online and quorate, then configures fencing
        (stonith-enabled=true, no-quorum-policy=stop, device fence-ftvm).
        before_start(cluster), if given, runs once the namespaces and the
        cluster LAN exist and before any node starts (to add links that
        must be there when the resources first start)."""
        if nodes is not None and nodes != self.n:
            self.__init__(nodes, self.token, self.id, self.auto_restart, self.ocf_agents, self.persistent,
                          self._log, self.keep_state, self.dc_deadtime, self.daemon_env, self.consensus,
                          self.token_coefficient, self.totem_extra, self.on_node_start)
        if os.geteuid() != 0:
            raise ClusterError("needs root")
        t0 = time.monotonic()
        cleanup_stale(log=self.log)
        try:
            self._make_state()
            self._make_network()
            if before_start:
                before_start(self)
            for node in self.nodes:
                self._write_node_config(node)
            for node in self.nodes:
                self._start_node(node)
            self.log("nodes started, waiting for membership and quorum")
            st = self.wait_for(lambda: self._all_online(), timeout - (time.monotonic() - t0),
                               what="all %d nodes online and quorate" % self.n)
            self.timings["quorate"] = time.monotonic() - t0
            self.log("all online, quorate, DC %s after %.1f s" % (st.dc, self.timings["quorate"]))
            self._configure_fencing(timeout=max(30, timeout - (time.monotonic() - t0)))
            self.timings["up"] = time.monotonic() - t0
            self.log("fencing configured; cluster up after %.1f s" % self.timings["up"])
        except BaseException:
            self.down()
            raise
        self.is_up = True
        if self.auto_restart:
            self._watch = threading.Thread(target=self._watch_requests, daemon=True)
            self._watch.start()
        return self

    def _all_online(self):
        names = [n.name for n in self.nodes]
        for node in self.nodes:
            st = node.crm_mon()
            if not (st.quorate and st.dc and all(st.nodes.get(n, {}).get("online") == "true" for n in names)):
                raise ClusterError("not yet: %r" % st)
        return st

    def _make_state(self):
        os.makedirs(STATE_ROOT, exist_ok=True)
        os.chmod(STATE_ROOT, 0o755)
        os.makedirs(os.path.join(self.state_dir, "nodes"))
        for d in ("fence-hold", "requests", "sbin", "ocf"):
            os.makedirs(os.path.join(self.state_dir, d))
        # the fence agent, shown in the nodes' /usr/sbin through an overlay
        shutil.copy2(FENCE_AGENT, os.path.join(self.state_dir, "sbin", "fence_ftvm_ns"))
        for provider, typ, path in self.ocf_agents:
            d = os.path.join(self.state_dir, "ocf", provider)
            os.makedirs(d, exist_ok=True)
            os.symlink(os.path.abspath(path), os.path.join(d, typ))
        me = os.getpid()
        self._cluster_json = {
            "id": self.id, "prefix": self.prefix, "nodes": [n.name for n in self.nodes],
            "namespaces": [], "owner_pid": me, "owner_start": _pid_starttime(me),
            "persistent": self.persistent, "created": time.time(),
            "host_netns": fence_agent.ns_of("self", "net"), "host_mntns": fence_agent.ns_of("self", "mnt"),
            "token": self.token}
        self._save()
        if not self.persistent:
            # tears the cluster down if this process dies without down()
            subprocess.Popen(["setsid", "-f", sys.executable, os.path.abspath(__file__), "_reap",
                              self.state_dir], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=ENV).wait(10)

    def _save(self):
        self._cluster_json["namespaces"] = list(self.namespaces)
        self._cluster_json["bridges"] = {k: b.ns for k, b in self.bridges.items()}
        _write_json(os.path.join(self.state_dir, "cluster.json"), self._cluster_json)

    def add_namespace(self, name):
        """Creates a network namespace that down() deletes (for the lead's
        clients, LANs...). Returns its name."""
        sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self._save()
        sh(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def _make_network(self):
        self.add_namespace(self.switch_ns)
        self.bridges[LAN_BRIDGE] = self.add_bridge(LAN_BRIDGE)
        for node in self.nodes:
            self.add_namespace(node.netns)
            node.lan = node.attach(self.bridges[LAN_BRIDGE], LAN_IF, addr=node.addr + "/24")

    def add_bridge(self, name, ns=None):
        """A bridge `name` in namespace ns (default: the switch namespace,
        made by up()) that nodes join with node.attach(bridge, ifname, addr)."""
        ns = ns or self.switch_ns
        sh(["ip", "-n", ns, "link", "add", name, "type", "bridge"])
        sh(["ip", "-n", ns, "link", "set", name, "type", "bridge", "ageing_time", "30000"])
        sh(["ip", "-n", ns, "link", "set", name, "up"])
        b = Bridge(self, name, ns)
        self.bridges[name] = b
        if hasattr(self, "_cluster_json"):
            self._save()
        return b

    def runtime_totem(self, node=None):
        """{key: ms} of the totem timeouts corosync actually runs with
        (runtime.config.totem.token, consensus, token_retransmit, join...),
        read with corosync-cmapctl in a live node."""
        nd = self.node(node) if node is not None else self._via(None)[0]
        r = nd.run(["corosync-cmapctl", "-b", "runtime.config.totem"], timeout=10, check=False)
        out = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition(" = ")
            k = k.split(" (")[0].rsplit(".", 1)[-1]
            try:
                out[k] = int(v.strip())
            except ValueError:
                pass
        return out

    def corosync_conf(self):
        nodes = "".join("    node {\n        ring0_addr: %s\n        name: %s\n        nodeid: %d\n    }\n"
                        % (n.addr, n.name, n.index) for n in self.nodes)
        extra = dict(self.totem_extra)
        if self.consensus is not None:
            extra["consensus"] = self.consensus
        if self.token_coefficient is not None:
            extra["token_coefficient"] = self.token_coefficient
        extra = "".join("    %s: %s\n" % kv for kv in extra.items())
        return ("totem {\n    version: 2\n    cluster_name: ftvm%s\n    transport: knet\n"
                "    token: %d\n%s    crypto_cipher: none\n    crypto_hash: none\n    ip_version: ipv4\n}\n"
                "nodelist {\n%s}\n"
                "quorum {\n    provider: corosync_votequorum\n}\n"
                "logging {\n    to_logfile: yes\n    logfile: /var/log/pacemaker/corosync.log\n"
                "    to_stderr: no\n    to_syslog: no\n    timestamp: hires\n}\n") % (self.id, self.token, extra, nodes)

    def _write_node_config(self, node):
        d = node.dir
        for sub in ("etc-corosync", "lib-corosync", "lib-pacemaker", "log-pacemaker"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, "etc-corosync", "corosync.conf"), "w") as f:
            f.write(self.corosync_conf())
        os.makedirs(os.path.join(d, "etc-corosync", "uidgid.d"), exist_ok=True)
        lp = os.path.join(d, "lib-pacemaker")
        for sub in ("cib", "pengine", "blackbox", "cores"):
            os.makedirs(os.path.join(lp, sub), exist_ok=True)
        lg = os.path.join(d, "log-pacemaker")
        os.makedirs(os.path.join(lg, "bundles"), exist_ok=True)
        cib = os.path.join(lp, "cib", "cib.xml")
        if self.dc_deadtime and not os.path.exists(cib):
            # a first CIB with a short dc-deadtime: the first DC is elected
            # after 2 s instead of pacemaker's default 20 s
            with open(cib, "w") as f:
                f.write(sh(["cibadmin", "--empty"]).stdout)
            e = dict(ENV, CIB_file=cib)
            sh(["crm_attribute", "--type", "crm_config", "--name", "dc-deadtime", "--update", self.dc_deadtime],
               env=e)
            os.chmod(cib, 0o600)
        sh(["chown", "-R", "hacluster:haclient", lp, lg])
        sh(["chmod", "0750", lp] + [os.path.join(lp, s) for s in ("cib", "pengine", "blackbox", "cores")])
        sh(["chmod", "0770", lg])

    def _mount_script(self, node):
        d = node.dir
        s = ["set -e",
             "mount -t tmpfs -o mode=0755 tmpfs /run",
             "mkdir -p /run/lock /run/resource-agents && chmod 1755 /run/resource-agents",
             "mount -t tmpfs -o mode=1777 tmpfs /dev/shm",
             "mount --bind %s /etc/corosync" % shlex.quote(os.path.join(d, "etc-corosync")),
             "mount --bind %s /var/lib/corosync" % shlex.quote(os.path.join(d, "lib-corosync")),
             "mount --bind %s /var/lib/pacemaker" % shlex.quote(os.path.join(d, "lib-pacemaker")),
             "mount --bind %s /var/log/pacemaker" % shlex.quote(os.path.join(d, "log-pacemaker")),
             "mount -t overlay overlay -o lowerdir=%s:/usr/sbin /usr/sbin"
             % shlex.quote(os.path.join(self.state_dir, "sbin"))]
        if self.ocf_agents:
            s.append("mount -t overlay overlay -o lowerdir=%s:/usr/lib/ocf/resource.d /usr/lib/ocf/resource.d"
                     % shlex.quote(os.path.join(self.state_dir, "ocf")))
        s += ["hostname %s" % node.name,
              "echo ready",
              "exec sleep infinity </dev/null >/dev/null 2>&1"]
        return "\n".join(s)

    def _start_node(self, node, timeout=30):
        """Starts the node's holder (namespaces, mounts), corosync, pacemakerd."""
        with self._lock:
            t0 = time.monotonic()
            err = open(os.path.join(node.dir, "holder.err"), "a")
            p = subprocess.Popen(["ip", "netns", "exec", node.netns, "unshare", "--mount", "--uts",
                                  "--propagation", "private", "--", "/bin/sh", "-c", self._mount_script(node)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=ENV,
                                 start_new_session=True)
            err.close()
            node.procs.append(p)
            r, _, _ = select.select([p.stdout], [], [], 15)
            line = p.stdout.readline().decode() if r else ""
            p.stdout.close()
            if line.strip() != "ready":
                p.kill()
                raise ClusterError("%s: namespace setup failed: %s" % (node.name, node.tail("holder.err")))
            node.pid = p.pid
            node.pid_start = _pid_starttime(p.pid)
            node.mntns = fence_agent.ns_of(p.pid, "mnt")
            _write_json(os.path.join(self.state_dir, "nodes", node.name + ".json"), node.identity())
            try:
                os.unlink(os.path.join(self.state_dir, "requests", node.name))
            except FileNotFoundError:
                pass
            out = open(os.path.join(node.dir, "corosync.out"), "a")
            node.popen(["corosync", "-f"], stdout=out, stderr=subprocess.STDOUT)
            out.close()
            wait_for(lambda: node.run(["corosync-cmapctl", "-g", "totem.cluster_name"], timeout=5,
                                      check=False).returncode == 0,
                     timeout, 0.1, what="%s: corosync to answer" % node.name)
            out = open(os.path.join(node.dir, "pacemakerd.out"), "a")
            node.popen(["pacemakerd"], env=dict(PCMK_ENV, **self.daemon_env), stdout=out, stderr=subprocess.STDOUT)
            out.close()
            self.log("%s started (holder %d, %.1f s)" % (node.name, node.pid, time.monotonic() - t0))
            if self.on_node_start:
                self.on_node_start(self, node)

    def _configure_fencing(self, timeout=60):
        hosts = " ".join(n.name for n in self.nodes)
        self.pcs("stonith create %s fence_ftvm_ns state_dir=%s pcmk_host_list=%s pcmk_host_check=static-list"
                 % (STONITH_ID, self.state_dir, shlex.quote(hosts)))
        self.pcs("property set stonith-enabled=true no-quorum-policy=stop")
        # every fencer must have registered the device before a node is killed
        for node in self.nodes:
            self.wait_for(lambda: STONITH_ID in node.run(["stonith_admin", "--list-registered"], timeout=15,
                                                         check=False).stdout,
                          timeout, what="%s to register %s" % (node.name, STONITH_ID))
        self.wait_for(lambda: self.crm_mon().roles(STONITH_ID), timeout, what="%s started" % STONITH_ID)

    # ---- tools
    def wait_for(self, pred, timeout, interval=0.25, what="condition"):
        return wait_for(pred, timeout, interval, what)

    def live_nodes(self):
        return [n for n in self.nodes if n.is_up()]

    def run(self, n, args, **kw):
        """node(n).run(args, ...)."""
        return self.node(n).run(args, **kw)

    def _via(self, node):
        if node is not None:
            return [self.node(node)]
        live = self.live_nodes()
        if not live:
            raise ClusterError("no node is up")
        return live

    def crm_mon(self, node=None, timeout=20):
        """Status (parsed crm_mon XML) as seen by `node`; by default the
        first live node whose view is quorate (else the first that answers)."""
        first, err = None, None
        for nd in self._via(node):
            try:
                st = nd.crm_mon(timeout=timeout)
            except ClusterError as e:
                err = e
                continue
            if st.quorate or node is not None:
                return st
            first = first or st
        if first:
            return first
        raise err or ClusterError("no crm_mon answer")

    crm_mon_xml = crm_mon

    def pcs(self, args, node=None, timeout=120, check=True):
        """Runs `pcs args` (string or list) inside a node (default: the first
        live node with quorum). Returns the CompletedProcess."""
        if isinstance(args, str):
            args = shlex.split(args)
        nd = self.node(node) if node is not None else self._quorate_node()
        return nd.run(["pcs"] + list(args), timeout=timeout, check=check)

    def _quorate_node(self):
        for nd in self.live_nodes():
            try:
                if nd.crm_mon(timeout=15).quorate:
                    return nd
            except ClusterError:
                pass
        return self._via(None)[0]

    def fence_history(self, node=None, timeout=30):
        """Fence events (list of attribute dicts: target, action, status,
        origin, delegate, completed...) from `stonith_admin --history '*' --verbose` (all of them)."""
        nd = self._via(node)[0] if node is not None else self._quorate_node()
        r = nd.run(["stonith_admin", "--history", "*", "--verbose", "--output-as=xml"], timeout=timeout, check=False)
        if not r.stdout.strip():
            raise ClusterError("stonith_admin --history failed (%d): %s" % (r.returncode, r.stderr))
        try:
            root = ET.fromstring(r.stdout)
        except ET.ParseError as e:
            raise ClusterError("stonith_admin printed bad XML: %s" % e)
        return [dict(e.attrib) for e in root.iter("fence_event")]

    def fence_log(self):
        """Lines the fence agent logged (dicts: time, monotonic, executor,
        action, target, event, ...)."""
        out = []
        try:
            with open(os.path.join(self.state_dir, "fence.log")) as f:
                for line in f:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
        except FileNotFoundError:
            pass
        return out

    # ---- faults
    def kill_node(self, n):
        """Power loss: SIGKILLs every process of the node. Returns the
        time.monotonic() of the kill."""
        node = self.node(n)
        with self._lock:
            t = time.monotonic()
            c = self._cluster_json
            fence_agent.kill_node_processes(_netns_id(node.netns), node._live_mntns(), c["host_netns"],
                                            c["host_mntns"])
            self._reap()
        self.log("%s killed (all processes)" % node.name)
        return t

    def stop_node(self, n, timeout=60):
        """Clean shutdown: SIGTERM to pacemakerd (resources stop or move),
        then corosync, then the rest."""
        node = self.node(n)
        for comm in ("pacemakerd", "corosync"):
            pid = node.daemon_pid(comm)
            if pid:
                os.kill(pid, signal.SIGTERM)
                wait_for(lambda: node.daemon_pid(comm) is None, timeout, what="%s: %s to stop" % (node.name, comm))
        self.kill_node(node)

    def restart_node(self, n, wait=True, timeout=90):
        """Kills what is left of the node, starts it again (fresh /run, same
        disks), and with wait waits until every live node sees it online."""
        node = self.node(n)
        t0 = time.monotonic()
        with self._lock:
            if node.pids():
                self.kill_node(node)
            self._start_node(node)
        if wait:
            self.wait_for(lambda: all(node.name in nd.crm_mon().online() for nd in self.live_nodes()),
                          timeout - (time.monotonic() - t0), what="%s back online" % node.name)
            self.log("%s back online after %.1f s" % (node.name, time.monotonic() - t0))
        return time.monotonic() - t0

    def partition(self, n, links=None):
        """Cuts the node's links (default: all of them: the cluster LAN and
        every link added with attach/add_veth). Returns time.monotonic()."""
        node = self.node(n)
        t = time.monotonic()
        for link in (links if links is not None else node.links):
            if not link.is_cut:
                link.cut()
        self.log("%s partitioned (%s)" % (node.name, ", ".join(l.ifname for l in node.links if l.is_cut)))
        return t

    def heal(self, n, links=None):
        """Restores the links partition() cut."""
        node = self.node(n)
        for link in (links if links is not None else node.links):
            if link.is_cut:
                link.heal()
        self.log("%s healed" % node.name)
        return time.monotonic()

    def hold_fencing(self, n):
        """From now on the fencing of node n hangs (as if its power switch
        were unreachable) until release_fencing(n) or the agent's
        hold_timeout (50 s, then the fencing fails)."""
        open(os.path.join(self.state_dir, "fence-hold", self.node(n).name), "w").close()

    def release_fencing(self, n):
        try:
            os.unlink(os.path.join(self.state_dir, "fence-hold", self.node(n).name))
        except FileNotFoundError:
            pass

    def _watch_requests(self):
        d = os.path.join(self.state_dir, "requests")
        while not self._stop.wait(0.5):
            try:
                names = [x for x in os.listdir(d) if not x.startswith(".")]
            except OSError:
                return
            for name in names:
                try:
                    node = self.node(name)
                    os.unlink(os.path.join(d, name))
                    if not node.is_up():
                        self.log("%s: restarting after fencing" % name)
                        self.restart_node(node, wait=False)
                except (ClusterError, OSError) as e:
                    self.log("auto restart of %s failed: %s" % (name, e))

    def _reap(self):
        for node in self.nodes:
            node.procs = [p for p in node.procs if p.poll() is None]

    def logs(self, lines=30):
        """The tail of every node's pacemaker and corosync logs (a string)."""
        out = []
        for node in self.nodes:
            for w in ("corosync", "pacemaker", "pacemakerd.out", "corosync.out"):
                out.append("---- %s %s\n%s" % (node.name, w, node.tail(w, lines)))
        return "\n".join(out)

    # ---- teardown
    def down(self):
        """Kills every node process, deletes every namespace and (unless
        keep_state) the state directory. Safe to call more than once."""
        self._stop.set()
        if self._watch and self._watch is not threading.current_thread():
            self._watch.join(5)
        with self._lock:
            if os.path.isdir(self.state_dir):
                teardown(self.state_dir, keep_state=self.keep_state, log=self.log)
            self._reap()
            for node in self.nodes:
                for p in node.procs:
                    try:
                        p.kill()
                        p.wait(5)
                    except (OSError, subprocess.TimeoutExpired):
                        pass
                node.procs = []
                node.pid = None
            self.is_up = False


# ---------------------------------------------------------------- teardown from the state directory

def teardown(state_dir, keep_state=False, log=None):
    """Tears down the cluster described by state_dir/cluster.json: kills
    every process in its nodes' namespaces, deletes its namespaces, removes
    state_dir (unless keep_state). Works without the Cluster object."""
    try:
        with open(os.path.join(state_dir, "cluster.json")) as f:
            c = json.load(f)
    except (OSError, ValueError):
        c = None
    if c:
        for name in c.get("nodes", []):
            try:
                with open(os.path.join(state_dir, "nodes", name + ".json")) as f:
                    nj = json.load(f)
            except (OSError, ValueError):
                nj = {}
            netns = _netns_id("%s-%s" % (c["prefix"], name))
            mntns = fence_agent.live_mntns(nj)  # trusted only while its holder lives
            if netns or mntns:
                try:
                    fence_agent.kill_node_processes(netns, mntns, c["host_netns"], c["host_mntns"])
                except RuntimeError as e:
                    if log:
                        log("teardown %s: %s" % (name, e))
        for ns in reversed(c.get("namespaces", [])):
            if os.path.exists("/run/netns/" + ns):
                sh(["ip", "netns", "del", ns], check=False)
    if keep_state:
        if log:
            log("state kept in %s" % state_dir)
        # the cluster is gone; mark it so that cleanup_stale skips it
        try:
            os.rename(os.path.join(state_dir, "cluster.json"), os.path.join(state_dir, "cluster.json.down"))
        except OSError:
            pass
    else:
        shutil.rmtree(state_dir, ignore_errors=True)


def cleanup_stale(log=None):
    """Tears down clusters whose owner process died (a killed test run)."""
    try:
        ids = os.listdir(STATE_ROOT)
    except FileNotFoundError:
        return
    for i in ids:
        d = os.path.join(STATE_ROOT, i)
        try:
            with open(os.path.join(d, "cluster.json")) as f:
                c = json.load(f)
        except (OSError, ValueError):
            continue
        if c.get("persistent") or _pid_alive(c.get("owner_pid", 0), c.get("owner_start")):
            continue
        if log:
            log("removing stale cluster %s (owner %s gone)" % (i, c.get("owner_pid")))
        teardown(d, log=log)


def _reaper(state_dir):
    """Detached: waits for the owner to exit, then tears its cluster down."""
    path = os.path.join(state_dir, "cluster.json")
    while True:
        try:
            with open(path) as f:
                c = json.load(f)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError):
            time.sleep(0.5)
            continue
        if not _pid_alive(c["owner_pid"], c["owner_start"]):
            time.sleep(1)  # let a down() in progress finish
            if os.path.exists(path):
                teardown(state_dir)
            return 0
        time.sleep(1)


def _clusters():
    try:
        return sorted(os.listdir(STATE_ROOT))
    except FileNotFoundError:
        return []


def _attach(cid):
    """A Cluster object for an existing cluster started by `up` (CLI)."""
    with open(os.path.join(STATE_ROOT, cid, "cluster.json")) as f:
        c = json.load(f)
    cl = Cluster(nodes=len(c["nodes"]), cluster_id=cid, persistent=True, token=c.get("token", 3000))
    cl._cluster_json = c
    cl.namespaces = c["namespaces"]
    for node in cl.nodes:
        with open(os.path.join(cl.state_dir, "nodes", node.name + ".json")) as f:
            nj = json.load(f)
        if nj.get("holder_pid") and _pid_alive(nj["holder_pid"], nj.get("holder_start")):
            node.pid, node.pid_start, node.mntns = nj["holder_pid"], nj["holder_start"], nj["mntns"]
    return cl


def main(argv=None):
    ap = argparse.ArgumentParser(description="3-node corosync+pacemaker namespace cluster")
    ap.add_argument("command", choices=["up", "down", "status", "_reap"])
    ap.add_argument("arg", nargs="?")
    ap.add_argument("--id", help="cluster id (default: a random one for up, every cluster for down)")
    ap.add_argument("--all", action="store_true", help="down: also clusters whose owning process still runs")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--token", type=int, default=3000)
    ap.add_argument("--timeout", type=float, default=90)
    a = ap.parse_args(argv)
    if a.command == "_reap":
        return _reaper(a.arg)
    why = missing_requirements()
    if why:
        print("cannot run: " + "; ".join(why), file=sys.stderr)
        return 77
    if a.command == "up":
        c = Cluster(nodes=a.nodes, token=a.token, cluster_id=a.id, persistent=True)
        c.up(timeout=a.timeout)
        print(c.crm_mon().xml if os.environ.get("VERBOSE") else repr(c.crm_mon()))
        print("id %s; state in %s; node shell: nsenter -t PID -n -m -u (PIDs in %s/nodes/*.json); "
              "down: %s down --id %s" % (c.id, c.state_dir, c.state_dir, sys.argv[0], c.id))
        return 0
    ids = [a.id] if a.id else _clusters()
    if a.command == "down":
        for i in ids:
            d = os.path.join(STATE_ROOT, i)
            if not os.path.isdir(d):
                continue
            try:
                with open(os.path.join(d, "cluster.json")) as f:
                    c = json.load(f)
            except (OSError, ValueError):
                c = {}
            if not a.id and not a.all and c and not c.get("persistent") \
                    and _pid_alive(c.get("owner_pid", 0), c.get("owner_start")):
                print("leaving %s: its owner (pid %s) runs; --id %s or --all to tear it down anyway"
                      % (i, c["owner_pid"], i))
                continue
            print("tearing down %s" % i)
            teardown(d)
        return 0
    if a.command == "status":
        rc = 0
        for i in ids:
            if not os.path.exists(os.path.join(STATE_ROOT, i, "cluster.json")):
                continue
            cl = _attach(i)
            print("cluster %s (%s)" % (i, cl.state_dir))
            for node in cl.nodes:
                if not node.is_up():
                    print("  %s: down" % node.name)
                    continue
                r = node.run(["crm_mon", "-1"], check=False, timeout=20)
                print("  %s view:\n%s" % (node.name, "\n".join("    " + l for l in r.stdout.splitlines())))
        if not ids:
            print("no cluster")
        return rc


if __name__ == "__main__":
    sys.exit(main())
