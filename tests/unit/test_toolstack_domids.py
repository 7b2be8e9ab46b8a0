"""Domid allocation: onwards from the last one given, wrapping, as Xen's allocator does."""
from __future__ import annotations

from pathlib import Path

from dom0.toolstack import MAX_DOMID, Toolstack


class Store:
    """/local/domain's entries: all the allocator reads."""

    def __init__(self, *domids: int) -> None:
        self.domids = set(domids)

    async def ls(self, path: str) -> list[str]:
        assert path == "/local/domain"
        return [str(d) for d in sorted(self.domids)]


async def allocate(ts: Toolstack, store: Store) -> int:
    domid = await ts._allocate_domid()
    store.domids.add(domid)
    return domid


async def test_a_destroyed_domains_domid_is_not_given_again_at_once() -> None:
    store = Store(0)
    ts = Toolstack({}, store, {}, Path("/unused"), first_domid=10)  # type: ignore[arg-type]
    assert [await allocate(ts, store) for _ in range(3)] == [10, 11, 12]
    store.domids -= {10, 11}
    assert await allocate(ts, store) == 13


async def test_a_restarted_toolstack_goes_on_after_the_highest_domid_in_use() -> None:
    store = Store(0, 10, 14)
    ts = Toolstack({}, store, {}, Path("/unused"), first_domid=10)  # type: ignore[arg-type]
    assert await allocate(ts, store) == 15


async def test_the_allocator_wraps_past_the_last_domid_to_the_free_ones() -> None:
    store = Store(0, MAX_DOMID - 1, MAX_DOMID, 10)
    ts = Toolstack({}, store, {}, Path("/unused"), first_domid=10)  # type: ignore[arg-type]
    assert await allocate(ts, store) == 11
