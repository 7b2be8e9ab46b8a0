"""The corporate-network probe: its config errors, its decision, and its asyncio shell against
real DNS and TCP servers on loopback (no root)."""
from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from dom0.sim.servers import answer
from tests.corp_network import (
    DnsCheck,
    NetProbe,
    ProbeConfigError,
    TcpCheck,
    Watch,
    decide,
    on_corporate_network,
    parse,
)

WHERE = "work.toml: autostart.probe"


def test_both_kinds_parse() -> None:
    assert parse({"kind": "dns", "name": "Probe.Corp.", "address": "10.200.0.1",
                  "resolver": "10.200.0.10"}, WHERE) == \
        DnsCheck("probe.corp", "10.200.0.1", "10.200.0.10", 53)
    assert parse({"kind": "dns", "name": "probe.corp", "address": "10.200.0.1",
                  "resolver": "127.0.0.1:5353"}, WHERE).port == 5353
    assert parse({"kind": "tcp", "connect": "10.200.0.10:80"}, WHERE) == \
        TcpCheck("10.200.0.10", 80)


@pytest.mark.parametrize(("raw", "says"), [
    ({"name": "probe.corp"}, "kind must be one of dns, tcp, not None"),
    ({"kind": "ping", "host": "x"}, "not 'ping'"),
    ({"kind": "tcp", "connect": "10.200.0.10"}, "connect '10.200.0.10' is not address:port"),
    ({"kind": "tcp", "connect": "10.200.0.10:99999"}, "has no valid port"),
    ({"kind": "tcp", "connect": "intranet.corp:80"}, "'intranet.corp' is not an IPv4"),
    ({"kind": "tcp", "connect": 80}, "connect must be a string"),
    ({"kind": "tcp", "connect": "10.0.0.1:1", "name": "x"}, "unknown key(s) name for a tcp"),
    ({"kind": "dns", "name": "probe.corp", "address": "10.200.0.1"}, "needs resolver"),
    ({"kind": "dns", "name": "a..b", "address": "10.200.0.1", "resolver": "10.0.0.1"},
     "name 'a..b' is not a DNS name"),
    ({"kind": "dns", "name": "probe.corp", "address": "10.200.0.999",
      "resolver": "10.0.0.1"}, "address '10.200.0.999' is not an IPv4 address"),
])
def test_bad_config_is_refused_naming_where_and_what(raw: dict, says: str) -> None:
    with pytest.raises(ProbeConfigError) as e:
        parse(raw, WHERE)
    assert str(e.value).startswith(WHERE + ": ")
    assert says in str(e.value)


def test_decision_and_changes() -> None:
    dns = DnsCheck("probe.corp", "10.200.0.1", "10.200.0.10")
    assert decide(dns, "10.200.0.1")
    assert not decide(dns, "10.200.0.2") and not decide(dns, None)
    tcp = TcpCheck("10.200.0.10", 80)
    assert decide(tcp, True) and not decide(tcp, False)
    watch = Watch()
    assert [watch.observe(x) for x in (False, False, True, True, False)] == \
        [False, None, True, None, False]


class Zone(asyncio.DatagramProtocol):
    """An authoritative DNS server on loopback whose zone the test changes."""

    def __init__(self) -> None:
        self.zone: dict[str, str] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = answer(self.zone, data)
        if reply is not None:
            self.transport.sendto(reply, addr)  # type: ignore[attr-defined]


@pytest.fixture
async def dns() -> AsyncIterator[tuple[Zone, int]]:
    transport, zone = await asyncio.get_running_loop().create_datagram_endpoint(
        Zone, local_addr=("127.0.0.1", 0))
    try:
        yield zone, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


async def test_the_probe_flips_when_the_corporate_name_resolves(
        dns: tuple[Zone, int]) -> None:
    zone, port = dns
    check = parse({"kind": "dns", "name": "probe.corp", "address": "10.200.0.1",
                   "resolver": f"127.0.0.1:{port}"}, WHERE)
    assert not await on_corporate_network(check)
    zone.zone["probe.corp"] = "10.200.0.99"     # answers, but not what the check expects
    assert not await on_corporate_network(check)
    changes: asyncio.Queue[bool] = asyncio.Queue()

    async def on_change(state: bool) -> None:
        await changes.put(state)

    task = asyncio.create_task(NetProbe(check, on_change, interval=0.02, timeout=1).run())
    try:
        assert await asyncio.wait_for(changes.get(), 5) is False
        zone.zone["probe.corp"] = "10.200.0.1"
        assert await asyncio.wait_for(changes.get(), 5) is True
        del zone.zone["probe.corp"]
        assert await asyncio.wait_for(changes.get(), 5) is False
        assert changes.empty()   # one call per change, not one per answer
    finally:
        task.cancel()


async def test_a_dns_probe_with_nobody_answering_is_off_the_network() -> None:
    # A bound UDP socket that never answers: the probe must give up within its timeout.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        check = DnsCheck("probe.corp", "10.200.0.1", "127.0.0.1", silent.getsockname()[1])
        assert not await on_corporate_network(check, timeout=0.2)


async def test_a_tcp_probe_follows_the_listener() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    check = TcpCheck("127.0.0.1", port)
    assert await on_corporate_network(check)
    server.close()
    await server.wait_closed()
    assert not await on_corporate_network(check)


async def test_a_failing_callback_does_not_stop_the_probe(dns: tuple[Zone, int]) -> None:
    zone, port = dns
    check = DnsCheck("probe.corp", "10.200.0.1", "127.0.0.1", port)
    seen: asyncio.Queue[bool] = asyncio.Queue()

    async def on_change(state: bool) -> None:
        await seen.put(state)
        raise RuntimeError("dom0 could not start work")

    task = asyncio.create_task(NetProbe(check, on_change, interval=0.02, timeout=1).run())
    try:
        assert await asyncio.wait_for(seen.get(), 5) is False
        zone.zone["probe.corp"] = "10.200.0.1"
        assert await asyncio.wait_for(seen.get(), 5) is True
    finally:
        task.cancel()


def test_interval_must_be_positive() -> None:
    async def nothing(_: bool) -> None:
        pass
    with pytest.raises(ProbeConfigError, match="interval"):
        NetProbe(TcpCheck("127.0.0.1", 1), nothing, interval=0)
