"""The in-domain agent: one program in every domain, sys-sec's included.

It connects to xenstore as its domain (the only socket it can see), then:
- in a guest, runs the frontend side of each vif's handshake and, once Connected,
  configures `eth<n>` from the backend's keys (a routed /32 with sys-sec as gateway);
- in sys-sec, runs the backend side for every guest's vif and routes to it;
- obeys `control/shutdown` (poweroff, reboot, halt): acknowledges by clearing the key,
  closes its devices, and exits 0 so that its init ends the domain;
- reports health under `data/hyperwall/`.

On Xen (the agent reached xenstore through the xenbus device) the kernel's netfront and
netback walk the XenbusState machine themselves, so the agent does only what a toolstack's
hotplug does: in sys-sec, once netback has made `vif<domid>.<n>` (backend InitWait), it
addresses and routes it and writes `hotplug-status = connected`, which netback waits for
before it says Connected; when libxl takes a device away (Closed, `online` 0) it takes the
link down and removes the backend directory, as `xl devd` does in a driver domain. In a
guest it waits for netfront's Connected and configures the interface netfront made (found
by its MAC). sys-sec's own uplink is such a frontend too, from dom0, named `uplink<n>`.
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
import signal
import sys
import time
from collections.abc import AsyncGenerator, Callable
from typing import Protocol

from dom0.xenstore.client import XsError
from dom0.xenstore.xenbus import (
    Action,
    Handshake,
    HandshakeError,
    Role,
    Step,
    XenbusState,
    parse_state,
)
from domains.exec_service import serve_exec
from domains.restart import Backoff
from domains.runner import CommandError, run

log = logging.getLogger("hyperwall.agent")
HEARTBEAT = 10.0
NETDEV_WAIT = 10.0   # seconds a Xen driver's interface may take to appear
KEYS_WAIT = 60.0     # seconds dom0's keys of a device may follow libxl's
READ_TRIES = 3
CLOSE_WAIT = 5.0     # seconds a side that closes waits for the other to follow to Closing


class AgentStore(Protocol):
    async def read(self, path: str) -> bytes | None: ...
    async def write(self, path: str, value: str) -> None: ...
    async def write_if_exists(self, parent: str, path: str, value: str) -> bool: ...
    async def ls(self, path: str) -> list[str]: ...
    async def rm(self, path: str) -> None: ...
    def watch(self, path: str) -> AsyncGenerator[str, None]: ...


class Net(Protocol):
    """The data-plane commands, so the agent's logic can run against a recorder in tests."""

    async def frontend_up(self, devid: int, ip: str, gateway: str, mac: str) -> None: ...
    async def frontend_down(self, devid: int) -> None: ...
    async def backend_up(self, domid: int, devid: int, ip: str, gateway: str) -> None: ...
    async def backend_down(self, domid: int, devid: int) -> None: ...
    async def enable_forwarding(self) -> None: ...


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


def _device_key(event: str, root: str, depth: int) -> str | None:
    """The device directory (`root`, then `depth` ids) an event's path lies inside, or None
    for an event on a device directory or above it (one made or removed). An event inside a
    device already served changes nothing about which devices exist: with many devices
    coming up at once, rescanning them all on each of their keys' events was most of the
    agent's xenstore traffic (Linux's xenbus_dev_changed looks at the one device too)."""
    _, found, rest = event.partition(root + "/")
    ids = rest.split("/") if found else []
    return f"{root}/{'/'.join(ids[:depth])}" if len(ids) > depth else None


class AgentFailed(Exception):
    """Something the agent needs ended; init restarts it."""


class Agent:
    def __init__(self, store: AgentStore, net: Net, *, kernel_drivers: bool = False) -> None:
        self.store = store
        self.net = net
        # True on Xen: netfront/netback own the handshake; the agent does the hotplug part.
        self.kernel_drivers = kernel_drivers
        self._stopped = asyncio.Event()
        self._stop_reason = ""
        # Own device directory -> (ids, task serving it); one table per watcher, so each
        # reconciles only the devices it serves (sys-sec has frontends and backends).
        self.frontends: dict[str, tuple[tuple[int, ...], asyncio.Task[None]]] = {}
        self.backends: dict[str, tuple[tuple[int, ...], asyncio.Task[None]]] = {}
        self.handshakes: dict[str, tuple[Handshake, str]] = {}   # own state path -> (hs, peer)

    async def run(self) -> str:
        """Serve until a shutdown is requested; returns its reason."""
        kind = (await self.store.read("hyperwall/kind") or b"").decode("ascii", "replace")
        role = Role.BACKEND if kind == "sys-sec" else Role.FRONTEND
        await self.store.write("data/hyperwall/agent", "starting")
        watchers = [self._watch_frontends()]
        if role is Role.BACKEND:
            await self.net.enable_forwarding()
            watchers.append(self._watch_backends())
        tasks = [*map(asyncio.ensure_future, watchers), asyncio.ensure_future(self._heartbeat()),
                 asyncio.ensure_future(serve_exec(self.store))]
        asked = asyncio.ensure_future(self._wait_for_shutdown())
        stopped = asyncio.ensure_future(self._stopped.wait())
        log.info("serving %s's devices", role.name.lower())
        try:
            await asyncio.wait({asked, stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            ended = [t for t in tasks if t.done()]
            if ended and not (asked.done() or stopped.done()):
                # A watcher that ended serves nothing from then on, and nothing would say
                # so: the agent ends with it, and init starts a fresh one.
                error = ended[0].exception() if not ended[0].cancelled() else None
                raise AgentFailed(f"a watcher ended: {error!r}") from error
            if asked.done():
                reason = asked.result()
                await self.store.write("control/shutdown", "")
            else:
                reason = self._stop_reason
            for task in tasks + [t for table in (self.frontends, self.backends)
                                 for _, t in table.values()]:
                task.cancel()
            await self._close_devices()
            await self.store.write("data/hyperwall/agent", f"stopped ({reason})")
            return reason
        finally:
            for future in (*tasks, asked, stopped):
                future.cancel()

    def stop(self, reason: str) -> None:
        """Stop as a shutdown request would (init's SIGTERM: a VM's kernel took the request
        itself, or the backend is stopping the domain)."""
        self._stop_reason = reason
        self._stopped.set()

    async def _wait_for_shutdown(self) -> str:
        async for _ in self.store.watch("control/shutdown"):
            value = (await self.store.read("control/shutdown") or b"").decode("ascii", "replace")
            if value in ("poweroff", "reboot", "halt"):
                return value
            if value:
                log.warning("ignoring unknown control/shutdown request %r", value)
        raise XsError("EIO", "control/shutdown", "the watch ended")

    async def _heartbeat(self) -> None:
        while True:
            await self.store.write("data/hyperwall/agent", "ok")
            await self.store.write("data/hyperwall/heartbeat", f"{time.time():.0f}")
            await asyncio.sleep(HEARTBEAT)

    # -- frontend (guests) -----------------------------------------------------------------

    async def _watch_frontends(self) -> None:
        async for event in self.store.watch("device/vif"):
            if _device_key(event, "device/vif", 1) in self.frontends:
                continue
            present: dict[str, tuple[int, ...]] = {
                f"device/vif/{devid}": (int(devid),)
                for devid in await self.store.ls("device/vif") if devid.isdigit()}
            await self._reconcile(self.frontends, present, self._frontend,
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
                gateway = f"{be}/hyperwall/gateway"
                # On Xen libxl writes the device and netfront connects it before dom0
                # writes its own keys: those are waited for.
                gw = _address(await self._written(gateway) if self.kernel_drivers
                              else await self.store.read(gateway), gateway)
                mac = _mac(await self.store.read(f"{own}/mac"), f"{own}/mac")
                await self.net.frontend_up(devid, ip, gw, mac)
                log.info("vif %d up: %s via %s", devid, ip, gw)
                # Where netfront says Connected before the address is in place, this is
                # what says packets can flow.
                await self.store.write(f"data/hyperwall/vif/{devid}", f"up {ip}")
            else:
                await self.net.frontend_down(devid)
                await self.store.write(f"data/hyperwall/vif/{devid}", "down")

        log.info("vif %d: backend %s", devid, be)
        if self.kernel_drivers:
            await self._follow_kernel(f"{own}/state", act)
        else:
            await self._drive(Role.FRONTEND, f"{own}/state", f"{be}/state", act)

    async def _read_all(self, *paths: str) -> list[bytes | None]:
        """Reads, tried again after an error: over a Xen guest's xenbus device a read was seen
        to fail once with EINVAL while several devices came up, and a device task ended by
        it leaves its device unplugged for good."""
        for attempt in range(READ_TRIES):
            try:
                return [await self.store.read(path) for path in paths]
            except XsError as e:
                if attempt == READ_TRIES - 1:
                    raise
                log.warning("%s; reading again", e)
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def _written(self, path: str, timeout: float = KEYS_WAIT) -> bytes | None:
        """The value of `path` once it is written (None if it is not within `timeout`)."""
        async def first() -> bytes | None:
            async with contextlib.aclosing(self.store.watch(path)) as events:
                async for _ in events:    # a new watch fires once at once
                    value = await self.store.read(path)
                    if value is not None:
                        return value
            return None
        try:
            return await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            return None

    async def _follow_kernel(self, state_path: str, act) -> None:  # type: ignore[no-untyped-def]
        """netfront's own state: its link is configured once it says Connected."""
        up = False
        async for _ in self.store.watch(state_path):
            try:
                state = parse_state((await self._read_all(state_path))[0])
            except HandshakeError as e:
                log.warning("%s: %s", state_path, e)
                continue
            try:
                if state is XenbusState.CONNECTED and not up:
                    await act(Action.CONNECT)
                    up = True
                elif state in (XenbusState.CLOSING, XenbusState.CLOSED) and up:
                    await act(Action.DISCONNECT)
                    up = False
            except (HandshakeError, CommandError) as e:
                log.error("%s: %s", state_path, e)

    # -- backend (sys-sec) -----------------------------------------------------------------

    async def _watch_backends(self) -> None:
        async for event in self.store.watch("backend/vif"):
            if _device_key(event, "backend/vif", 2) in self.backends:
                continue
            present: dict[str, tuple[int, ...]] = {}
            for domid in await self.store.ls("backend/vif"):
                if domid.isdigit():
                    for devid in await self.store.ls(f"backend/vif/{domid}"):
                        if devid.isdigit():
                            present[f"backend/vif/{domid}/{devid}"] = (int(domid),
                                                                        int(devid))
            await self._reconcile(self.backends, present, self._backend,
                                  lambda domid, devid: self.net.backend_down(domid, devid))

    async def _reconcile(self, table: dict[str, tuple[tuple[int, ...], asyncio.Task[None]]],
                         present: dict[str, tuple[int, ...]], serve, down) -> None:  # type: ignore[no-untyped-def]
        """One task per device directory that exists, in this watcher's own `table`: a
        watcher that took the other's devices for gone would cancel them, and nothing would
        start them again. A directory dom0 removed without the closing handshake (the other
        end was destroyed) loses its task and its data plane, so a later device at the same
        path (a domid used again) starts afresh."""
        for key, (ids, task) in list(table.items()):
            if key not in present:
                task.cancel()
                del table[key]
                self.handshakes.pop(f"{key}/state", None)
                with contextlib.suppress(Exception):
                    await down(*ids)
        for key, ids in present.items():
            if key not in table:
                task = asyncio.ensure_future(serve(*ids))
                task.add_done_callback(_report_failure)
                table[key] = (ids, task)

    async def _backend(self, domid: int, devid: int) -> None:
        own = f"backend/vif/{domid}/{devid}"
        fe = (await self.store.read(f"{own}/frontend") or b"").decode("ascii", "replace")
        if fe != f"/local/domain/{domid}/device/vif/{devid}":
            log.error("vif %d.%d: frontend path %r does not match the device", domid, devid, fe)
            return

        async def act(action: Action) -> None:
            if action is Action.CONNECT:
                ip = _address(await self.store.read(f"{own}/ip"), f"{own}/ip")
                gw = _address(await self.store.read(f"{own}/hyperwall/gateway"),
                              f"{own}/hyperwall/gateway")
                await self.net.backend_up(domid, devid, ip, gw)
            else:
                await self.net.backend_down(domid, devid)

        if self.kernel_drivers:
            await self._hotplug(own, act)
            return
        for feature in ("feature-rx-copy", "feature-sg"):
            await self.store.write(f"{own}/{feature}", "1")
        # dom0 takes a device away as libxl does: `online` 0, then both ends close.
        await self._drive(Role.BACKEND, f"{own}/state", f"{fe}/state", act,
                          close_request=f"{own}/online")

    async def _hotplug(self, own: str, act) -> None:  # type: ignore[no-untyped-def]
        """What a driver domain's hotplug does for a netback device (see the docstring)."""
        plugged = False
        async for _ in self.store.watch(own):
            raw_state, online, gateway = await self._read_all(
                f"{own}/state", f"{own}/online", f"{own}/hyperwall/gateway")
            try:
                state = parse_state(raw_state)
            except HandshakeError as e:
                log.warning("%s/state: %s", own, e)
                continue
            removing = online == b"0"
            # libxl writes the device, then dom0 its own keys: wait for those too.
            ours = gateway is not None
            try:
                if XenbusState.INIT_WAIT <= state <= XenbusState.CONNECTED and ours \
                        and not removing and not plugged:
                    await act(Action.CONNECT)
                    plugged = True
                    await self.store.write_if_exists(own, f"{own}/hotplug-status", "connected")
            except (HandshakeError, CommandError) as e:   # `ip` failed, as a script may
                log.error("%s: %s", own, e)
                await self.store.write_if_exists(own, f"{own}/hotplug-error", str(e))
                await self.store.write_if_exists(own, f"{own}/hotplug-status", "error")
                return
            if removing and state is XenbusState.CLOSED:
                if plugged:
                    await act(Action.DISCONNECT)
                await self.store.rm(own)
                return

    # -- the handshake loop shared by both sides --------------------------------------------

    async def _drive(self, role: Role, own_state: str, peer_state: str, act,  # type: ignore[no-untyped-def]
                     close_request: str | None = None) -> None:
        """One side's handshake, following the peer's state; `close_request` set to 0 (the
        backend's `online`) closes this side first: Closing, then Closed once the peer
        follows, the teardown order of xenbus.h."""
        hs = Handshake(role)
        self.handshakes[own_state] = (hs, peer_state)
        await self._apply(own_state, hs.start(), act)
        paths = [peer_state, *([close_request] if close_request else [])]
        async with contextlib.aclosing(self._events(paths)) as events:
            async for watched in events:
                try:
                    # `online` is read when it changes, not on each of the peer's moves.
                    if close_request is not None and watched == close_request \
                            and await self.store.read(close_request) == b"0":
                        await self._apply(own_state, hs.close(), act)
                    peer = parse_state(await self._peer_value(peer_state))
                    await self._apply(own_state, hs.peer_changed(peer), act)
                except HandshakeError as e:
                    log.warning("%s: %s", peer_state, e)
                    continue
                if hs.state is XenbusState.CLOSED and peer in (XenbusState.CLOSED,
                                                              XenbusState.UNKNOWN):
                    return

    async def _events(self, paths: list[str]) -> AsyncGenerator[str, None]:
        """A watch on each of `paths`, as one stream: which of them each event is for."""
        queue: asyncio.Queue[str | BaseException] = asyncio.Queue()

        async def pump(path: str) -> None:
            try:
                async with contextlib.aclosing(self.store.watch(path)) as events:
                    async for _ in events:
                        queue.put_nowait(path)
            except Exception as e:   # the watch ended: so does the stream
                queue.put_nowait(e)
        pumps = [asyncio.ensure_future(pump(path)) for path in paths]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _peer_value(self, peer_state: str) -> bytes | None:
        """The peer's state, None once its directory is gone. A domain that was destroyed
        takes its home with it, and a missing node under a home one may not read answers
        EACCES, not ENOENT: that too means the peer is gone, not that this device failed."""
        try:
            return await self.store.read(peer_state)
        except XsError as e:
            if e.name != "EACCES":
                raise
            return None

    async def _apply(self, own_state: str, step: Step, act) -> None:  # type: ignore[no-untyped-def]
        # The data plane first: Connected must mean packets can flow.
        if step.action is not None:
            await act(step.action)
        if step.publish is not None:
            await self._publish(own_state, step.publish)

    async def _publish(self, own_state: str, state: XenbusState) -> None:
        value = str(int(state))
        if state in (XenbusState.CLOSING, XenbusState.CLOSED):
            # Into the device's directory only while it exists: the toolstack removes one
            # only on the way out (after this side's Closed, or once this side's peer or
            # domain is gone, or after CLOSE_TIMEOUT), so only a Closing or Closed can come
            # after that, and it must not bring the directory back.
            await self.store.write_if_exists(own_state.rpartition("/")[0], own_state, value)
        else:
            # On the way up a plain write, as before: the transaction's four round trips
            # under load made every start wait (ten at a time, the slowest 5.4 s, not 3.7).
            await self.store.write(own_state, value)

    async def _close_devices(self) -> None:
        """The domain is going: each open device goes Closing, then Closed once the other
        end has followed (or after CLOSE_WAIT, or once it is gone), as xenbus.h orders."""
        async def close(own_state: str, hs: Handshake, peer_state: str) -> None:
            if hs.close().publish is None:
                return   # closed already
            with contextlib.suppress(Exception):
                await self._publish(own_state, XenbusState.CLOSING)
                await self._peer_reached(peer_state, {XenbusState.CLOSING, XenbusState.CLOSED,
                                                      XenbusState.UNKNOWN}, CLOSE_WAIT)
            with contextlib.suppress(Exception):
                await self._publish(own_state, XenbusState.CLOSED)
        await asyncio.gather(*(close(own, hs, peer)
                               for own, (hs, peer) in self.handshakes.items()))

    async def _peer_reached(self, peer_state: str, states: set[XenbusState],
                            timeout: float) -> bool:
        async def reached() -> bool:
            async with contextlib.aclosing(self.store.watch(peer_state)) as events:
                async for _ in events:
                    with contextlib.suppress(HandshakeError):
                        if parse_state(await self._peer_value(peer_state)) in states:
                            return True
            return False
        try:
            return await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            return False


class IpNet:
    """The data plane with iproute2, inside the domain's own network namespace. Each step is
    one `ip -batch` process: a vif comes up with one fork, not four.

    A frontend's interface is `<prefix><devid>`: `eth` in a guest, `uplink` for sys-sec's
    own uplink on Xen. Where netfront made it (under the kernel's own name), it is found by
    its MAC and renamed."""

    def __init__(self, frontend_prefix: str = "eth", *, kernel_drivers: bool = False) -> None:
        self.prefix = frontend_prefix
        # Xen's drivers make the links, a moment after they announce them; elsewhere dom0
        # made them before the device was announced (and sysfs may show another netns).
        self.wait = NETDEV_WAIT if kernel_drivers else 0.0

    async def _ip(self, *commands: str, check: bool = True) -> None:
        await run(["ip", "-force", "-batch", "-"], input="".join(
            c + "\n" for c in commands).encode(), check=check)

    async def frontend_up(self, devid: int, ip: str, gateway: str, mac: str) -> None:
        dev = f"{self.prefix}{devid}"
        if devid == 0 and self.prefix == "eth":
            # sys-sec's resolver is the domain's resolver (filtered guests get no other).
            with open("/etc/resolv.conf", "w") as f:
                f.write(f"nameserver {gateway}\n")
        made = await appeared(lambda: interface_with_mac(mac) or existing(dev), self.wait)
        rename = [f"link set {made} down", f"link set {made} name {dev}"] \
            if made is not None and made != dev else []
        # The address dom0 gave the vif (xenstore's `mac`), as netfront takes it.
        await self._ip(*rename, f"link set {dev} address {mac}",
                       f"addr replace {ip}/32 dev {dev}", f"link set {dev} up",
                       f"route replace {gateway} dev {dev} scope link",
                       *([f"route replace default via {gateway} dev {dev}"] if devid == 0
                         else []))

    async def frontend_down(self, devid: int) -> None:
        await self._ip(f"link set {self.prefix}{devid} down", check=False)

    async def backend_up(self, domid: int, devid: int, ip: str, gateway: str) -> None:
        dev = f"vif{domid}.{devid}"
        await appeared(lambda: existing(dev), self.wait)
        await self._ip(f"addr replace {gateway}/32 dev {dev}", f"link set {dev} up",
                       f"route replace {ip}/32 dev {dev}")

    async def backend_down(self, domid: int, devid: int) -> None:
        await self._ip(f"link set vif{domid}.{devid} down", check=False)

    async def enable_forwarding(self) -> None:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1\n")


def _report_failure(task: asyncio.Task[None]) -> None:
    """A device task that failed unexpectedly says so (it is held, so never collected, and
    its exception would otherwise never be seen)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("device task failed", exc_info=task.exception())


async def appeared(find: Callable[[], str | None], timeout: float = NETDEV_WAIT) -> str | None:
    """What `find` finds, waiting up to `timeout` for it. The kernel's Xen drivers make their
    interface a moment after they announce the device in xenstore (netback after InitWait,
    netfront after Connected), and nothing in xenstore marks that moment."""
    deadline = time.monotonic() + timeout
    while (found := find()) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return found


def existing(name: str, sysfs: str = "/sys/class/net") -> str | None:
    return name if os.path.exists(f"{sysfs}/{name}") else None


def interface_with_mac(mac: str, sysfs: str = "/sys/class/net") -> str | None:
    """The name of the interface with this MAC address, if there is one."""
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(sysfs)):
            with contextlib.suppress(OSError), open(f"{sysfs}/{name}/address") as f:
                if f.read().strip().lower() == mac:
                    return name
    return None


SECURITY_SERVICES = [sys.executable, "-S", "-m", "domains.syssec.controller",
                     "--state-dir", "/var/lib/hyperwall"]
# The services (and what they start) run below the agent: their start-up is seconds of CPU,
# while the agent's device work has a deadline (a driver domain's hotplug: libxl waits for
# it) and every guest's network waits on it.
SERVICES_NICE = 5
# Restarted when they die (the firewall fails closed meanwhile), every half second.
SERVICES_BACKOFF = Backoff(first=0.5, base=0.5, cap=0.5, stable_after=60.0)


async def amain() -> int:
    from dom0.xenstore.client import connect_agent_store  # the one client layer
    store = await connect_agent_store()
    services = None
    sys_sec = await store.read("hyperwall/kind") == b"sys-sec"
    if sys_sec and os.environ.get("HYPERWALL_SECURITY", "1") != "0":
        from domains.supervise import Supervisor  # sys-sec's alone: no guest pays for it
        services = asyncio.ensure_future(Supervisor(
            SECURITY_SERVICES, name="controller", backoff=SERVICES_BACKOFF, says_ready=False,
            nice=SERVICES_NICE).run())
    on_xen = store.xs.where is not None and store.xs.where[0] == "xenbus"
    agent = Agent(store, IpNet("uplink" if sys_sec else "eth", kernel_drivers=on_xen),
                  kernel_drivers=on_xen)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, agent.stop, "SIGTERM")
    try:
        reason = await agent.run()
    except AgentFailed as e:
        log.error("%s; exiting for init to start the agent again", e)
        return 1
    finally:
        if services is not None:
            services.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await services
    log.info("shutting down: %s", reason)
    return 0


def main() -> None:
    from domains.logsetup import setup_logging
    setup_logging(f"agent[{os.environ.get('HYPERWALL_NAME', '?')}]")
    sys.exit(asyncio.run(amain()))


if __name__ == "__main__":
    main()
