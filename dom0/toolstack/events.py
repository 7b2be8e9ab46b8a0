"""Domain events (created, started, vif connected, shutdown, crashed, destroyed) to every
subscriber, as xl's event channel gives them."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

from dom0.model import DomainEvent, EventKind
from dom0.toolstack.domains import Domain

log = logging.getLogger("hyperwall.toolstack")
QUEUE_SIZE = 1000


class Events:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[DomainEvent]] = set()

    async def subscribe(self) -> AsyncGenerator[DomainEvent, None]:
        queue: asyncio.Queue[DomainEvent] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    def emit(self, kind: EventKind, dom: Domain, detail: str = "") -> None:
        self.note(kind, dom.spec.name, dom.domid, detail)

    def note(self, kind: EventKind, name: str, domid: int | None, detail: str = "") -> None:
        """An event of a domain that may not be running (a scan of a stopped domain's
        files, a step of resetting it)."""
        event = DomainEvent(kind, name, domid, detail)
        log.info("%s %s (domain %s) %s", kind.value, name, domid, detail)
        for queue in list(self._subscribers):
            if queue.full():
                # A consumer that stopped reading loses old events, not dom0's memory.
                queue.get_nowait()
            queue.put_nowait(event)
