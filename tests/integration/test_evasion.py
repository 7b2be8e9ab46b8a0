"""The evasion suite (issue 12, item 6), on the embedded platform with the simulated world:
each of sys-sec's inspection promises crossed with the traffic shapes an attacker or a
browser produces. Test ids read as a table: `test_<promise>[<shape>]`.

Every test observes at the receiving side: the far-side server (tests/evasion_shapes.py,
at EVASION_ADDR in the world) logs each request and TLS name it is asked, and the client in
the guest reports the bytes it received. Each carries its positive control: the same shape
with a benign payload or an allowed name is seen to arrive, by the same observer.

The clients run in the guest's network namespace (`ip netns exec hw-<domid>`) with the
host's files: faster than `hyperwall exec`, and the same network as the guest's processes.
The IPv4/IPv6 walls and DNS on other ports are in test_walls, test_ipv6_wall and
test_dns_wall.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from dom0.sim.embedded import Platform
from dom0.sim.net import INTRANET, PUBLIC_RESOLVER, ZONE, SimNet
from tests.conftest import REPO
from tests.evasion_shapes import (
    HELLO_SHAPES,
    RAW_SHAPES,
    RESPONSE_SHAPES,
    SIG,
    bodies,
    body,
    body_target,
    client_hello,
)
from tests.simworld import embedded_world
from tests.syssec_lab import Listener

pytestmark = [pytest.mark.root, pytest.mark.slow]

EVASION_ADDR = "203.0.113.77"
HTTP_PORTS, TLS_PORTS = (80, 8080, 31337), (443, 8443)
BLOCKED, ALLOWED = "adult.example", "allowed.example"   # adult is on sys-sec's adult list
UNLISTED = "zzzzz.example"     # as long as BLOCKED, on no list: the benign twin in a stream
RUN_TIMEOUT = 30


@dataclass
class World:
    platform: Platform
    net: SimNet
    server: Listener
    netns: dict[str, str]        # guest name -> its network namespace

    def run(self, guest: str, *args: str) -> dict:
        done = subprocess.run(["ip", "netns", "exec", self.netns[guest], sys.executable, "-m",
                               "tests.evasion_shapes", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=RUN_TIMEOUT)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def received(self, guest: str, *args: str) -> bytes:
        return bytes.fromhex(self.run(guest, *args)["received"])

    def wait_until_family_is_through(self, timeout: float = 30) -> None:
        """`up` returns once the domains run; sys-sec applies family's policy and starts
        its engine a moment later."""
        deadline = time.monotonic() + timeout
        while hello(ALLOWED) not in self.received("family", "http", EVASION_ADDR, "80",
                                                  "whole", get(ALLOWED).hex()):
            assert time.monotonic() < deadline, "family never reached the far side"
        self.asked()

    def asked(self) -> list[dict]:
        """What the far side was asked since the last call: a sentinel request from
        `untrusted` goes last, so whatever arrived before it has been logged."""
        self.run("untrusted", "http", EVASION_ADDR, "80", "whole",
                 get("sentinel.example").hex())
        assert self.server.wait_for(lambda line: "sentinel.example" in line, 10), \
            "the far side did not log the sentinel"
        return [json.loads(line) for line in self.server.take()
                if "sentinel.example" not in line]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    zone = {**ZONE, "evasion.example": EVASION_ADDR, f"www.{ALLOWED}": ZONE[ALLOWED]}
    with embedded_world(f"hwev{os.getpid() % 10000}", zone,
                        first_domid=6000 + os.getpid() % 1000) as (platform, net):
        server = Listener(None, net.inet, "from tests.evasion_shapes import main; "  # type: ignore[arg-type]
                          "import sys; main(sys.argv[1:])", "serve", EVASION_ADDR,
                          str(net.dir / net.inet / "certs"), ",".join(map(str, HTTP_PORTS)),
                          ",".join(map(str, TLS_PORTS)))
        try:
            netns = {g: f"hw-{platform.domid(g)}" for g in ("family", "untrusted", "work")}
            w = World(platform, net, server, netns)
            w.wait_until_family_is_through()
            yield w
        finally:
            server.stop()


def get(host: str, target: str = "/", extra: bytes = b"", first: bytes = b"") -> bytes:
    return (f"GET {target} HTTP/1.1\r\n".encode() + first + f"Host: {host}\r\n".encode()
            + b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) evasion-suite\r\n"
            + b"Accept: */*\r\n" + extra + b"\r\n")


def cookies(n: int) -> bytes:
    return b"Cookie: " + b"; ".join(b"c%d=%s" % (i, b"v" * 90) for i in range(n // 96)) \
        + b"\r\n"


def hello(host: str) -> bytes:
    return f"hello from {host}\n".encode()


# ---- malware dropped -----------------------------------------------------------------

# shape -> (response shape, port, requests before the one that matters)
MALWARE_SHAPES = {**{shape: (shape, 80, 0) for shape in RESPONSE_SHAPES},
                  "keep-alive, second response": ("length", 80, 1),
                  "pipelined, second response": ("length", 80, 1),
                  "port 8080": ("length", 8080, 0),
                  "port 31337, 1-byte segments": ("1-byte segments", 31337, 0)}


@pytest.mark.parametrize("shape", MALWARE_SHAPES)
def test_malware_dropped(world: World, shape: str) -> None:
    response, port, before = MALWARE_SHAPES[shape]
    client = "keep-alive" if shape.startswith("keep-alive") else "whole"

    def fetch(kind: str) -> bytes:
        requests = [get(ALLOWED)] * before + [get(ALLOWED, body_target(kind, response))]
        return bodies(world.received("family", "http", EVASION_ADDR, str(port), client,
                                     *(r.hex() for r in requests)))
    # Positive control: the same shape with a clean body arrives whole.
    assert fetch("clean") == hello(ALLOWED) * before + body("clean"), shape
    got = fetch("evil")
    assert SIG not in got, f"{shape}: the signature reached the guest"
    assert world.asked(), "the far side was not asked"


# ---- category blocked by HTTP Host -------------------------------------------------------

# shape -> (requests for NAME, client shape, port)
HOST_SHAPES = {
    "plain": (lambda n: [get(n)], "whole", 80),
    "upper case": (lambda n: [get(n.upper())], "whole", 80),
    "mixed case": (lambda n: [get(n.title())], "whole", 80),
    "trailing dot": (lambda n: [get(n + ".")], "whole", 80),
    "with port": (lambda n: [get(n + ":80")], "whole", 80),
    "header name upper case, no space": (
        lambda n: [get(n).replace(b"Host: ", b"HOST:")], "whole", 80),
    "trailing dot, upper case, port": (lambda n: [get(n.upper() + ".:80")], "whole", 80),
    "absolute URI, other Host": (lambda n: [get("news.example", f"http://{n}/")], "whole", 80),
    "cookies 2 KB": (lambda n: [get(n, extra=cookies(2048))], "whole", 80),
    "cookies 8 KB before Host": (lambda n: [get(n, first=cookies(8192))], "whole", 80),
    "1-byte segments": (lambda n: [get(n)], "1-byte segments", 80),
    "split in host name": (lambda n: [get(n)], "split in " + "{name}", 80),
    "keep-alive, second request": (lambda n: [get(ALLOWED), get(n)], "keep-alive", 80),
    "pipelined, second request": (lambda n: [get(ALLOWED), get(n)], "whole", 80),
    "port 8080": (lambda n: [get(n)], "whole", 8080),
    "port 31337, 1-byte segments": (lambda n: [get(n)], "1-byte segments", 31337),
}


def asked_for(asked: list[dict], name: str) -> list[dict]:
    return [a for a in asked if name in (a.get("host"), (a.get("sni") or "").rstrip(".")
                                         .lower())]


Fetch = Callable[[str], tuple[bytes, list[dict]]]   # name -> (what came back, far side's log)


def never_asked_for_blocked(shape: str, fetch: Fetch, control: str = ALLOWED,
                            answered: bool = True) -> None:
    """The positive control first: `fetch(control)` reaches the far side (and is answered,
    where the client reads a page); then `fetch(BLOCKED)` never does, nor its page back."""
    got, asked = fetch(control)
    assert asked_for(asked, control) and (hello(control) in got or not answered), \
        (shape, asked, got)
    got, asked = fetch(BLOCKED)
    assert not asked_for(asked, BLOCKED), f"{shape}: the far side was asked for {BLOCKED}"
    assert hello(BLOCKED) not in got


@pytest.mark.parametrize("shape", HOST_SHAPES)
def test_category_blocked_by_host(world: World, shape: str) -> None:
    requests, client, port = HOST_SHAPES[shape]

    def fetch(name: str) -> tuple[bytes, list[dict]]:
        got = world.received("family", "http", EVASION_ADDR, str(port),
                             client.format(name=name), *(r.hex() for r in requests(name)))
        return got, world.asked()
    never_asked_for_blocked(shape, fetch)


def raw_fetch(world: World, shape: str, port: int, request: Callable[[str], bytes]) -> Fetch:
    """`request(name)` sent in the raw `shape` (scapy: out of order or overlapping), the
    receiver's version naming `name` and the other UNLISTED. The control is an unlisted
    site that sits where the blocked one will (the same length)."""
    def fetch(name: str) -> tuple[bytes, list[dict]]:
        got = world.received("family", "raw", EVASION_ADDR, str(port), shape,
                             request(UNLISTED).hex(), request(name).hex())
        return got, world.asked()
    return fetch


# shape -> RAW_SHAPES: one request's bytes sent out of order or overlapping.
@pytest.mark.parametrize("shape", RAW_SHAPES)
def test_category_blocked_by_host_reassembled(world: World, shape: str) -> None:
    never_asked_for_blocked(shape, raw_fetch(world, shape, 80, get), "yyyyy.example",
                            answered=False)


# ---- category blocked by TLS SNI -------------------------------------------------------

# shape -> (ClientHello shape, port, how the name is written)
Spelling = Callable[[str], str]
SNI_SHAPES: dict[str, tuple[str, int, Spelling]] = {
    **{shape: (shape, 443, str) for shape in HELLO_SHAPES},
    "upper case": ("one segment", 443, str.upper),
    "trailing dot": ("one segment", 443, lambda n: n + "."),
    "port 8443": ("one segment", 8443, str),
    "port 8443, 1-byte segments": ("1-byte segments", 8443, str)}


@pytest.mark.parametrize("shape", SNI_SHAPES)
def test_category_blocked_by_sni(world: World, shape: str) -> None:
    hello_shape, port, spell = SNI_SHAPES[shape]

    def fetch(name: str) -> tuple[bytes, list[dict]]:
        got = world.received("family", "tls", EVASION_ADDR, str(port), hello_shape,
                             spell(name))
        return got, world.asked()
    never_asked_for_blocked(shape, fetch)


# shape -> RAW_SHAPES: one ClientHello's bytes sent out of order or overlapping. The far
# side logs the SNI of a hello it received whole; this client goes no further than it.
@pytest.mark.parametrize("shape", RAW_SHAPES)
def test_category_blocked_by_sni_reassembled(world: World, shape: str) -> None:
    never_asked_for_blocked(shape, raw_fetch(world, shape, 443, client_hello),
                            "yyyyy.example", answered=False)


# ---- category blocked by DNS -------------------------------------------------------------

# shape -> (client shape, names asked before the one that matters, how it is written)
DNS_SHAPES: dict[str, tuple[str, list[str], Spelling]] = {
    "udp": ("udp", [], str),
    "udp, upper case": ("udp", [], str.upper),
    "udp, 0x20 mixed case": ("udp", [], lambda n: "".join(
        c.upper() if i % 2 else c for i, c in enumerate(n))),
    "udp, subdomain": ("udp", [], lambda n: "www." + n),
    "tcp": ("tcp", [], str),
    "tcp, 1-byte segments": ("tcp, 1-byte segments", [], str),
    "tcp, second query on the connection": ("tcp", [ALLOWED], str),
}


@pytest.mark.parametrize("shape", DNS_SHAPES)
def test_category_blocked_by_dns(world: World, shape: str) -> None:
    client, before, spell = DNS_SHAPES[shape]

    def ask(name: str) -> list[str]:
        answers = world.run("family", "dns", PUBLIC_RESOLVER, client, *before, spell(name))
        return list(answers["answers"])
    # The guest is what receives the answer: the allowed name gets its real address ...
    assert ask(ALLOWED)[-1] == world.net.zone[spell(ALLOWED).lower()], shape
    # ... and the blocked one anything but its own (sys-sec's sinkhole, or nothing).
    real = world.net.zone[spell(BLOCKED).lower()]
    assert ask(BLOCKED)[-1] != real, f"{shape}: family got {BLOCKED}'s real address"


# ---- work only through the tunnel ------------------------------------------------------

# shape -> the client command line from a guest to the far side
WORK_SHAPES = {f"tcp {port}": ("http", EVASION_ADDR, str(port), "whole") for port in HTTP_PORTS}
WORK_SHAPES |= {f"tls {port}": ("tls", EVASION_ADDR, str(port), "one segment")
                for port in TLS_PORTS}
WORK_SHAPES["tcp 80, 1-byte segments"] = ("http", EVASION_ADDR, "80", "1-byte segments")


@pytest.mark.parametrize("shape", WORK_SHAPES)
def test_work_leaves_only_through_the_tunnel(world: World, shape: str) -> None:
    def probe(guest: str) -> tuple[bytes, list[dict]]:
        cmd = WORK_SHAPES[shape]
        name = f"{guest}.evasion.example"
        extra = [get(name).hex()] if cmd[0] == "http" else [name]
        return world.received(guest, *cmd, *extra), world.asked()
    # Positive controls: untrusted (internet) reaches the far side in this shape, and work
    # reaches the intranet through its tunnel.
    got, asked = probe("untrusted")
    assert asked_for(asked, "untrusted.evasion.example"), (shape, asked)
    intranet = world.received("work", "http", INTRANET, "80", "whole",
                              get("intranet.corp").hex())
    assert hello("intranet.corp") in intranet
    got, asked = probe("work")
    assert not asked, f"{shape}: work reached the internet outside its tunnel: {asked}"
    assert b"hello from" not in got


def test_work_dns_stays_in_the_tunnel(world: World) -> None:
    # The public resolver answers untrusted with the internet's address ...
    assert world.run("untrusted", "dns", PUBLIC_RESOLVER, "udp", ALLOWED)["answers"] == \
        [ZONE[ALLOWED]]
    # ... and never work, whose DNS has nowhere to go but the tunnel.
    for shape in ("udp", "tcp"):
        answers = world.run("work", "dns", PUBLIC_RESOLVER, shape, ALLOWED)["answers"]
        assert ZONE[ALLOWED] not in answers, (shape, answers)


def test_the_far_side_only_hears_what_it_is_sent(world: World) -> None:
    """The observer itself: the sentinel alone gives an empty log (no stray traffic
    counted as a leak or a pass), and a request is logged with its normalised host."""
    world.asked()
    assert world.asked() == []
    world.received("untrusted", "http", EVASION_ADDR, "80", "whole", get("X.Example.").hex())
    assert [a["host"] for a in world.asked()] == ["x.example"]
