"""sys-sec's end of the work VPN (root): wireguard-go in a namespace playing sys-sec, towards
the simulated corporate network's WireGuard server."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dom0.sim.guest_scripts import FETCH
from dom0.sim.net import INTRANET, PROBE_ADDRESS, PROBE_NAME, SimNet
from domains.syssec.vpn import Tunnel
from domains.syssec.wireguard import WireGuardError, WireGuardGo, socket_path
from tests.simworld import PROBE, py, tag, world

pytestmark = pytest.mark.root



@pytest.fixture(scope="module")
def net() -> Iterator[tuple[SimNet, str]]:
    with world(f"hwnet{tag()}v") as both:
        yield both


def wireguard_go_pids(iface: str) -> list[str]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"wireguard-go") and iface.encode() in argv:
            pids.append(proc.name)
    return pids


def intranet(sys_sec: str) -> str:
    return py(sys_sec, FETCH, INTRANET, "80", "intranet.corp")


async def test_the_intranet_is_reached_through_the_tunnel_only_while_it_is_up(
        net: tuple[SimNet, str]) -> None:
    world_, sys_sec = net
    assert intranet(sys_sec).startswith("FAILED")
    tunnel = Tunnel(world_.vpn_config(), netns=sys_sec, iface=f"hwnet{tag()}w")
    try:
        await tunnel.up()
        await tunnel.wait_up(timeout=10)
        assert await tunnel.is_up()
        assert intranet(sys_sec) == "hello from intranet.corp"
        # The corporate DNS answers through the tunnel, so the probe says "on the network".
        assert py(sys_sec, PROBE, PROBE_NAME, PROBE_ADDRESS, INTRANET) == "True"
    finally:
        await tunnel.down()
    assert not await tunnel.is_up()
    assert intranet(sys_sec).startswith("FAILED")
    assert py(sys_sec, PROBE, PROBE_NAME, PROBE_ADDRESS, INTRANET) == "False"
    assert not socket_path(tunnel.iface).exists()
    assert wireguard_go_pids(tunnel.iface) == []
    await tunnel.down()   # twice is fine


async def test_a_tunnel_that_cannot_start_cleans_up(net: tuple[SimNet, str]) -> None:
    world_, sys_sec = net
    iface = f"hwnet{tag()}u"
    # Another wireguard-go already owns the name (its socket is host-wide).
    other = WireGuardGo(iface)
    other.start()
    try:
        tunnel = Tunnel(world_.vpn_config(), netns=sys_sec, iface=iface)
        with pytest.raises(WireGuardError, match=f"{iface}: a wireguard-go already answers"):
            await tunnel.up()
        assert not await tunnel.is_up()
    finally:
        other.stop()
    assert wireguard_go_pids(iface) == [] and not socket_path(iface).exists()


async def test_a_server_that_does_not_answer_means_no_handshake(
        net: tuple[SimNet, str]) -> None:
    world_, sys_sec = net
    cfg = world_.vpn_config()
    # The right server address, a port nobody listens on.
    tunnel = Tunnel(replace(cfg, endpoint=cfg.endpoint.replace("51820", "51999")),
                    netns=sys_sec, iface=f"hwnet{tag()}n")
    try:
        await tunnel.up()
        with pytest.raises(TimeoutError, match="no handshake with .*:51999"):
            await tunnel.wait_up(timeout=1)
    finally:
        await tunnel.down()
