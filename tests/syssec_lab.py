"""sys-sec's controller in a namespace with one guest per policy and a far side, for the wall
tests (test_ipv6_wall, test_dns_wall): dom0's part is played by the test (it introduces
sys-sec and writes each guest's vif backend directory, as the toolstack does), the real
controller applies the firewall (both families), runs the resolver and, with `engine`, the
inline engine. Every observation is made at the receiving side by a listener logging each
datagram and connection it gets (`Listener`).
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from dom0.layout import Node, vif_addressing, vif_nodes
from dom0.xenstore.client import AsyncXenStore
from domains.syssec.ipsd_pool import default_workers
from tests.conftest import REPO, Daemon
from tests.netlab import Lab, lab

SEC = 7
GW = "10.137.255.254"
INET = "198.51.100.1"          # the far side's first address (sys-sec's next hop)
VPN_IFACE = "hwvpn0"           # stands for the tunnel of vpn-only guests

# Log every UDP datagram and TCP connection to the given ports on every address, IPv4 and
# IPv6 (one dual-stack socket each), as `udp|tcp PORT PEER`; print "ready" first.
LISTEN = r"""
import asyncio, socket, sys
async def main(specs):
    loop = asyncio.get_running_loop()
    class U(asyncio.DatagramProtocol):
        def __init__(self, port): self.port = port
        def datagram_received(self, data, peer): print("udp", self.port, peer[0], flush=True)
    for spec in specs:
        proto, port = spec.split(":"); port = int(port)
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        if proto == "udp":
            await loop.create_datagram_endpoint(lambda port=port: U(port), sock=s)
        else:
            async def conn(r, w, port=port):
                print("tcp", port, w.get_extra_info("peername")[0], flush=True)
                w.write(b"hello\n"); await w.drain(); w.close()
            await asyncio.start_server(conn, sock=s)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main(sys.argv[1:]))
"""

# A DNS server answering ZONE_JSON on UDP and TCP on each PORT at ADDRESS (bound to it, so
# that replies leave from the address asked); logs each query as `dns udp|tcp PORT NAME PEER`.
DNS_SERVER = r"""
import asyncio, json, socket, struct, sys
from dom0.sim.servers import answer
from netsec.app.dns import DnsError, parse_query
zone = json.load(open(sys.argv[1]))
def log(proto, port, query, peer):
    try: q = parse_query(query)[1]
    except DnsError: q = None
    name = q.name.decode("ascii", "replace").lower() if q else "?"
    print("dns", proto, port, name, peer, flush=True)
async def main(ports):
    loop = asyncio.get_running_loop()
    class U(asyncio.DatagramProtocol):
        def __init__(self, port): self.port = port
        def connection_made(self, t): self.t = t
        def datagram_received(self, data, peer):
            log("udp", self.port, data, peer[0])
            out = answer(zone, data)
            if out: self.t.sendto(out, peer)
    for port in ports:
        await loop.create_datagram_endpoint(lambda port=port: U(port), local_addr=(addr, port))
        async def conn(r, w, port=port):
            try:
                while True:
                    n = struct.unpack("!H", await r.readexactly(2))[0]
                    q = await r.readexactly(n)
                    log("tcp", port, q, w.get_extra_info("peername")[0])
                    out = answer(zone, q)
                    w.write(struct.pack("!H", len(out)) + out); await w.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                w.close()
        await asyncio.start_server(conn, addr, port)
    print("ready", flush=True)
    await asyncio.Event().wait()
addr = sys.argv[2]
asyncio.run(main([int(p) for p in sys.argv[3:]]))
"""

# Ask SERVER:PORT over udp|tcp for NAME's A record: the address, or TIMEOUT, REFUSED,
# RESET, NOANSWER.
DNS_ASK = r"""
import socket, struct, sys
from netsec.app.dns import TYPE_A, build_query, parse_message
proto, server, port, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
q = build_query(name, 0x4857)
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.0)
        s.sendto(q, (server, port)); reply = s.recvfrom(4096)[0]
    else:
        s = socket.create_connection((server, port), timeout=1.0)
        s.sendall(struct.pack("!H", len(q)) + q)
        n = struct.unpack("!H", s.recv(2))[0]; reply = s.recv(n)
except TimeoutError:
    print("TIMEOUT"); sys.exit()
except ConnectionRefusedError:
    print("REFUSED"); sys.exit()
except (ConnectionError, struct.error):
    print("RESET"); sys.exit()
print(next((r.rdata for r in parse_message(reply).answers if r.rtype == TYPE_A), "NOANSWER"))
"""


class Listener:
    """A logging server (LISTEN or DNS_SERVER) in a namespace; its lines as they come."""

    def __init__(self, net: Lab, ns: str, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", script,
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=REPO, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        self.wait_for(lambda line: line == "ready", 10)
        self.seen.clear()

    def _read(self, out: object) -> None:
        for line in out:  # type: ignore[attr-defined]
            self.lines.put(line.strip())

    def wait_for(self, pred: Callable[[str], bool], timeout: float) -> str | None:
        """The first line (seen or to come within `timeout`) for which `pred` holds."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                if pred(line):
                    return line
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                assert self.proc.poll() is None, self.proc.stderr.read()  # type: ignore[union-attr]
                return None
            self.seen.append(line)

    def take(self) -> list[str]:
        """Every line so far, forgotten once taken."""
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        taken, self.seen = self.seen, []
        return taken

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)


def ip(domid: int) -> str:
    return vif_addressing(domid, 0).ip


@dataclass
class SysSec:
    net: Lab
    ns: dict[str, str]                 # "sec", "inet" and each guest's name
    domids: dict[str, int]
    state: Path
    log: Path
    workers: int = 1                   # the engine's workers (queues 0..workers-1)

    def run(self, where: str, *argv: str, check: bool = True) -> str:
        return self.net.run(self.ns[where], *argv, check=check).stdout.decode()

    def py(self, where: str, script: str, *args: str) -> str:
        done = self.net.run(self.ns[where], sys.executable, "-c", script, *args, check=False)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode().strip()

    def probe(self, where: str, *argv: str) -> str:
        """tests/net_probe.py from inside `where`."""
        return self.py(where, (REPO / "tests" / "net_probe.py").read_text(), *argv)

    def listen(self, where: str, script: str, *args: str) -> Listener:
        return Listener(self.net, self.ns[where], script, *args)

    def controller_log(self) -> str:
        return self.log.read_text(errors="replace")


def build_namespaces(net: Lab, guests: dict[str, tuple[int, str]],
                     far: tuple[str, ...]) -> dict[str, str]:
    """sys-sec's namespace ("sec") wired to each guest's and to the far side's ("inet"), as
    the toolstack and the agents leave them, forwarding on and no firewall yet; the
    namespaces by role."""
    ns = {name: net.ns(name) for name in ("sec", "inet", *guests)}
    net.run(ns["sec"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for guest, (domid, _) in guests.items():
        vif = f"vif{domid}.0"
        net.link(ns[guest], "eth0", ns["sec"], vif)
        # What the agents do once the vif handshake is through (domains/agent.py).
        net.run(ns[guest], "ip", "addr", "add", f"{ip(domid)}/32", "dev", "eth0")
        net.run(ns[guest], "ip", "route", "add", GW, "dev", "eth0", "scope", "link")
        net.run(ns[guest], "ip", "route", "add", "default", "via", GW)
        net.run(ns["sec"], "ip", "addr", "add", f"{GW}/32", "dev", vif)
        net.run(ns["sec"], "ip", "route", "add", f"{ip(domid)}/32", "dev", vif)
    net.link(ns["sec"], "uplink0", ns["inet"], "eth0")
    net.run(ns["sec"], "ip", "addr", "add", "198.51.100.2/24", "dev", "uplink0")
    net.run(ns["sec"], "ip", "route", "add", "default", "via", INET)
    for addr in (INET, *far):
        net.run(ns["inet"], "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
    net.link(ns["sec"], VPN_IFACE, ns["inet"], "vpn0")
    return ns


@asynccontextmanager
async def sys_sec(xenstored: Daemon, tmp: Path, guests: dict[str, tuple[int, str]], *,
                  engine: bool, far: tuple[str, ...] = (), settings: str = "",
                  lists: dict[str, str] | None = None,
                  prefix: str = "hwlab", workers: int | None = None,
                  prepare: Callable[[Path], object] | None = None) -> AsyncIterator[SysSec]:
    """sys-sec with `guests` ({name: (domid, policy)}) plugged in, its policy in force;
    `far`: more addresses of the far side; `lists`: {category: list text}; `workers`: the
    engine's (default: the controller's, one per core); `prepare` is given the state folder
    before the controller starts (a bundle in force, say)."""
    workers = workers or default_workers()
    xs = await AsyncXenStore.connect(("unix", str(xenstored.socket)))
    await xs.introduce(SEC)
    await xs.write_nodes([Node(f"/local/domain/{SEC}", None, (f"n{SEC}",)),
                          *(n for name, (domid, policy) in guests.items()
                            for n in vif_nodes(domid, SEC, 0, policy, name=name))])
    state = tmp / "sec"
    (state / "lists").mkdir(parents=True)
    for category, text in (lists or {}).items():
        (state / "lists" / f"{category}.txt").write_text(text)
    (state / "syssec.toml").write_text(f'dns_upstream = "{INET}"\n{settings}')
    if prepare is not None:
        prepare(state)
    log = tmp / "syssec.log"
    controller: subprocess.Popen[bytes] | None = None
    with lab(prefix) as net:
        try:
            ns = build_namespaces(net, guests, far)
            socket = xenstored.rundir / "domain" / str(SEC) / "socket"
            with open(log, "ab") as f:
                controller = subprocess.Popen(
                    ["ip", "netns", "exec", ns["sec"], sys.executable,
                     "-m", "domains.syssec.controller",
                     "--state-dir", str(state), "--uplink", "uplink0", "--vpn-iface", VPN_IFACE,
                     "--xenstore", str(socket), "--workers", str(workers),
                     *([] if engine else ["--no-engine"])],
                    stdout=subprocess.DEVNULL, stderr=f, start_new_session=True,
                    # The engine runs with -S (no site): what it imports, as the ns backend
                    # names it.
                    env={**os.environ,
                         "PYTHONPATH": f"{REPO}:{sysconfig.get_paths()['purelib']}"})
            applied = f"/local/domain/{SEC}/data/hyperwall/policy-applied"
            want = [f"{domid}/0 {name} {ip(domid)} {policy}"
                    for name, (domid, policy) in guests.items()]
            got = await xs.wait_value(applied, lambda v: v is not None and all(
                w in v.decode() for w in want), 20)
            assert got is not None and all(w in got.decode() for w in want), \
                f"not applied: {got!r}\n" + log.read_text(errors="replace")
            if engine:
                ips = f"/local/domain/{SEC}/data/hyperwall/ips"
                assert await xs.wait_value(ips, lambda v: v == b"running", 30) == b"running", \
                    log.read_text(errors="replace")
            yield SysSec(net, ns, {name: d for name, (d, _) in guests.items()}, state, log,
                         workers)
        finally:
            if controller is not None and controller.poll() is None:
                controller.terminate()
                try:
                    controller.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    controller.kill()
                    controller.wait()
            await xs.close()


def zone_file(tmp: Path, zone: dict[str, str]) -> Path:
    path = tmp / "zone.json"
    path.write_text(json.dumps(zone))
    return path
