"""A STAND-IN for dom0.toolstack.Toolstack, in memory, for testing the API, auth and CLI.

It implements exactly the interface the control API programs against, with the real
model's records and errors, and no domains behind them: it lets those layers be tested
without root, xenstore or backends. It is not a second toolstack; nothing outside the
tests uses it.
"""
from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dom0.backends.base import ExecResult
from dom0.config import DomainSpec
from dom0.model import (
    DomainEvent,
    DomainInfo,
    DomainState,
    EventKind,
    InvalidState,
    UnknownDomain,
)


def standard_specs() -> dict[str, DomainSpec]:
    return {s.name: s for s in (
        DomainSpec("sys-sec", "sys-sec", policy="uplink"),
        DomainSpec("work", "app", memory_mb=1024, vcpus=2, policy="filtered", users=("alice",)),
        DomainSpec("family", "app", policy="internet", users=("alice", "bob")),
        DomainSpec("untrusted", "disposable", policy="offline"),
    )}


class StandInToolstack:
    def __init__(self, specs: dict[str, DomainSpec] | None = None) -> None:
        self.specs = specs if specs is not None else standard_specs()
        self.states: dict[str, DomainState] = {}
        self.domids: dict[str, int] = {}
        self.calls: list[tuple[str, ...]] = []   # (operation, name, ...) in order
        self.exec_result = ExecResult(0, b"", b"")
        self.fail_with: BaseException | None = None  # raised by the next operation
        self.subscribed = asyncio.Event()            # set while a subscriber listens
        self._subscribers: set[asyncio.Queue[DomainEvent]] = set()
        self._next_domid = 1
        self.scan_updates: list[dict[str, Any]] = []  # what scan and recover_domain yield

    # -- the interface ---------------------------------------------------------------------

    def list(self) -> list[DomainInfo]:
        return [self.get(name) for name in sorted(
            self.specs, key=lambda n: (not self.specs[n].is_sys_sec, n))]

    def get(self, name: str) -> DomainInfo:
        spec = self._spec(name)
        return DomainInfo(
            name=name, domid=self.domids.get(name),
            uuid=f"00000000-0000-0000-0000-{self.domids[name]:012d}" if name in self.domids
            else None, kind=spec.kind, backend=spec.backend, memory_mb=spec.memory_mb,
            vcpus=spec.vcpus, policy=spec.policy,
            state=self.states.get(name, DomainState.DEFINED),
            cpu_time=1.5 if name in self.domids else 0.0, users=spec.users)

    async def create(self, name: str) -> DomainInfo:
        self._record("create", name)
        if name in self.domids:
            raise InvalidState(f"{name!r} already exists")
        self.domids[name] = self._next_domid
        self._next_domid += 1
        self._set(name, DomainState.CREATED, EventKind.CREATED)
        return self.get(name)

    async def start(self, name: str) -> DomainInfo:
        self._record("start", name)
        if name not in self.domids:
            await self.create(name)
        self._set(name, DomainState.RUNNING, EventKind.STARTED)
        return self.get(name)

    async def shutdown(self, name: str, *, reboot: bool = False, timeout: float = 30.0) -> None:
        self._record("shutdown", name, f"reboot={reboot}", f"timeout={timeout}")
        self._running(name)
        self._set(name, DomainState.SHUTDOWN, EventKind.SHUTDOWN)

    async def destroy(self, name: str) -> None:
        self._record("destroy", name)
        if name not in self.domids:
            raise InvalidState(f"{name!r} is not created")
        domid = self.domids.pop(name)
        self.states.pop(name)
        self._emit(DomainEvent(EventKind.DESTROYED, name, domid))

    async def pause(self, name: str) -> None:
        self._record("pause", name)
        self._running(name)
        self._set(name, DomainState.PAUSED, EventKind.PAUSED)

    async def unpause(self, name: str) -> None:
        self._record("unpause", name)
        if self.states.get(name) != DomainState.PAUSED:
            raise InvalidState(f"{name!r} is not paused")
        self._set(name, DomainState.RUNNING, EventKind.UNPAUSED)

    async def exec(self, name: str, argv: list[str], *, timeout: float = 60.0,
                   stdin: bytes | None = None) -> ExecResult:
        self._record("exec", name, *argv, f"timeout={timeout}", f"stdin={stdin!r}")
        self._running(name)
        return self.exec_result

    async def subscribe(self) -> AsyncIterator[DomainEvent]:
        queue: asyncio.Queue[DomainEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        self.subscribed.set()
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)
            if not self._subscribers:
                self.subscribed.clear()

    async def up(self) -> list[DomainInfo]:
        self._record("up")
        for name in ("sys-sec", "work"):
            if self.states.get(name) != DomainState.RUNNING:
                await self.start(name)
        return [info for info in self.list() if info.state == DomainState.RUNNING]

    async def down(self) -> None:
        self._record("down")
        for info in reversed(self.list()):
            if info.state == DomainState.RUNNING:
                await self.shutdown(info.name)

    async def scan(self, name: str, paths: Sequence[str] | None = None, *,
                   apply_policy: bool = True) -> AsyncIterator[dict[str, Any]]:
        self._record("scan", name, *(paths or []), f"apply_policy={apply_policy}")
        self._spec(name)
        for update in self.scan_updates:
            yield update

    async def recover_domain(self, name: str, action: str = "") -> AsyncIterator[dict[str, Any]]:
        self._record("recover", name, action)
        self._spec(name)
        for update in self.scan_updates:
            yield update

    # -- for tests -------------------------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def _record(self, *call: str) -> None:
        self.calls.append(call)
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        if len(call) > 1:
            self._spec(call[1])

    def _spec(self, name: str) -> DomainSpec:
        if name not in self.specs:
            raise UnknownDomain(name)
        return self.specs[name]

    def _running(self, name: str) -> None:
        if self.states.get(name) != DomainState.RUNNING:
            raise InvalidState(f"{name!r} is not running")

    def _set(self, name: str, state: DomainState, kind: EventKind) -> None:
        self.states[name] = state
        self._emit(DomainEvent(kind, name, self.domids[name]))

    def _emit(self, event: DomainEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)



@contextmanager
def short_dir() -> Iterator[Path]:
    """A fresh directory under /tmp with a short path (sun_path holds 107 bytes), readable by
    every user so that unprivileged callers can reach a socket in it."""
    path = Path(tempfile.mkdtemp(prefix="hw-api-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
