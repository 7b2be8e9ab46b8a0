"""What every job of the toolstack shares: the config's specs, the domains it runs, a lock
per domain name, and the lookups on them."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dom0 import layout
from dom0.backends.base import Backend, DomainHandle, RunState
from dom0.config import DomainSpec
from dom0.model import DomainInfo, DomainState, InvalidState, ToolstackError, UnknownDomain

# What a domain that stopped by itself, or was stopped, looks like to its backend.
STOPPED = frozenset({RunState.SHUTDOWN, RunState.CRASHED, RunState.ABSENT})


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


class Registry:
    def __init__(self, specs: dict[str, DomainSpec], store: Store,
                 backends: dict[str, Backend], xs_rundir: Path,
                 uplink: Uplink | None = None) -> None:
        self.specs = specs
        self.store = store
        self.backends = backends
        self.xs_rundir = xs_rundir
        self.uplink = uplink
        self.domains: dict[str, Domain] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def info(self, name: str) -> DomainInfo:
        spec = self.spec(name)
        dom = self.domains.get(name)
        return DomainInfo(
            name=spec.name, domid=dom.domid if dom else None, uuid=dom.uuid if dom else None,
            kind=spec.kind, backend=spec.backend, memory_mb=spec.memory_mb, vcpus=spec.vcpus,
            policy=spec.policy, state=dom.state if dom else DomainState.DEFINED,
            cpu_time=time.monotonic() - dom.started_at if dom and dom.state in (
                DomainState.RUNNING, DomainState.PAUSED) else 0.0,
            users=spec.users,
        )

    def names(self) -> list[str]:
        """Every defined domain, sys-sec first."""
        return sorted(self.specs, key=display_order)

    def spec(self, name: str) -> DomainSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise UnknownDomain(name) from None

    def sys_sec_spec(self) -> DomainSpec:
        return next(s for s in self.specs.values() if s.is_sys_sec)

    def sys_sec(self) -> Domain | None:
        return self.domains.get(self.sys_sec_spec().name)

    def running(self, name: str) -> Domain:
        self.spec(name)
        dom = self.domains.get(name)
        if dom is None or dom.state not in (DomainState.RUNNING, DomainState.PAUSED):
            state = dom.state.value if dom else "not running"
            raise InvalidState(f"{name} is {state}")
        return dom

    def guests(self) -> list[str]:
        return sorted(n for n, d in self.domains.items() if not d.spec.is_sys_sec)

    def backend(self, spec: DomainSpec) -> Backend:
        try:
            return self.backends[spec.backend]
        except KeyError:
            raise ToolstackError(f"{spec.name} wants backend {spec.backend!r}, which this "
                                 f"dom0 does not have (it has: {', '.join(self.backends)})"
                                 ) from None

    def handle(self, domid: int, spec: DomainSpec) -> DomainHandle:
        return DomainHandle(domid, spec, self.xs_rundir / "domain" / str(domid))

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())


def display_order(name: str) -> tuple[int, str]:
    return (0 if name == "sys-sec" else 1, name)


def creating_marker(domid: int) -> layout.Node:
    """There while a create or a start is under way: what a restarted dom0d rolls back."""
    return layout.Node(f"{layout.libxl_path(domid)}/hyperwall/creating", "1")
