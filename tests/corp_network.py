"""Is this machine on the corporate network? A configured check, asked again and again.

Two kinds of check, as a TOML table (a domain's autostart, say) gives them:

    { kind = "dns", name = "probe.corp", address = "10.200.0.1", resolver = "10.200.0.10" }
        the name resolves to that address through that resolver ("host" or "host:port";
        only the corporate network's DNS knows the name)
    { kind = "tcp", connect = "10.200.0.10:80" }
        a TCP connection to that address is accepted

The decision is sans-IO: `decide(check, observed)` and `Watch.observe`, which reports a
change (the first answer counts as one). `on_corporate_network` asks once;
`NetProbe.run` asks every `interval` seconds and awaits `on_change(bool)` at each change,
so its caller (dom0) can start `work` when it turns True. The check runs in the network
namespace of the process that runs it.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from domains.syssec.uplink_check import resolve
from netsec.app.dns import encode_name

log = logging.getLogger("hyperwall.netprobe")
TIMEOUT = 2.0
INTERVAL = 5.0


class ProbeConfigError(ValueError):
    """A check that cannot be run; says where and which key."""


@dataclass(frozen=True)
class DnsCheck:
    name: str
    address: str
    resolver: str
    port: int = 53


@dataclass(frozen=True)
class TcpCheck:
    host: str
    port: int


Check = DnsCheck | TcpCheck
KEYS = {"dns": {"kind", "name", "address", "resolver"}, "tcp": {"kind", "connect"}}


def _ipv4(value: Any, where: str, key: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ProbeConfigError(f"{where}: {key} {value!r} is not an IPv4 address") from None


def _host_port(value: Any, where: str, key: str, default: int | None) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ProbeConfigError(f"{where}: {key} must be a string, not {value!r}")
    host, colon, port = value.rpartition(":")
    if not colon:
        if default is None:
            raise ProbeConfigError(f"{where}: {key} {value!r} is not address:port")
        host, port = value, str(default)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ProbeConfigError(f"{where}: {key} {value!r} has no valid port")
    return _ipv4(host, where, key), int(port)


def parse(raw: Mapping[str, Any], where: str) -> Check:
    """A check from its table; `where` names the table in errors (file and key)."""
    kind = raw.get("kind")
    if kind not in KEYS:
        raise ProbeConfigError(f"{where}: kind must be one of {', '.join(sorted(KEYS))}, "
                               f"not {kind!r}")
    unknown = set(raw) - KEYS[kind]
    if unknown:
        raise ProbeConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                               f"for a {kind} check")
    missing = KEYS[kind] - set(raw)
    if missing:
        raise ProbeConfigError(f"{where}: a {kind} check needs {', '.join(sorted(missing))}")
    if kind == "tcp":
        return TcpCheck(*_host_port(raw["connect"], where, "connect", None))
    name = raw["name"]
    try:
        encode_name(name)   # the codec that will ask it refuses what is not a DNS name
    except (ValueError, AttributeError):
        raise ProbeConfigError(f"{where}: name {name!r} is not a DNS name") from None
    resolver, port = _host_port(raw["resolver"], where, "resolver", 53)
    return DnsCheck(name.rstrip(".").lower(), _ipv4(raw["address"], where, "address"),
                    resolver, port)


def decide(check: Check, observed: str | bool | None) -> bool:
    """What one observation means: the address the name resolved to (None: it did not),
    or whether the TCP connection was accepted."""
    if isinstance(check, DnsCheck):
        return observed == check.address
    return observed is True


class Watch:
    """Turns a stream of answers into changes: the first answer, then each flip."""

    def __init__(self) -> None:
        self.state: bool | None = None

    def observe(self, now: bool) -> bool | None:
        """The new state if it changed, else None."""
        if now == self.state:
            return None
        self.state = now
        return now


async def _observe(check: Check, timeout: float) -> str | bool | None:
    if isinstance(check, DnsCheck):
        return await resolve(check.name, check.resolver, timeout, check.port)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(check.host, check.port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass   # accepted is all we asked
    return True


async def on_corporate_network(check: Check, timeout: float = TIMEOUT) -> bool:
    return decide(check, await _observe(check, timeout))


class NetProbe:
    """Asks `check` every `interval` seconds; awaits `on_change(state)` at each change."""

    def __init__(self, check: Check, on_change: Callable[[bool], Awaitable[None]],
                 interval: float = INTERVAL, timeout: float = TIMEOUT) -> None:
        if interval <= 0 or timeout <= 0:
            raise ProbeConfigError(f"interval ({interval}) and timeout ({timeout}) must be "
                                   "positive")
        self.check, self.on_change = check, on_change
        self.interval, self.timeout = interval, timeout
        self.watch = Watch()

    async def run(self) -> None:
        """Until cancelled. A callback that raises is logged; the probe carries on."""
        while True:
            changed = self.watch.observe(await on_corporate_network(self.check, self.timeout))
            if changed is not None:
                log.info("corporate network %s (%s)", "reached" if changed else "left",
                         self.check)
                try:
                    await self.on_change(changed)
                except Exception:
                    log.exception("the corporate-network callback failed")
            await asyncio.sleep(self.interval)
