"""sys-sec's end of the work VPN: a WireGuard tunnel (wireguard-go: this kernel has no
WireGuard module), the only route to the corporate network.

Only `vpn-only` guests are forwarded into it (the firewall), and they are forwarded nowhere
else: when the tunnel is down their packets find no rule and are dropped (kill switch).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import Any

from domains.runner import run
from domains.syssec.wireguard import (
    Peer,
    WireGuardConfigError,
    WireGuardGo,
    check_key,
    config_text,
    latest_handshakes,
)

log = logging.getLogger("hyperwall.vpn")
IFACE = "wg0"
HANDSHAKE_MAX_AGE = 180.0


class VpnConfigError(ValueError):
    pass


@dataclass(frozen=True)
class VpnConfig:
    private_key: str
    peer_public_key: str
    endpoint: str            # host:port
    address: str             # the tunnel address of sys-sec, CIDR
    routes: tuple[str, ...]  # what lies behind the tunnel (the corporate ranges)
    keepalive: int = 5

    @classmethod
    def from_settings(cls, raw: dict[str, Any], where: str) -> VpnConfig:
        def need(key: str) -> Any:
            if key not in raw:
                raise VpnConfigError(f"{where}: [vpn] needs {key!r}")
            return raw[key]
        cfg = cls(need("private_key"), need("peer_public_key"), need("endpoint"),
                  need("address"), tuple(need("routes")), int(raw.get("keepalive", 5)))
        for key in ("private_key", "peer_public_key"):
            try:
                check_key(getattr(cfg, key), f"{where}: [vpn] {key}")
            except WireGuardConfigError as e:
                raise VpnConfigError(str(e)) from None
        try:
            ipaddress.ip_interface(cfg.address)
            for r in cfg.routes:
                ipaddress.ip_network(r)
        except ValueError as e:
            raise VpnConfigError(f"{where}: [vpn] {e}") from None
        host, _, port = cfg.endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise VpnConfigError(f"{where}: [vpn] endpoint {cfg.endpoint!r} is not host:port")
        return cfg


def handshake_fresh(handshakes: dict[str, int], peer: str, now: float,
                    max_age: float = HANDSHAKE_MAX_AGE) -> bool:
    """Whether `peer`'s last handshake (from `wg show ... latest-handshakes`) still keys
    the tunnel: WireGuard drops session keys REJECT_AFTER_TIME (180 s) after a handshake,
    and rekeys every 120 s while anything (a keepalive, say) flows."""
    when = handshakes.get(peer, 0)
    return when > 0 and now - when <= max_age


class Tunnel:
    """sys-sec's end of the tunnel. `netns` runs it inside that namespace (tests); sys-sec's
    agent, already inside its own, leaves it None."""

    def __init__(self, cfg: VpnConfig, netns: str | None = None, iface: str = IFACE) -> None:
        self.cfg = cfg
        self.netns = netns
        self.wg = WireGuardGo(iface, netns)

    @property
    def iface(self) -> str:
        return self.wg.iface

    async def up(self) -> None:
        """Start wireguard-go and configure the interface, its address and the routes to
        the corporate ranges. The keepalive starts the handshake at once (see `is_up`)."""
        await asyncio.to_thread(self.wg.start)
        try:
            conf = config_text(self.cfg.private_key, [Peer(
                self.cfg.peer_public_key, self.cfg.routes, self.cfg.endpoint,
                self.cfg.keepalive)])
            await run(["wg", "setconf", self.iface, "/dev/stdin"], input=conf.encode(),
                      netns=self.netns)
            await run(["ip", "-batch", "-"], netns=self.netns, input="".join(
                [f"addr add {self.cfg.address} dev {self.iface}\n",
                 f"link set {self.iface} up\n",
                 *(f"route replace {r} dev {self.iface}\n" for r in self.cfg.routes)]
            ).encode())
        except BaseException:
            await self.down()
            raise
        log.info("tunnel %s up towards %s (%s)", self.iface, self.cfg.endpoint,
                 ", ".join(self.cfg.routes))

    async def down(self) -> None:
        """Remove the interface (its routes go with it) and end wireguard-go."""
        await asyncio.to_thread(self.wg.stop)

    async def is_up(self) -> bool:
        """A recent handshake with the corporate server: keys are there, traffic can pass."""
        if not self.wg.running():
            return False
        done = await run(["wg", "show", self.iface, "latest-handshakes"], netns=self.netns,
                         check=False)
        if done.returncode != 0:
            return False
        return handshake_fresh(latest_handshakes(done.stdout.decode()),
                               self.cfg.peer_public_key, time.time())

    async def wait_up(self, timeout: float = 10.0, every: float = 0.05) -> None:
        """Return at the first handshake; TimeoutError naming the endpoint otherwise."""
        try:
            async with asyncio.timeout(timeout):
                # wg(8) has no way to wait for a handshake; ask on a short period.
                while not await self.is_up():
                    await asyncio.sleep(every)
        except TimeoutError:
            raise TimeoutError(f"{self.iface}: no handshake with {self.cfg.endpoint} "
                               f"after {timeout}s") from None
