"""sys-sec's end of the work VPN: a WireGuard tunnel (wireguard-go: this kernel has no
WireGuard module), the only route to the corporate network.

Only `vpn-only` guests are forwarded into it (the firewall), and they are forwarded nowhere
else: when the tunnel is down their packets find no rule and are dropped (kill switch).
"""
from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dom0.runner import run

log = logging.getLogger("hyperwall.vpn")
IFACE = "wg0"


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
                if len(base64.b64decode(getattr(cfg, key), validate=True)) != 32:
                    raise ValueError
            except ValueError:
                raise VpnConfigError(f"{where}: [vpn] {key} is not a WireGuard key") from None
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


class Tunnel:
    def __init__(self, cfg: VpnConfig) -> None:
        self.cfg = cfg
        self.proc: asyncio.subprocess.Process | None = None

    async def up(self) -> None:
        """Start wireguard-go and configure the interface; the handshake follows traffic."""
        self.proc = await asyncio.create_subprocess_exec(
            "wireguard-go", "-f", IFACE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        sock = Path("/var/run/wireguard") / f"{IFACE}.sock"
        async with asyncio.timeout(10):
            while not sock.exists():   # wireguard-go signals readiness only by its socket
                if self.proc.returncode is not None:
                    raise OSError(f"wireguard-go exited with {self.proc.returncode}")
                await asyncio.sleep(0.01)
        with tempfile.NamedTemporaryFile("w", suffix=".key") as key:
            key.write(self.cfg.private_key + "\n")
            key.flush()
            await run(["wg", "set", IFACE, "private-key", key.name, "peer",
                       self.cfg.peer_public_key, "endpoint", self.cfg.endpoint,
                       "allowed-ips", ",".join(self.cfg.routes),
                       "persistent-keepalive", str(self.cfg.keepalive)])
        await run(["ip", "-batch", "-"], input="".join(
            [f"addr add {self.cfg.address} dev {IFACE}\n", f"link set {IFACE} up\n",
             *(f"route replace {r} dev {IFACE}\n" for r in self.cfg.routes)]).encode())
        log.info("tunnel %s up towards %s (%s)", IFACE, self.cfg.endpoint,
                 ", ".join(self.cfg.routes))

    async def down(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        self.proc = None
