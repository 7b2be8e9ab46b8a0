"""Probes for the tests of sys-sec's walls, each observed where the traffic would arrive.

- `Counting`: a UDP/TCP listener in a namespace counting what it gets per (source, tag);
  the tag is the payload's first word, so a test tells its probes apart after NAT has
  rewritten their source. `settle()` sends a sentinel from the listener's own namespace:
  it proves the listener hears, and what was not logged before it did not arrive.
- `send`: probes from a namespace, all at once: TCP connect, UDP send waiting for a reply,
  a DNS query, or a UDP datagram with a forged source (raw socket); each probe's outcome
  is one word: OPEN, REPLY, REFUSED, TIMEOUT (or SENT for a forged datagram).
- `listening_sockets`: every TCP and UDP socket listening in a namespace (`ss -Hlntup`).
- `Delivered`: the kernel's count of packets to given ports that got past iptables' INPUT
  (an nft chain hooked after the filter table), per arriving interface: a socket that
  answers nothing (wireguard-go) is still seen to receive.
- `removed`: iptables changes made at runtime in a namespace (a rule deleted, a chain's
  policy opened), the ruleset restored afterwards: a mutation check, proving a test fails
  without the rule it guards.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

from tests.netlab import Lab
from tests.syssec_lab import Listener

TIMEOUT = 1.0


def run(netns: str, *argv: str, input: bytes | None = None) -> str:
    done = subprocess.run(["ip", "netns", "exec", netns, *argv], input=input,
                          capture_output=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError(f"{netns}: {shlex.join(argv)} exited {done.returncode}: "
                             f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode()


# Listen on each `udp|tcp,ADDR,PORT`; log every datagram and connection as
# `udp|tcp PORT SOURCE TAG` (TAG: the first word it carried, "-" if none); "ready" first.
COUNT = r"""
import asyncio, sys
def tag(data):
    words = data.split()
    return words[0].decode(errors="replace") if words else "-"
async def main(specs):
    loop = asyncio.get_running_loop()
    class U(asyncio.DatagramProtocol):
        def __init__(self, port): self.port = port
        def datagram_received(self, data, peer):
            print("udp", self.port, peer[0], tag(data), flush=True)
    for spec in specs:
        proto, addr, port = spec.split(","); port = int(port)
        if proto == "udp":
            await loop.create_datagram_endpoint(lambda port=port: U(port),
                                                local_addr=(addr, port), reuse_port=True)
        else:
            async def conn(r, w, port=port):
                try:
                    line = await asyncio.wait_for(r.readline(), 2)
                except (asyncio.TimeoutError, ConnectionError):
                    line = b""
                print("tcp", port, w.get_extra_info("peername")[0], tag(line), flush=True)
                w.close()
            await asyncio.start_server(conn, addr, port, reuse_address=True)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main(sys.argv[1:]))
"""


class Counting:
    """A COUNT listener in `netns` on each `udp|tcp,ADDR,PORT` of `specs`."""

    def __init__(self, netns: str, *specs: str) -> None:
        assert specs and all(s.split(",")[0] in ("udp", "tcp") for s in specs), specs
        self.netns, self.specs = netns, specs
        # The Lab argument is unused by Listener; these listeners also run in namespaces
        # no Lab made (the embedded platform's).
        self.listener = Listener(cast(Lab, None), netns, COUNT, *specs)
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def settle(self) -> None:
        """A sentinel to the first socket from the listener's own side, waited for: fails
        if the listener is deaf, and once it is logged so is everything sent before."""
        proto, addr, port = self.specs[0].split(",")
        send(self.netns, f"{proto},{addr},{port},sentinel")
        line = f"{proto} {port} "
        assert self.listener.wait_for(lambda got: got.startswith(line) and
                                      got.endswith(" sentinel"), 5), \
            f"the listener in {self.netns} did not hear its own sentinel"

    def heard(self) -> Counter[tuple[str, str, str]]:
        """(proto, source, tag) -> how many, for everything so far (sentinels left out)."""
        for line in self.listener.take():
            proto, _, source, tag = line.split()
            if tag != "sentinel":
                self.counts[(proto, source, tag)] += 1
        return self.counts

    def tags(self) -> set[str]:
        return {tag for _, _, tag in self.heard()}

    def wait_for_tag(self, tag: str, timeout: float = 3) -> bool:
        if tag in self.tags():
            return True
        return self.listener.wait_for(lambda line: line.endswith(f" {tag}"), timeout) \
            is not None and tag in self.tags()

    def stop(self) -> None:
        self.listener.stop()


@contextmanager
def counting(netns: str, *specs: str) -> Iterator[Counting]:
    c = Counting(netns, *specs)
    try:
        yield c
    finally:
        c.stop()


# Each argument `KIND,DST,PORT,TAG[,SOURCE]`, all sent at once; prints one outcome a line.
#   tcp   connect, send TAG: OPEN (and the TAG sent), REFUSED or TIMEOUT
#   udp   send TAG on a connected socket, wait for a reply: REPLY, REFUSED (ICMP), TIMEOUT
#   dns   a DNS query for TAG (a name): REPLY (any DNS answer), REFUSED or TIMEOUT
#   spoof a UDP datagram carrying TAG from SOURCE, a raw IPv4 packet: SENT
SEND = r"""
import asyncio, socket, struct, sys
from netsec.app.dns import build_query
TIMEOUT = float(sys.argv[1])
def spoof(dst, port, tag, src):
    payload = tag.encode() + b"\n"
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    # The kernel fills in the IP checksum and the total length; a UDP checksum of 0 is none.
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.sendto(ip + udp, (dst, 0))
    return "SENT"
class Reply(asyncio.DatagramProtocol):
    def __init__(self): self.done = asyncio.get_running_loop().create_future()
    def datagram_received(self, data, addr):
        if not self.done.done(): self.done.set_result("REPLY")
    def error_received(self, exc):
        if not self.done.done():
            self.done.set_result("REFUSED" if isinstance(exc, ConnectionRefusedError)
                                 else type(exc).__name__)
async def probe(kind, dst, port, tag, src=None):
    if kind == "spoof":
        return spoof(dst, port, tag, src)
    if kind == "tcp":
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(dst, port), TIMEOUT)
        except ConnectionRefusedError:
            return "REFUSED"
        except (asyncio.TimeoutError, OSError):
            return "TIMEOUT"
        w.write(tag.encode() + b"\n")
        try:
            await w.drain(); w.close(); await w.wait_closed()
        except ConnectionError:
            pass
        return "OPEN"
    t, p = await asyncio.get_running_loop().create_datagram_endpoint(
        Reply, remote_addr=(dst, port))
    try:
        t.sendto(build_query(tag, 0x4857) if kind == "dns" else tag.encode() + b"\n")
        return await asyncio.wait_for(p.done, TIMEOUT)
    except asyncio.TimeoutError:
        return "TIMEOUT"
    finally:
        t.close()
async def main(specs):
    got = await asyncio.gather(*(probe(k, d, int(p), *rest)
                                 for k, d, p, *rest in (s.split(",") for s in specs)))
    print("\n".join(got))
asyncio.run(main(sys.argv[2:]))
"""


def send(netns: str, *targets: str, timeout: float = TIMEOUT) -> list[str]:
    """Each `KIND,DST,PORT,TAG[,SOURCE]` probed from `netns` (see SEND); the outcomes."""
    out = run(netns, sys.executable, "-c", SEND, str(timeout), *targets).split()
    assert len(out) == len(targets), out
    return out


@dataclass(frozen=True)
class Socket:
    proto: str          # "tcp" | "udp"
    addr: str           # as bound: "0.0.0.0", "*", "::", "10.137.255.254", ...
    port: int
    process: str        # the owning program's name, "?" if ss did not say

    @property
    def wildcard(self) -> bool:
        return self.addr in ("0.0.0.0", "*", "::")

    def ipv4_targets(self, local: Iterable[str]) -> list[str]:
        """Which of sys-sec's IPv4 addresses `local` reach this socket: all of them for a
        wildcard, its own if it is bound to one of them, none for loopback or IPv6."""
        if self.wildcard:
            return list(local)
        return [self.addr] if self.addr in local else []

    def __str__(self) -> str:
        return f"{self.proto} {self.addr}:{self.port} ({self.process})"


_PROCESS = re.compile(r'users:\(\("([^"]+)"')


def listening_sockets(netns: str) -> list[Socket]:
    """Every TCP and UDP socket listening (or, for UDP, bound) in `netns`."""
    found = set()
    for line in run(netns, "ss", "-Hlntup").splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        addr, _, port = fields[4].rpartition(":")
        addr = addr.strip("[]").split("%")[0]
        m = _PROCESS.search(line)
        found.add(Socket(fields[0], addr, int(port), m.group(1) if m else "?"))
    return sorted(found, key=lambda s: (s.proto, s.port, s.addr))


class Delivered:
    """Packets past iptables' INPUT to each (proto, port), per arriving interface group,
    counted by an nft chain of its own hooked after the filter table (priority 10): what
    iptables dropped it never sees."""

    def __init__(self, netns: str, ports: Iterable[tuple[str, int]]) -> None:
        self.netns = netns
        self.table = f"hwcount{os.getpid()}"
        self.ports = sorted(set(ports))
        rules = [f'add rule ip {self.table} input iifname "{group}" {proto} dport {port} '
                 f'counter comment "{group} {proto} {port}"'
                 for proto, port in self.ports for group in ("vif*", "lo")]
        script = "\n".join([f"add table ip {self.table}",
                            f"add chain ip {self.table} input "
                            "{ type filter hook input priority 10; policy accept; }",
                            *rules]) + "\n"
        run(netns, "nft", "-f", "-", input=script.encode())

    def counts(self) -> dict[tuple[str, str, int], int]:
        """(group, proto, port) -> packets; group is "vif*" (any guest) or "lo"."""
        listed = json.loads(run(self.netns, "nft", "-j", "list", "table", "ip", self.table))
        out = {}
        for item in listed["nftables"]:
            rule = item.get("rule")
            if rule and "comment" in rule:
                group, proto, port = rule["comment"].split()
                packets = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
                out[(group, proto, int(port))] = packets
        return out

    def close(self) -> None:
        subprocess.run(["ip", "netns", "exec", self.netns, "nft", "delete", "table", "ip",
                        self.table], capture_output=True, check=False)


@contextmanager
def delivered(netns: str, ports: Iterable[tuple[str, int]]) -> Iterator[Delivered]:
    d = Delivered(netns, ports)
    try:
        yield d
    finally:
        d.close()


@contextmanager
def removed(netns: str, *changes: str, tool: str = "iptables") -> Iterator[None]:
    """Each of `changes` (arguments to `tool`: "-D CHAIN RULE...", "-P CHAIN ACCEPT") made in
    `netns`, the ruleset restored as it was afterwards. A rule that is not there fails at
    once: a mutation must remove what is really in force."""
    saved = run(netns, f"{tool}-save").encode()
    try:
        for change in changes:
            run(netns, tool, *shlex.split(change))
        yield
    finally:
        run(netns, f"{tool}-restore", input=saved)


def counter(netns: str, chain: str, rule: str, table: str = "filter") -> int:
    """Packets counted by the one rule of `chain` carrying every word of `rule` (iptables
    -S reorders a rule's options and adds matches, so words are compared, not the text)."""
    words = Counter(shlex.split(rule))
    specs = [line for line in run(netns, "iptables", "-t", table, "-S", chain).splitlines()
             if line.startswith("-A ")]
    found = [n for n, line in enumerate(specs) if not words - Counter(shlex.split(line))]
    assert len(found) == 1, f"{len(found)} rules with {rule!r} in {chain}: {specs}"
    # -xvnL numbers the rules in -S's order.
    listed = run(netns, "iptables", "-t", table, "-xvnL", chain, "--line-numbers")
    row = next(r.split() for r in listed.splitlines()[2:] if r.split()[:1] == [str(found[0] + 1)])
    return int(row[1])
