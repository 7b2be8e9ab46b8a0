"""Domain events reach every subscriber; one that stopped reading loses its oldest events,
not dom0's memory."""
from __future__ import annotations

import asyncio
from pathlib import Path

from dom0.backends.base import DomainHandle
from dom0.config import DomainSpec
from dom0.model import DomainState, EventKind
from dom0.toolstack import events as events_module
from dom0.toolstack.domains import Domain
from dom0.toolstack.events import Events

SPEC = DomainSpec(name="work", kind="app")
WORK = Domain(SPEC, 7, "uuid-7", DomainHandle(7, SPEC, Path("/unused")), DomainState.RUNNING)


async def test_every_subscriber_gets_each_event() -> None:
    events = Events()
    a, b = events.subscribe(), events.subscribe()
    # A subscription counts from its first read on, as an async generator's body runs then.
    reads = [asyncio.ensure_future(anext(s)) for s in (a, b)]
    await asyncio.sleep(0)      # one turn of the loop: both reads wait on their queues
    events.emit(EventKind.STARTED, WORK, "hi")
    got = await asyncio.wait_for(asyncio.gather(*reads), 5)
    assert [(e.kind, e.domain, e.domid, e.detail) for e in got] == \
        [(EventKind.STARTED, "work", 7, "hi")] * 2
    await a.aclose()
    await b.aclose()


async def test_a_subscriber_that_stopped_reading_loses_the_oldest_events() -> None:
    events = Events()
    sub = events.subscribe()
    first = asyncio.ensure_future(anext(sub))
    await asyncio.sleep(0)
    events.emit(EventKind.CREATED, WORK, "0")
    assert (await asyncio.wait_for(first, 5)).detail == "0"
    for n in range(1, events_module.QUEUE_SIZE + 6):
        events.emit(EventKind.STARTED, WORK, str(n))
    assert (await asyncio.wait_for(anext(sub), 5)).detail == "6"
    await sub.aclose()
