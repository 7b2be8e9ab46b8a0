"""A domain's lifecycle, like libxl/xl: create, start, shutdown, destroy, pause, exec, and
the whole platform up and down.

dom0 writes each domain's layout into xenstore (see `layout`), introduces the domain so it
gets its own xenstore socket, has the backend build and start it, wires its vif to sys-sec
and waits for the in-domain agents to walk the XenbusState handshake to Connected. While a
create or a start is under way its `/libxl/<id>/hyperwall/creating` marker is there, so a
restarted dom0d knows to roll it back (see `recovery`).
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuidlib
from collections.abc import Callable

from dom0 import layout
from dom0.backends.base import DomidInUse, ExecResult
from dom0.config import DomainSpec
from dom0.model import DomainInfo, DomainState, EventKind, InvalidState, ToolstackError
from dom0.toolstack.domains import STOPPED, Domain, Registry, creating_marker
from dom0.toolstack.domids import DOMID_TRIES, DomidAllocator
from dom0.toolstack.events import Events
from dom0.toolstack.teardown import teardown
from dom0.toolstack.vifs import add_vif, wait_vif_connected

log = logging.getLogger("hyperwall.toolstack")

CONNECT_TIMEOUT = 20.0
# On Xen, libxl gives a driver domain 10 s to answer a new vif, so sys-sec counts as started
# only once its agent (started after netback is loaded) has reported.
DRIVER_DOMAIN_TIMEOUT = 60.0
# sys-sec's keys that say its services serve, and what each must hold (see _wait_services).
SERVICES_READY: list[tuple[str, Callable[[bytes | None], bool]]] = [
    ("lists", lambda v: v is not None),
    ("ips", lambda v: v is not None and (v == b"running" or v.startswith(b"off"))),
]


class Lifecycle:
    def __init__(self, registry: Registry, events: Events, domids: DomidAllocator, *,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.registry = registry
        self.events = events
        self.domids = domids
        self.connect_timeout = connect_timeout

    async def create(self, name: str) -> DomainInfo:
        async with self.registry.lock(name):
            await self._create(name)
        return self.registry.info(name)

    async def start(self, name: str) -> DomainInfo:
        reg = self.registry
        spec = reg.spec(name)
        if not spec.is_sys_sec:
            # Like a Qubes netvm: the security domain comes up first, by itself.
            sys_sec = reg.sys_sec_spec()
            if sys_sec.name not in reg.domains:
                await self.start(sys_sec.name)
        async with reg.lock(name):
            dom = reg.domains.get(name) or await self._create(name)
            if dom.state is not DomainState.CREATED:
                raise InvalidState(f"{name} is {dom.state.value}; only a created or defined "
                                   "domain can be started")
            try:
                await reg.store.write_nodes([creating_marker(dom.domid)])
                # The vif is plugged while the domain boots: the agent handles a device
                # whenever it appears, and sys-sec's side gets ready meanwhile.
                await asyncio.gather(
                    reg.backend(spec).start(dom.handle),
                    *([] if spec.is_sys_sec else [add_vif(reg, dom, devid=0)]))
                dom.state = DomainState.RUNNING
                dom.started_at = time.monotonic()
                if not spec.is_sys_sec:
                    await wait_vif_connected(reg, self.events, dom, 0, self.connect_timeout)
                else:
                    if reg.backend(spec).hypervisor_owned:
                        await self._wait_agent(dom, max(DRIVER_DOMAIN_TIMEOUT,
                                                        self.connect_timeout))
                    if reg.uplink is not None:
                        await reg.uplink.plug(dom.handle)
                    await self._wait_services(dom, max(DRIVER_DOMAIN_TIMEOUT,
                                                       self.connect_timeout))
                await reg.store.rm(creating_marker(dom.domid).path)
            except BaseException:
                await teardown(reg, self.events, dom)
                raise
        self.events.emit(EventKind.STARTED, dom)
        return reg.info(name)

    async def shutdown(self, name: str, *, reboot: bool = False, timeout: float = 30.0) -> None:
        reg = self.registry
        async with reg.lock(name):
            dom = reg.running(name)
            if dom.spec.is_sys_sec and reg.guests():
                raise InvalidState(f"{name} still serves {', '.join(reg.guests())}; "
                                   "shut those down first (or `hyperwall down`)")
            dom.shutdown_requested = "reboot" if reboot else "poweroff"
            dom.state = DomainState.SHUTDOWN
            await reg.store.write_nodes([layout.Node(
                f"{layout.dom_path(dom.domid)}/control/shutdown", dom.shutdown_requested)])
            if not await self._wait_stopped(dom, timeout):
                log.warning("%s ignored control/shutdown for %.0fs; stopping it", name, timeout)
                await reg.backend(dom.spec).shutdown(dom.handle, timeout=5.0)
            self.events.emit(EventKind.SHUTDOWN, dom, dom.shutdown_requested)
            await teardown(reg, self.events, dom)
        if reboot:
            await self.start(name)

    async def destroy(self, name: str) -> None:
        reg = self.registry
        async with reg.lock(name):
            dom = reg.domains.get(name)
            if dom is None:
                reg.spec(name)
                raise InvalidState(f"{name} is not running")
            if dom.spec.is_sys_sec and reg.guests():
                raise InvalidState(f"{name} still serves {', '.join(reg.guests())}; "
                                   "destroy those first")
            await teardown(reg, self.events, dom)

    async def set_paused(self, name: str, paused: bool) -> None:
        reg = self.registry
        async with reg.lock(name):
            dom = reg.running(name)
            want_from = DomainState.RUNNING if paused else DomainState.PAUSED
            if dom.state is not want_from:
                raise InvalidState(f"{name} is {dom.state.value}, not {want_from.value}")
            backend = reg.backend(dom.spec)
            await (backend.pause(dom.handle) if paused else backend.unpause(dom.handle))
            dom.state = DomainState.PAUSED if paused else DomainState.RUNNING
        self.events.emit(EventKind.PAUSED if paused else EventKind.UNPAUSED, dom)

    async def exec(self, name: str, argv: list[str], *, timeout: float = 60.0,
                   stdin: bytes | None = None) -> ExecResult:
        dom = self.registry.running(name)
        if dom.state is not DomainState.RUNNING:
            raise InvalidState(f"{name} is {dom.state.value}; unpause it first")
        return await self.registry.backend(dom.spec).exec(dom.handle, argv, timeout=timeout,
                                                          stdin=stdin)

    async def up(self) -> None:
        """The whole platform from the config dir: sys-sec first, then every guest, the
        guests side by side (a VM's boot is mostly waiting on its kernel and agent). Every
        guest's start runs to its end; the first failure is raised after that, so no start
        is left half-done behind the error."""
        reg = self.registry
        await self.start(reg.sys_sec_spec().name)
        names = [n for n in reg.names() if n not in reg.domains]
        results = await asyncio.gather(*(self.start(n) for n in names), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def down(self) -> None:
        reg = self.registry
        for name in reg.guests():
            await self.shutdown(name)
        sys_sec = reg.sys_sec_spec().name
        if sys_sec in reg.domains:
            await self.shutdown(sys_sec)

    async def _create(self, name: str) -> Domain:
        reg = self.registry
        spec = reg.spec(name)
        if name in reg.domains:
            raise InvalidState(f"{name} already exists (domain {reg.domains[name].domid})")
        if reg.backend(spec).hypervisor_owned:
            return await self._create_by_hypervisor(spec)
        for attempt in range(DOMID_TRIES):
            domid = await self.domids.allocate(reg)
            dom = Domain(spec, domid, str(uuidlib.uuid4()), reg.handle(domid, spec),
                         DomainState.CREATED)
            reg.domains[name] = dom
            try:
                await reg.store.write_nodes([*layout.domain_nodes(domid, dom.uuid, spec),
                                             creating_marker(domid)])
                await reg.store.introduce(domid)
                await reg.backend(spec).create(dom.handle)
                await reg.store.rm(creating_marker(domid).path)
            except DomidInUse as e:
                # Another platform on this host holds it: the allocator has moved on.
                await teardown(reg, self.events, dom, emit=False)
                if attempt == DOMID_TRIES - 1:
                    raise ToolstackError(f"{name}: {DOMID_TRIES} domids in a row are in use "
                                         f"on this host; the last: {e}") from None
                log.warning("%s; %s takes the next domid", e, name)
                continue
            except BaseException:
                await teardown(reg, self.events, dom, emit=False)
                raise
            self.events.emit(EventKind.CREATED, dom)
            return dom
        raise AssertionError("unreachable")

    async def _create_by_hypervisor(self, spec: DomainSpec) -> Domain:
        """On Xen: `xl create` picks the domid, writes the layout and introduces the domain;
        dom0 adds its own keys (and the marker a restarted dom0d rolls back by)."""
        reg = self.registry
        backend = reg.backend(spec)
        domid = await backend.create(reg.handle(0, spec))
        if domid is None:
            raise ToolstackError(f"{spec.name}: backend {backend.name} gave no domid")
        vm = (await reg.store.read(f"{layout.dom_path(domid)}/vm") or b"").decode()
        dom = Domain(spec, domid, vm.removeprefix("/vm/"), reg.handle(domid, spec),
                     DomainState.CREATED)
        reg.domains[spec.name] = dom
        try:
            await reg.store.write_nodes([*layout.hyperwall_nodes(domid, spec),
                                         creating_marker(domid)])
            await reg.store.rm(creating_marker(domid).path)
        except BaseException:
            await teardown(reg, self.events, dom, emit=False)
            raise
        self.events.emit(EventKind.CREATED, dom)
        return dom

    async def _wait_agent(self, dom: Domain, timeout: float) -> None:
        path = f"{layout.dom_path(dom.domid)}/data/hyperwall/agent"
        if await self.registry.store.wait_value(path, lambda v: bool(v), timeout) is None:
            raise ToolstackError(f"{dom.spec.name}: its agent did not report in {timeout:.0f}s "
                                 f"({path} is missing); see its console log")

    async def _wait_services(self, dom: Domain, timeout: float) -> None:
        """sys-sec counts as started once its security services serve.
        domains.syssec.controller writes `lists` last in its start, after its resolver,
        SecurityService and provider channel listen, and `ips` once the engine reads its
        queue. Before that a guest's traffic has no resolver and waits on a queue nobody
        reads, and `hyperwall alerts` finds no SecurityService: a start that returned
        earlier was a race with them."""
        base = f"{layout.dom_path(dom.domid)}/data/hyperwall"
        for key, ready in SERVICES_READY:
            path = f"{base}/{key}"
            value = await self.registry.store.wait_value(path, ready, timeout)
            if not ready(value):
                raise ToolstackError(f"{dom.spec.name}: its security services did not say "
                                     f"they serve in {timeout:.0f}s ({path} is {value!r}); "
                                     "see its console log")

    async def _wait_stopped(self, dom: Domain, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        backend = self.registry.backend(dom.spec)
        while time.monotonic() < deadline:
            if await backend.state(dom.handle) in STOPPED:
                return True
            await asyncio.sleep(0.05)
        return False
