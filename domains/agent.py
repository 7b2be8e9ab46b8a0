"""The in-domain agent: one program in every domain, sys-sec's included.

It connects to xenstore as its domain (the only socket it can see), then:
- in a guest, runs the frontend side of each vif's handshake and, once Connected,
  configures `eth<n>` from the backend's keys (a routed /32 with sys-sec as gateway);
- in sys-sec, runs the backend side for every guest's vif and routes to it;
- obeys `control/shutdown` (poweroff, reboot, halt): acknowledges by clearing the key,
  closes its devices, and exits 0 so that its init ends the domain;
- reports health under `data/hyperwall/`.
Keys written by other domains are untrusted: states go through `parse_state`, addresses
through `ipaddress`, interface names are built here, never taken from a key.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from typing import Protocol

from dom0.xenbus import Action, Handshake, HandshakeError, Role, Step, XenbusState, parse_state

log = logging.getLogger("hyperwall.agent")
HEARTBEAT = 10.0


class AgentStore(Protocol):
    async def read(self, path: str) -> bytes | None: ...
    async def write(self, path: str, value: str) -> None: ...
    async def ls(self, path: str) -> list[str]: ...
    def watch(self, path: str) -> AsyncIterator[str]: ...


class Net(Protocol):
    """The data-plane commands, so the agent's logic can run against a recorder in tests."""

    async def frontend_up(self, devid: int, ip: str, gateway: str, mac: str) -> None: ...
    async def frontend_down(self, devid: int) -> None: ...
    async def backend_up(self, domid: int, devid: int, ip: str, gateway: str) -> None: ...
    async def backend_down(self, domid: int, devid: int) -> None: ...
    async def enable_forwarding(self) -> None: ...


class ShutdownRequested(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _ids(key: str) -> tuple[int, ...]:
    return tuple(int(part) for part in key.split("/"))


MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def _mac(untrusted: bytes | None, what: str) -> str:
    text = (untrusted or b"").decode("ascii", "replace").lower()
    if not MAC.fullmatch(text) or int(text[:2], 16) & 1:
        raise HandshakeError(f"{what} is not a unicast MAC address: {untrusted!r}")
    return text


def _address(untrusted: bytes | None, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address((untrusted or b"").decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        raise HandshakeError(f"{what} is not an IPv4 address: {untrusted!r}") from None


class Agent:
    def __init__(self, store: AgentStore, net: Net) -> None:
        self.store = store
        self.net = net
        self.devices: dict[str, asyncio.Task[None]] = {}
        self.handshakes: dict[str, tuple[Handshake, str]] = {}   # own state path -> (hs, peer)

    async def run(self) -> str:
        """Serve until a shutdown is requested; returns its reason."""
        kind = (await self.store.read("hyperwall/kind") or b"").decode("ascii", "replace")
        role = Role.BACKEND if kind == "sys-sec" else Role.FRONTEND
        await self.store.write("data/hyperwall/agent", "starting")
        if role is Role.BACKEND:
            await self.net.enable_forwarding()
        watcher = self._watch_backends() if role is Role.BACKEND else self._watch_frontends()
        tasks = [asyncio.ensure_future(watcher), asyncio.ensure_future(self._heartbeat())]
        try:
            await self._wait_for_shutdown()
        except ShutdownRequested as req:
            await self.store.write("control/shutdown", "")
            for task in tasks + list(self.devices.values()):
                task.cancel()
            await self._close_devices()
            await self.store.write("data/hyperwall/agent", f"stopped ({req.reason})")
            return req.reason
        finally:
            for task in tasks:
                task.cancel()
        return "unreachable"

    async def _wait_for_shutdown(self) -> None:
        async for _ in self.store.watch("control/shutdown"):
            value = (await self.store.read("control/shutdown") or b"").decode("ascii", "replace")
            if value in ("poweroff", "reboot", "halt"):
                raise ShutdownRequested(value)
            if value:
                log.warning("ignoring unknown control/shutdown request %r", value)

    async def _heartbeat(self) -> None:
        while True:
            await self.store.write("data/hyperwall/agent", "ok")
            await self.store.write("data/hyperwall/heartbeat", f"{time.time():.0f}")
            await asyncio.sleep(HEARTBEAT)

    # -- frontend (guests) -----------------------------------------------------------------

    async def _watch_frontends(self) -> None:
        async for _ in self.store.watch("device/vif"):
            present = {devid: (int(devid),) for devid in await self.store.ls("device/vif")
                       if devid.isdigit()}
            await self._reconcile(present, self._frontend,
                                  lambda devid: self.net.frontend_down(devid))

    async def _frontend(self, devid: int) -> None:
        own = f"device/vif/{devid}"
        be = (await self.store.read(f"{own}/backend") or b"").decode("ascii", "replace")
        if not be.startswith("/local/domain/"):
            log.error("vif %d: backend path %r is not a domain path", devid, be)
            return

        async def act(action: Action) -> None:
            if action is Action.CONNECT:
                ip = _address(await self.store.read(f"{be}/ip"), f"{be}/ip")
                gw = _address(await self.store.read(f"{be}/hyperwall/gateway"),
                              f"{be}/hyperwall/gateway")
                mac = _mac(await self.store.read(f"{own}/mac"), f"{own}/mac")
                await self.net.frontend_up(devid, ip, gw, mac)
            else:
                await self.net.frontend_down(devid)

        await self._drive(Role.FRONTEND, f"{own}/state", f"{be}/state", act)

    # -- backend (sys-sec) -----------------------------------------------------------------

    async def _watch_backends(self) -> None:
        async for _ in self.store.watch("backend/vif"):
            present: dict[str, tuple[int, ...]] = {}
            for domid in await self.store.ls("backend/vif"):
                if domid.isdigit():
                    for devid in await self.store.ls(f"backend/vif/{domid}"):
                        if devid.isdigit():
                            present[f"{domid}/{devid}"] = (int(domid), int(devid))
            await self._reconcile(present, self._backend,
                                  lambda domid, devid: self.net.backend_down(domid, devid))

    async def _reconcile(self, present: dict[str, tuple[int, ...]], serve, down) -> None:  # type: ignore[no-untyped-def]
        """One task per device directory that exists. A directory dom0 removed without the
        closing handshake (the other end was destroyed) loses its task and its data plane,
        so a later device at the same path (a domid used again) starts afresh."""
        for key, task in list(self.devices.items()):
            if key not in present:
                task.cancel()
                del self.devices[key]
                self.handshakes = {own: hs for own, hs in self.handshakes.items()
                                   if not own.endswith(f"vif/{key}/state")}
                with contextlib.suppress(Exception):
                    await down(*_ids(key))
        for key, ids in present.items():
            if key not in self.devices:
                self.devices[key] = asyncio.ensure_future(serve(*ids))

    async def _backend(self, domid: int, devid: int) -> None:
        own = f"backend/vif/{domid}/{devid}"
        fe = (await self.store.read(f"{own}/frontend") or b"").decode("ascii", "replace")
        if fe != f"/local/domain/{domid}/device/vif/{devid}":
            log.error("vif %d.%d: frontend path %r does not match the device", domid, devid, fe)
            return
        for feature in ("feature-rx-copy", "feature-sg"):
            await self.store.write(f"{own}/{feature}", "1")

        async def act(action: Action) -> None:
            if action is Action.CONNECT:
                ip = _address(await self.store.read(f"{own}/ip"), f"{own}/ip")
                gw = _address(await self.store.read(f"{own}/hyperwall/gateway"),
                              f"{own}/hyperwall/gateway")
                await self.net.backend_up(domid, devid, ip, gw)
            else:
                await self.net.backend_down(domid, devid)

        await self._drive(Role.BACKEND, f"{own}/state", f"{fe}/state", act)

    # -- the handshake loop shared by both sides --------------------------------------------

    async def _drive(self, role: Role, own_state: str, peer_state: str, act) -> None:  # type: ignore[no-untyped-def]
        hs = Handshake(role)
        self.handshakes[own_state] = (hs, peer_state)
        await self._apply(own_state, hs.start(), act)
        async for _ in self.store.watch(peer_state):
            try:
                peer = parse_state(await self.store.read(peer_state))
                await self._apply(own_state, hs.peer_changed(peer), act)
            except HandshakeError as e:
                log.warning("%s: %s", peer_state, e)
                continue
            if hs.state is XenbusState.CLOSED and peer in (XenbusState.CLOSED,
                                                          XenbusState.UNKNOWN):
                return

    async def _apply(self, own_state: str, step: Step, act) -> None:  # type: ignore[no-untyped-def]
        # The data plane first: Connected must mean packets can flow.
        if step.action is not None:
            await act(step.action)
        if step.publish is not None:
            await self.store.write(own_state, str(int(step.publish)))

    async def _close_devices(self) -> None:
        for own_state, (hs, _) in self.handshakes.items():
            step = hs.close()
            if step.publish is not None:
                with contextlib.suppress(Exception):
                    await self.store.write(own_state, str(int(XenbusState.CLOSED)))


class IpNet:
    """The data plane with iproute2, inside the domain's own network namespace. Each step is
    one `ip -batch` process: a vif comes up with one fork, not four."""

    async def _ip(self, *commands: str, check: bool = True) -> None:
        from dom0.runner import run
        await run(["ip", "-force", "-batch", "-"], input="".join(
            c + "\n" for c in commands).encode(), check=check)

    async def frontend_up(self, devid: int, ip: str, gateway: str, mac: str) -> None:
        dev = f"eth{devid}"
        if devid == 0:
            # sys-sec's resolver is the domain's resolver (filtered guests get no other).
            with open("/etc/resolv.conf", "w") as f:
                f.write(f"nameserver {gateway}\n")
        # The address dom0 gave the vif (xenstore's `mac`), as netfront takes it.
        await self._ip(f"link set {dev} address {mac}", f"addr replace {ip}/32 dev {dev}",
                       f"link set {dev} up",
                       f"route replace {gateway} dev {dev} scope link",
                       *([f"route replace default via {gateway} dev {dev}"] if devid == 0
                         else []))

    async def frontend_down(self, devid: int) -> None:
        await self._ip(f"link set eth{devid} down", check=False)

    async def backend_up(self, domid: int, devid: int, ip: str, gateway: str) -> None:
        dev = f"vif{domid}.{devid}"
        await self._ip(f"addr replace {gateway}/32 dev {dev}", f"link set {dev} up",
                       f"route replace {ip}/32 dev {dev}")

    async def backend_down(self, domid: int, devid: int) -> None:
        await self._ip(f"link set vif{domid}.{devid} down", check=False)

    async def enable_forwarding(self) -> None:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1\n")


SECURITY_SERVICES = [sys.executable, "-S", "-m", "netsec.syssec",
                     "--state-dir", "/var/lib/hyperwall"]


async def keep_running(argv: list[str]) -> None:
    """sys-sec's security services: restarted when they die (fail closed meanwhile)."""
    while True:
        proc = await asyncio.create_subprocess_exec(*argv)
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            proc.terminate()
            await proc.wait()
            raise
        log.error("%s exited with %s; restarting", argv[3], code)
        await asyncio.sleep(0.5)


async def amain() -> int:
    from dom0.xenstore.client import connect_agent_store  # the one client layer
    store = await connect_agent_store()
    services = None
    if await store.read("hyperwall/kind") == b"sys-sec" and \
            os.environ.get("HYPERWALL_SECURITY", "1") != "0":
        services = asyncio.ensure_future(keep_running(SECURITY_SERVICES))
    try:
        reason = await Agent(store, IpNet()).run()
    finally:
        if services is not None:
            services.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await services
    log.info("shutting down: %s", reason)
    return 0


def main() -> None:
    from dom0.logsetup import setup_logging
    setup_logging(f"agent[{os.environ.get('HYPERWALL_NAME', '?')}]")
    sys.exit(asyncio.run(amain()))


if __name__ == "__main__":
    main()
