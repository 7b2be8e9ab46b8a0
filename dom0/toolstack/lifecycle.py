"""The toolstack: domain lifecycle over xenstore and a backend, like libxl/xl.

dom0 writes each domain's layout into xenstore (see `layout`), introduces the domain so it
gets its own xenstore socket, has the backend build and start it, wires its vif to sys-sec
and waits for the in-domain agents to walk the XenbusState handshake to Connected.

Everything dom0 knows about a running domain is also in xenstore, so a restarted dom0d
rebuilds its view from there (`recover`): running domains are adopted untouched; a domain
whose create or start was cut short (its `/libxl/<id>/hyperwall/creating` marker is still
there) is rolled back; backend resources no xenstore entry accounts for are destroyed.
"""
from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dom0 import layout
from dom0.backends.base import Backend, DomainHandle, DomidInUse, ExecResult, RunState
from dom0.config import DomainSpec
from dom0.model import (
    DomainEvent,
    DomainInfo,
    DomainState,
    EventKind,
    InvalidState,
    ToolstackError,
    UnknownDomain,
)
from dom0.xenstore.xenbus import XenbusState, parse_state

log = logging.getLogger("hyperwall.toolstack")

MAX_DOMID = 32751            # DOMID_FIRST_RESERVED - 1, as on Xen
CONNECT_TIMEOUT = 20.0
# On Xen, libxl gives a driver domain 10 s to answer a new vif, so sys-sec counts as started
# only once its agent (started after netback is loaded) has reported.
DRIVER_DOMAIN_TIMEOUT = 60.0
SUPERVISE_INTERVAL = 1.0
# How long each end of a vif being removed gets to walk Closing to Closed (libxl gives a
# backend 10 s) before its directories are removed anyway.
CLOSE_TIMEOUT = 5.0
# sys-sec's keys that say its services serve, and what each must hold (see _wait_services).
SERVICES_READY: list[tuple[str, Callable[[bytes | None], bool]]] = [
    ("lists", lambda v: v is not None),
    ("ips", lambda v: v is not None and (v == b"running" or v.startswith(b"off"))),
]
# domids tried, one after the other, where the host holds some already (another platform's).
DOMID_TRIES = 64


class Store(Protocol):
    """The slice of the xenstore client layer the toolstack uses."""

    async def read(self, path: str) -> bytes | None: ...
    async def ls(self, path: str) -> list[str]: ...
    async def write_nodes(self, nodes: list[layout.Node]) -> None: ...
    async def write_if_exists(self, parent: str, path: str, value: str) -> bool: ...
    async def rm(self, path: str) -> None: ...
    async def introduce(self, domid: int) -> None: ...
    async def release(self, domid: int) -> None: ...
    async def wait_value(self, path: str, pred: Callable[[bytes | None], bool],
                         timeout: float) -> bytes | None: ...
    def watch(self, path: str) -> AsyncIterator[str]: ...


class Uplink(Protocol):
    """How sys-sec reaches the outside: plugged once it runs, unplugged when it goes."""

    async def plug(self, sys_sec: DomainHandle) -> None: ...
    async def unplug(self, sys_sec: DomainHandle) -> None: ...


@dataclass
class Domain:
    spec: DomainSpec
    domid: int
    uuid: str
    handle: DomainHandle
    state: DomainState
    started_at: float = field(default_factory=time.monotonic)
    shutdown_requested: str | None = None


class Toolstack:
    def __init__(self, specs: dict[str, DomainSpec], store: Store,
                 backends: dict[str, Backend], xs_rundir: Path, *, first_domid: int = 1,
                 uplink: Uplink | None = None, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.specs = specs
        self.connect_timeout = connect_timeout
        self.uplink = uplink
        self.first_domid = first_domid
        self.store = store
        self.backends = backends
        self.xs_rundir = xs_rundir
        self.domains: dict[str, Domain] = {}
        self._subscribers: set[asyncio.Queue[DomainEvent]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._probe_matched: dict[str, bool] = {}
        self._next_domid: int | None = None

    # -- queries ---------------------------------------------------------------------------

    def list(self) -> list[DomainInfo]:
        return [self.get(name) for name in sorted(self.specs, key=_display_order)]

    def get(self, name: str) -> DomainInfo:
        spec = self._spec(name)
        dom = self.domains.get(name)
        return DomainInfo(
            name=spec.name, domid=dom.domid if dom else None, uuid=dom.uuid if dom else None,
            kind=spec.kind, backend=spec.backend, memory_mb=spec.memory_mb, vcpus=spec.vcpus,
            policy=spec.policy, state=dom.state if dom else DomainState.DEFINED,
            cpu_time=time.monotonic() - dom.started_at if dom and dom.state in (
                DomainState.RUNNING, DomainState.PAUSED) else 0.0,
            users=spec.users,
        )

    async def subscribe(self) -> AsyncIterator[DomainEvent]:
        queue: asyncio.Queue[DomainEvent] = asyncio.Queue(maxsize=1000)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    # -- lifecycle -------------------------------------------------------------------------

    async def create(self, name: str) -> DomainInfo:
        async with self._lock(name):
            await self._create(name)
        return self.get(name)

    async def start(self, name: str) -> DomainInfo:
        spec = self._spec(name)
        if not spec.is_sys_sec:
            # Like a Qubes netvm: the security domain comes up first, by itself.
            sys_sec = self._sys_sec_spec()
            if sys_sec.name not in self.domains:
                await self.start(sys_sec.name)
        async with self._lock(name):
            dom = self.domains.get(name) or await self._create(name)
            if dom.state is not DomainState.CREATED:
                raise InvalidState(f"{name} is {dom.state.value}; only a created or defined "
                                   "domain can be started")
            try:
                await self.store.write_nodes([self._marker(dom.domid)])
                # The vif is plugged while the domain boots: the agent handles a device
                # whenever it appears, and sys-sec's side gets ready meanwhile.
                await asyncio.gather(
                    self._backend(spec).start(dom.handle),
                    *([] if spec.is_sys_sec else [self._add_vif(dom, devid=0)]))
                dom.state = DomainState.RUNNING
                dom.started_at = time.monotonic()
                if not spec.is_sys_sec:
                    await self._wait_vif_connected(dom, devid=0)
                else:
                    if self._backend(spec).hypervisor_owned:
                        await self._wait_agent(dom, max(DRIVER_DOMAIN_TIMEOUT,
                                                        self.connect_timeout))
                    if self.uplink is not None:
                        await self.uplink.plug(dom.handle)
                    await self._wait_services(dom, max(DRIVER_DOMAIN_TIMEOUT,
                                                       self.connect_timeout))
                await self.store.rm(self._marker(dom.domid).path)
            except BaseException:
                await self._teardown(dom)
                raise
        self._emit(EventKind.STARTED, dom)
        return self.get(name)

    async def shutdown(self, name: str, *, reboot: bool = False, timeout: float = 30.0) -> None:
        async with self._lock(name):
            dom = self._running(name)
            if dom.spec.is_sys_sec and self._guests():
                raise InvalidState(f"{name} still serves {', '.join(self._guests())}; "
                                   "shut those down first (or `hyperwall down`)")
            dom.shutdown_requested = "reboot" if reboot else "poweroff"
            dom.state = DomainState.SHUTDOWN
            await self.store.write_nodes([layout.Node(
                f"{layout.dom_path(dom.domid)}/control/shutdown", dom.shutdown_requested)])
            if not await self._wait_stopped(dom, timeout):
                log.warning("%s ignored control/shutdown for %.0fs; stopping it", name, timeout)
                await self._backend(dom.spec).shutdown(dom.handle, timeout=5.0)
            self._emit(EventKind.SHUTDOWN, dom, dom.shutdown_requested)
            await self._teardown(dom)
        if reboot:
            await self.start(name)

    async def destroy(self, name: str) -> None:
        async with self._lock(name):
            dom = self.domains.get(name)
            if dom is None:
                self._spec(name)
                raise InvalidState(f"{name} is not running")
            if dom.spec.is_sys_sec and self._guests():
                raise InvalidState(f"{name} still serves {', '.join(self._guests())}; "
                                   "destroy those first")
            await self._teardown(dom)

    async def pause(self, name: str) -> None:
        await self._set_paused(name, True)

    async def unpause(self, name: str) -> None:
        await self._set_paused(name, False)

    async def exec(self, name: str, argv: builtins.list[str], *, timeout: float = 60.0,
                   stdin: bytes | None = None) -> ExecResult:
        dom = self._running(name)
        if dom.state is not DomainState.RUNNING:
            raise InvalidState(f"{name} is {dom.state.value}; unpause it first")
        return await self._backend(dom.spec).exec(dom.handle, argv, timeout=timeout, stdin=stdin)

    async def up(self) -> builtins.list[DomainInfo]:
        """The whole platform from the config dir: sys-sec first, then every guest, the
        guests side by side (a VM's boot is mostly waiting on its kernel and agent). Every
        guest's start runs to its end; the first failure is raised after that, so no start
        is left half-done behind the error."""
        await self.start(self._sys_sec_spec().name)
        names = [n for n in sorted(self.specs, key=_display_order) if n not in self.domains]
        results = await asyncio.gather(*(self.start(n) for n in names), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return self.list()

    async def autostart(self) -> None:
        """What the config marks to start with dom0 (`autostart = true`)."""
        for name in sorted(self.specs, key=_display_order):
            if self.specs[name].autostart.on_boot and name not in self.domains:
                await self.start(name)

    async def down(self) -> None:
        for name in self._guests():
            await self.shutdown(name)
        sys_sec = self._sys_sec_spec().name
        if sys_sec in self.domains:
            await self.shutdown(sys_sec)

    # -- recovery and supervision ----------------------------------------------------------

    async def recover(self) -> None:
        """Rebuild the view of domains from xenstore and the backends after a restart."""
        known: set[tuple[str, int]] = set()
        for entry in await self.store.ls("/local/domain"):
            if not entry.isdigit() or entry == "0":
                continue
            domid = int(entry)
            base = layout.dom_path(domid)
            name = (await self.store.read(f"{base}/name") or b"").decode()
            vm = (await self.store.read(f"{base}/vm") or b"").decode()
            spec = self.specs.get(name)
            if spec is None or not vm.startswith("/vm/"):
                log.warning("domain %d (%r) is not in the config dir; removing its entries",
                            domid, name)
                await self._remove_entries(domid, vm.removeprefix("/vm/") or None)
                continue
            dom = Domain(spec, domid, vm.removeprefix("/vm/"), self._handle(domid, spec),
                         DomainState.CREATED)
            known.add((spec.backend, domid))
            creating = await self.store.read(self._marker(domid).path)
            run = await self._backend(spec).state(dom.handle)
            if creating is not None:
                # Cut short anywhere between its first xenstore write and its vif coming
                # up: which backend steps happened is unknown, so all of it goes.
                log.warning("%s (domain %d) was half-created when dom0 stopped; rolling back",
                            name, domid)
                await self._teardown(dom, emit=False)
                continue
            dom.state = _from_run_state(run)
            if run is RunState.ABSENT:
                await self._remove_entries(domid, dom.uuid)
                continue
            self.domains[name] = dom
            log.info("adopted %s (domain %d, %s)", name, domid, dom.state.value)
        for backend_name, backend in self.backends.items():
            for domid in await backend.list_domids():
                if (backend_name, domid) not in known:
                    log.warning("backend %s holds domain %d that xenstore does not know; "
                                "destroying it", backend_name, domid)
                    # The backend knows the orphan's real name and kind; this
                    # stand-in keeps its writable layer if it does not.
                    orphan = DomainSpec(name=f"orphan-{domid}", kind="app",
                                        backend=backend_name)
                    await backend.destroy(self._handle(domid, orphan))

    def supervise(self) -> None:
        """Notice domains that stop or crash by themselves."""
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def close(self) -> None:
        if self._supervisor:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor

    async def _supervise(self) -> None:
        # A backend gives no event when a domain dies by itself, so poll; a released domain
        # (@releaseDomain, as on Xen) is looked at at once.
        wake = asyncio.Event()

        async def on_release() -> None:
            async for _ in self.store.watch("@releaseDomain"):
                wake.set()
        watcher = asyncio.get_running_loop().create_task(on_release())
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SUPERVISE_INTERVAL):
                        await wake.wait()
                wake.clear()
                await self._check_domains()
                await self._check_probes()
        finally:
            watcher.cancel()
            # Its unwatch must reach xenstore before the connection closes.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    async def _check_domains(self) -> None:
        for dom in list(self.domains.values()):
            lock = self._lock(dom.spec.name)
            if lock.locked() or dom.state not in (DomainState.RUNNING, DomainState.PAUSED):
                continue
            try:
                run = await self._backend(dom.spec).state(dom.handle)
            except Exception:
                log.exception("checking %s", dom.spec.name)
                continue
            if run in (RunState.SHUTDOWN, RunState.CRASHED, RunState.ABSENT):
                async with lock:
                    if self.domains.get(dom.spec.name) is not dom:
                        continue
                    kind = EventKind.CRASHED if run is RunState.CRASHED else EventKind.SHUTDOWN
                    self._emit(kind, dom, "stopped by itself")
                    await self._teardown(dom)

    async def _check_probes(self) -> None:
        """Start a domain whose `autostart` probe sys-sec reports as matching (e.g. `work`
        once the uplink is on the corporate network). sys-sec's answer is only compared."""
        sys_sec = self.domains.get(self._sys_sec_spec().name)
        if sys_sec is None or sys_sec.state is not DomainState.RUNNING:
            return
        base = layout.dom_path(sys_sec.domid)
        for spec in self.specs.values():
            probe = spec.autostart
            if not probe.probe_name or spec.name in self.domains or self._lock(spec.name).locked():
                continue
            asked = f"{base}/hyperwall/probes/{spec.name}"
            if await self.store.read(asked) != probe.probe_name.encode():
                await self.store.write_nodes([layout.Node(asked, probe.probe_name)])
            answer = await self.store.read(f"{base}/data/hyperwall/probes/{spec.name}")
            matched = answer == (probe.probe_address or "").encode()
            # Once per change to a match: a start that failed is not retried every second.
            if matched and self._probe_matched.get(spec.name) is not True:
                log.info("%s resolves to %s through sys-sec's uplink: starting %s",
                         probe.probe_name, probe.probe_address, spec.name)
                self._spawn_start(spec.name)
            self._probe_matched[spec.name] = matched

    def _spawn_start(self, name: str) -> None:
        async def start() -> None:
            try:
                await self.start(name)
            except Exception as e:   # reported; dom0d carries on
                log.error("autostart of %s failed: %s", name, e)
        self._background.add(task := asyncio.get_running_loop().create_task(start()))
        task.add_done_callback(self._background.discard)

    # -- internals -------------------------------------------------------------------------

    async def _create(self, name: str) -> Domain:
        spec = self._spec(name)
        if name in self.domains:
            raise InvalidState(f"{name} already exists (domain {self.domains[name].domid})")
        if self._backend(spec).hypervisor_owned:
            return await self._create_by_hypervisor(spec)
        for attempt in range(DOMID_TRIES):
            domid = await self._allocate_domid()
            dom = Domain(spec, domid, str(uuidlib.uuid4()), self._handle(domid, spec),
                         DomainState.CREATED)
            self.domains[name] = dom
            try:
                await self.store.write_nodes([*layout.domain_nodes(domid, dom.uuid, spec),
                                              self._marker(domid)])
                await self.store.introduce(domid)
                await self._backend(spec).create(dom.handle)
                await self.store.rm(self._marker(domid).path)
            except DomidInUse as e:
                # Another platform on this host holds it: the allocator has moved on.
                await self._teardown(dom, emit=False)
                if attempt == DOMID_TRIES - 1:
                    raise ToolstackError(f"{name}: {DOMID_TRIES} domids in a row are in use "
                                         f"on this host; the last: {e}") from None
                log.warning("%s; %s takes the next domid", e, name)
                continue
            except BaseException:
                await self._teardown(dom, emit=False)
                raise
            self._emit(EventKind.CREATED, dom)
            return dom
        raise AssertionError("unreachable")

    async def _create_by_hypervisor(self, spec: DomainSpec) -> Domain:
        """On Xen: `xl create` picks the domid, writes the layout and introduces the domain;
        dom0 adds its own keys (and the marker a restarted dom0d rolls back by)."""
        backend = self._backend(spec)
        domid = await backend.create(self._handle(0, spec))
        if domid is None:
            raise ToolstackError(f"{spec.name}: backend {backend.name} gave no domid")
        vm = (await self.store.read(f"{layout.dom_path(domid)}/vm") or b"").decode()
        dom = Domain(spec, domid, vm.removeprefix("/vm/"), self._handle(domid, spec),
                     DomainState.CREATED)
        self.domains[spec.name] = dom
        try:
            await self.store.write_nodes([*layout.hyperwall_nodes(domid, spec),
                                          self._marker(domid)])
            await self.store.rm(self._marker(domid).path)
        except BaseException:
            await self._teardown(dom, emit=False)
            raise
        self._emit(EventKind.CREATED, dom)
        return dom

    def _running_sys_sec(self, dom: Domain) -> Domain:
        sys_sec = self.domains.get(self._sys_sec_spec().name)
        if sys_sec is None or sys_sec.state is not DomainState.RUNNING:
            raise InvalidState(f"{self._sys_sec_spec().name} is not running; "
                               f"{dom.spec.name} would have no network")
        return sys_sec

    async def _add_vif(self, dom: Domain, devid: int) -> None:
        sys_sec = self._running_sys_sec(dom)
        backend = self._backend(dom.spec)
        await backend.add_vif(dom.handle, sys_sec.handle, devid)
        # On Xen libxl wrote the device's directories; only Hyperwall's keys are dom0's.
        nodes = layout.vif_hyperwall_nodes if backend.hypervisor_owned else layout.vif_nodes
        await self.store.write_nodes(nodes(dom.domid, sys_sec.domid, devid, dom.spec.policy,
                                           name=dom.spec.name))

    async def _wait_vif_connected(self, dom: Domain, devid: int) -> None:
        sys_sec = self._running_sys_sec(dom)
        connected = str(int(XenbusState.CONNECTED)).encode()
        for path in (f"{layout.vif_frontend_path(dom.domid, devid)}/state",
                     f"{layout.vif_backend_path(sys_sec.domid, dom.domid, devid)}/state"):
            value = await self.store.wait_value(path, lambda v: v == connected,
                                                self.connect_timeout)
            if value != connected:
                raise ToolstackError(
                    f"{dom.spec.name}: vif {devid} did not reach Connected in "
                    f"{self.connect_timeout:.0f}s ({path} is {_state_name(value)}); see "
                    f"the console logs of {dom.spec.name} and {sys_sec.spec.name}")
        if self._backend(dom.spec).hypervisor_owned:
            # netfront says Connected before the guest's agent has addressed the link.
            path = f"{layout.dom_path(dom.domid)}/data/hyperwall/vif/{devid}"
            value = await self.store.wait_value(path, lambda v: (v or b"").startswith(b"up"),
                                                self.connect_timeout)
            if not (value or b"").startswith(b"up"):
                raise ToolstackError(f"{dom.spec.name}: its agent did not configure vif "
                                     f"{devid} in {self.connect_timeout:.0f}s ({path} is "
                                     f"{value!r}); see its console log")
        self._emit(EventKind.VIF_CONNECTED, dom, f"vif{dom.domid}.{devid}")

    async def _wait_agent(self, dom: Domain, timeout: float) -> None:
        path = f"{layout.dom_path(dom.domid)}/data/hyperwall/agent"
        if await self.store.wait_value(path, lambda v: bool(v), timeout) is None:
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
            value = await self.store.wait_value(path, ready, timeout)
            if not ready(value):
                raise ToolstackError(f"{dom.spec.name}: its security services did not say "
                                     f"they serve in {timeout:.0f}s ({path} is {value!r}); "
                                     "see its console log")

    async def _wait_stopped(self, dom: Domain, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        backend = self._backend(dom.spec)
        while time.monotonic() < deadline:
            if await backend.state(dom.handle) in (RunState.SHUTDOWN, RunState.CRASHED,
                                                   RunState.ABSENT):
                return True
            await asyncio.sleep(0.05)
        return False

    async def _teardown(self, dom: Domain, emit: bool = True) -> None:
        """Remove every trace of a domain: backend resources, vifs, xenstore, its domid."""
        dom.state = DomainState.DYING
        backend = self._backend(dom.spec)
        sys_sec = self.domains.get(self._sys_sec_spec().name)
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        leftovers: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if sys_sec is not None and sys_sec is not dom:
            if not backend.hypervisor_owned:
                steps.append(("vif close", lambda: self._close_vif(dom, sys_sec, 0)))
            steps.append(("vif", lambda: backend.remove_vif(dom.handle, sys_sec.handle, 0)))
            # On Xen libxl takes the devices away with the domain (sys-sec's agent removes
            # its backend directory, as a driver domain does): only what is left is ours.
            (leftovers if backend.hypervisor_owned else steps).append(
                ("backend entries", lambda: self.store.rm(
                    f"{layout.dom_path(sys_sec.domid)}/backend/vif/{dom.domid}")))
        if dom.spec.is_sys_sec and self.uplink is not None:
            uplink = self.uplink
            steps.append(("uplink", lambda: uplink.unplug(dom.handle)))
        steps.append(("backend", lambda: backend.destroy(dom.handle)))
        steps += leftovers
        steps.append(("release", lambda: self.store.release(dom.domid)))
        steps.append(("xenstore", lambda: self._remove_entries(dom.domid, dom.uuid)))
        for what, step in steps:
            try:
                await step()
            except Exception as e:  # keep going: leaving the rest behind would leak more
                log.warning("tearing down %s: %s: %s", dom.spec.name, what, e)
        if self.domains.get(dom.spec.name) is dom:
            del self.domains[dom.spec.name]
        if emit:
            self._emit(EventKind.DESTROYED, dom)

    async def _close_vif(self, dom: Domain, sys_sec: Domain, devid: int) -> None:
        """Remove a vif as libxl does: `online` 0 asks the backend to close; it goes
        Closing, the frontend follows to Closing, the backend to Closed, the frontend to
        Closed; then the directories go, the frontend's first. A frontend that cannot
        answer (its domain stopped, or it does not within CLOSE_TIMEOUT) loses its
        directory anyway, which closes the backend as a vanished frontend does."""
        fe = layout.vif_frontend_path(dom.domid, devid)
        be = layout.vif_backend_path(sys_sec.domid, dom.domid, devid)
        closed = str(int(XenbusState.CLOSED)).encode()

        def done(value: bytes | None) -> bool:
            return value in (closed, None)
        if await self.store.write_if_exists(be, f"{be}/online", "0") and \
                await self._backend(dom.spec).state(dom.handle) is RunState.RUNNING:
            for path in (f"{be}/state", f"{fe}/state"):
                if not done(await self.store.wait_value(path, done, CLOSE_TIMEOUT)):
                    log.warning("%s: vif %d: %s did not reach Closed in %.0fs; removing it",
                                dom.spec.name, devid, path, CLOSE_TIMEOUT)
                    break
        await self.store.rm(fe)
        if not done(await self.store.wait_value(f"{be}/state", done, CLOSE_TIMEOUT)):
            log.warning("%s: vif %d: sys-sec's end did not reach Closed in %.0fs; removing it",
                        dom.spec.name, devid, CLOSE_TIMEOUT)
        await self.store.rm(be)

    async def _remove_entries(self, domid: int, uuid: str | None) -> None:
        for path in (layout.dom_path(domid), layout.libxl_path(domid),
                     *([layout.vm_path(uuid)] if uuid else [])):
            await self.store.rm(path)

    async def _set_paused(self, name: str, paused: bool) -> None:
        async with self._lock(name):
            dom = self._running(name)
            want_from = DomainState.RUNNING if paused else DomainState.PAUSED
            if dom.state is not want_from:
                raise InvalidState(f"{name} is {dom.state.value}, not {want_from.value}")
            backend = self._backend(dom.spec)
            await (backend.pause(dom.handle) if paused else backend.unpause(dom.handle))
            dom.state = DomainState.PAUSED if paused else DomainState.RUNNING
        self._emit(EventKind.PAUSED if paused else EventKind.UNPAUSED, dom)

    async def _allocate_domid(self) -> int:
        used = {int(e) for e in await self.store.ls("/local/domain") if e.isdigit()}
        # After the await, with none until the caller records the domain: starts in
        # flight at the same time never get the same domid.
        used |= {d.domid for d in self.domains.values()}
        # Onwards from the last one given, wrapping, as Xen's allocator does: a domid used
        # again at once would meet watches and device tasks of the domain that had it, in
        # sys-sec's agent still catching up with its removal.
        start = self._next_domid if self._next_domid is not None else \
            max((d + 1 for d in used if self.first_domid <= d <= MAX_DOMID),
                default=self.first_domid)
        span = MAX_DOMID + 1 - self.first_domid
        for i in range(span):
            domid = self.first_domid + (start - self.first_domid + i) % span
            if domid not in used:
                self._next_domid = domid + 1
                return domid
        raise ToolstackError("no free domid left")

    @staticmethod
    def _marker(domid: int) -> layout.Node:
        """There while a create or a start is under way: what a restarted dom0d rolls back."""
        return layout.Node(f"{layout.libxl_path(domid)}/hyperwall/creating", "1")

    def _handle(self, domid: int, spec: DomainSpec) -> DomainHandle:
        return DomainHandle(domid, spec, self.xs_rundir / "domain" / str(domid))

    def _spec(self, name: str) -> DomainSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise UnknownDomain(name) from None

    def _sys_sec_spec(self) -> DomainSpec:
        return next(s for s in self.specs.values() if s.is_sys_sec)

    def _running(self, name: str) -> Domain:
        self._spec(name)
        dom = self.domains.get(name)
        if dom is None or dom.state not in (DomainState.RUNNING, DomainState.PAUSED):
            state = dom.state.value if dom else "not running"
            raise InvalidState(f"{name} is {state}")
        return dom

    def _guests(self) -> builtins.list[str]:
        return sorted(n for n, d in self.domains.items() if not d.spec.is_sys_sec)

    def _backend(self, spec: DomainSpec) -> Backend:
        try:
            return self.backends[spec.backend]
        except KeyError:
            raise ToolstackError(f"{spec.name} wants backend {spec.backend!r}, which this "
                                 f"dom0 does not have (it has: {', '.join(self.backends)})"
                                 ) from None

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _emit(self, kind: EventKind, dom: Domain, detail: str = "") -> None:
        event = DomainEvent(kind, dom.spec.name, dom.domid, detail)
        log.info("%s %s (domain %d) %s", kind.value, dom.spec.name, dom.domid, detail)
        for queue in list(self._subscribers):
            if queue.full():
                # A consumer that stopped reading loses old events, not dom0's memory.
                queue.get_nowait()
            queue.put_nowait(event)


def _display_order(name: str) -> tuple[int, str]:
    return (0 if name == "sys-sec" else 1, name)


def _from_run_state(run: RunState) -> DomainState:
    return {RunState.CREATED: DomainState.CREATED, RunState.RUNNING: DomainState.RUNNING,
            RunState.PAUSED: DomainState.PAUSED, RunState.SHUTDOWN: DomainState.SHUTDOWN,
            RunState.CRASHED: DomainState.CRASHED}.get(run, DomainState.SHUTDOWN)


def _state_name(value: bytes | None) -> str:
    try:
        return parse_state(value).name
    except ValueError:
        return repr(value)
