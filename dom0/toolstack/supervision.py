"""Watching the domains that run: one that stops or crashes by itself is reported and torn
down (dom0 does not restart it: its owner or its autostart probe does); each round also
runs the autostart probes."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from dom0.backends.base import RunState
from dom0.model import DomainState, EventKind
from dom0.toolstack.domains import STOPPED, Registry
from dom0.toolstack.events import Events
from dom0.toolstack.teardown import teardown

log = logging.getLogger("hyperwall.toolstack")

SUPERVISE_INTERVAL = 1.0


def stopped_by_itself(run: RunState) -> EventKind | None:
    """The event of a running domain its backend reports as `run`; None while it runs."""
    if run not in STOPPED:
        return None
    return EventKind.CRASHED if run is RunState.CRASHED else EventKind.SHUTDOWN


class Supervisor:
    def __init__(self, registry: Registry, events: Events,
                 each_round: Callable[[], Awaitable[None]]) -> None:
        self.registry = registry
        self.events = events
        self.each_round = each_round
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _supervise(self) -> None:
        # A backend gives no event when a domain dies by itself, so poll; a released domain
        # (@releaseDomain, as on Xen) is looked at at once.
        wake = asyncio.Event()

        async def on_release() -> None:
            async for _ in self.registry.store.watch("@releaseDomain"):
                wake.set()
        watcher = asyncio.get_running_loop().create_task(on_release())
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SUPERVISE_INTERVAL):
                        await wake.wait()
                wake.clear()
                await self.check_domains()
                await self.each_round()
        finally:
            watcher.cancel()
            # Its unwatch must reach xenstore before the connection closes.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    async def check_domains(self) -> None:
        reg = self.registry
        for dom in list(reg.domains.values()):
            lock = reg.lock(dom.spec.name)
            if lock.locked() or dom.state not in (DomainState.RUNNING, DomainState.PAUSED):
                continue
            try:
                run = await reg.backend(dom.spec).state(dom.handle)
            except Exception:
                log.exception("checking %s", dom.spec.name)
                continue
            kind = stopped_by_itself(run)
            if kind is not None:
                async with lock:
                    if reg.domains.get(dom.spec.name) is not dom:
                        continue
                    self.events.emit(kind, dom, "stopped by itself")
                    await teardown(reg, self.events, dom)
