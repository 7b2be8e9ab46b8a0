"""Domid allocation: onwards from the last one given, wrapping, as Xen's allocator does."""
from __future__ import annotations

from collections.abc import Set

from dom0.model import ToolstackError
from dom0.toolstack.domains import Registry

MAX_DOMID = 32751            # DOMID_FIRST_RESERVED - 1, as on Xen
# domids tried, one after the other, where the host holds some already (another platform's).
DOMID_TRIES = 64


def next_domid(used: Set[int], first: int, after: int | None) -> int:
    """The first domid from `first` up not in `used`, looking from `after` (the one after
    the last given; None when none was, then after the highest in use) and wrapping. A
    domid used again at once would meet watches and device tasks of the domain that had
    it, in sys-sec's agent still catching up with its removal."""
    start = after if after is not None else \
        max((d + 1 for d in used if first <= d <= MAX_DOMID), default=first)
    span = MAX_DOMID + 1 - first
    for i in range(span):
        domid = first + (start - first + i) % span
        if domid not in used:
            return domid
    raise ToolstackError("no free domid left")


class DomidAllocator:
    def __init__(self, first_domid: int) -> None:
        self.first_domid = first_domid
        self._after: int | None = None

    async def allocate(self, registry: Registry) -> int:
        used = {int(e) for e in await registry.store.ls("/local/domain") if e.isdigit()}
        # After the await, with none until the caller records the domain: starts in
        # flight at the same time never get the same domid.
        used |= {d.domid for d in registry.domains.values()}
        domid = next_domid(used, self.first_domid, self._after)
        self._after = domid + 1
        return domid
