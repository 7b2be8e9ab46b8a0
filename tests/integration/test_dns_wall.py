"""A filtered guest's DNS, on any port and protocol, is answered by sys-sec's resolver or
dropped (issue 12, item 5), through the real controller and inline engine: `family`
(filtered) and `other` (internet, the positive control) ask a real DNS server on the far
side for a blocked name over each shape. The server logs every query it receives; the
client says what it got back. DoH: a TCP/443 listener on a known resolver's address.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.syssec_lab import DNS_ASK, DNS_SERVER, GW, LISTEN, SysSec, sys_sec, zone_file

pytestmark = pytest.mark.root

GUESTS = {"family": (11, "filtered"), "other": (12, "internet")}
SERVER, DOH = "198.51.100.53", "198.51.100.43"
BLOCKED, REAL = "blocked.example", "198.51.100.66"
HIGH = 40053
# shape -> what the filtered guest gets back
SHAPES = {
    ("udp", 53): "0.0.0.0",        # redirected to sys-sec's resolver: the sinkhole
    ("tcp", 53): "0.0.0.0",
    ("udp", 5353): "TIMEOUT",      # the engine's DNS rule drops the query
    ("tcp", 5353): "TIMEOUT",
    ("udp", HIGH): "TIMEOUT",
    ("tcp", HIGH): "TIMEOUT",
    ("udp", 853): "TIMEOUT",       # DoQ / DoT: the firewall
    ("tcp", 853): "REFUSED",
}


@pytest.fixture
async def world(hw_xenstored: Daemon, tmp_path: Path) -> AsyncIterator[SysSec]:
    async with sys_sec(hw_xenstored, tmp_path, GUESTS, engine=True, far=(SERVER, DOH),
                       settings=f'doh_addresses = ["{DOH}"]\n',
                       lists={"adult": f"{BLOCKED}\n"}, prefix="hwdns") as w:
        yield w


async def test_dns_from_a_filtered_guest_on_any_port_gets_no_real_answer(
        world: SysSec, tmp_path: Path) -> None:
    w = world
    assert w.py("family", DNS_ASK, "udp", GW, "53", BLOCKED) == "0.0.0.0"
    zone = zone_file(tmp_path, {BLOCKED: REAL})
    server = w.listen("inet", DNS_SERVER, str(zone), SERVER, *sorted({str(p) for _, p in SHAPES}))
    try:
        for (proto, port), want in SHAPES.items():
            shape = f"{proto}/{port}"
            # Positive control: the same query from the internet guest reaches the server
            # and gets the real address.
            assert w.py("other", DNS_ASK, proto, SERVER, str(port), BLOCKED) == REAL, shape
            assert server.wait_for(lambda line, p=proto, n=port: line.startswith(
                f"dns {p} {n} {BLOCKED} ") and line.endswith(" 198.51.100.2"), 5), shape
            server.take()
            got = w.py("family", DNS_ASK, proto, SERVER, str(port), BLOCKED)
            assert got == want, (shape, got)
            # What the server received from the filtered guest (masqueraded as sys-sec):
            # the control query afterwards is logged; nothing before it.
            assert w.py("other", DNS_ASK, proto, SERVER, str(port), BLOCKED) == REAL, shape
            assert server.wait_for(lambda line: BLOCKED in line, 5), shape
            assert len(server.take()) == 1, f"{shape}: the filtered guest's query arrived"
    finally:
        server.stop()


async def test_doh_to_a_known_resolver_is_refused_for_the_filtered_guest_only(
        world: SysSec) -> None:
    doh = world.listen("inet", LISTEN, "tcp:443")
    try:
        assert world.probe("family", "tcp", DOH, "443") == "REFUSED"
        # The control afterwards: what the listener logged before it came from `family`.
        assert world.probe("other", "tcp", DOH, "443") == "OPEN"
        line = doh.wait_for(lambda line: line.startswith("tcp 443 "), 5)
        assert line is not None, "the control connection did not arrive"
        assert doh.take() == [line], "the filtered guest's connection arrived"
    finally:
        doh.stop()
