"""Domid allocation: onwards from the last one given, wrapping, as Xen's allocator does."""
from __future__ import annotations

from pathlib import Path

import pytest

from dom0.model import ToolstackError
from dom0.toolstack.domains import Registry
from dom0.toolstack.domids import MAX_DOMID, DomidAllocator, next_domid


def test_a_destroyed_domains_domid_is_not_given_again_at_once() -> None:
    # 10..12 given, 10 and 11 destroyed since: the next is 13, not 10.
    assert next_domid({0, 12}, 10, after=13) == 13


def test_a_restarted_toolstack_goes_on_after_the_highest_domid_in_use() -> None:
    assert next_domid({0, 10, 14}, 10, after=None) == 15
    assert next_domid({0}, 10, after=None) == 10


def test_the_allocator_wraps_past_the_last_domid_to_the_free_ones() -> None:
    assert next_domid({0, MAX_DOMID - 1, MAX_DOMID, 10}, 10, after=None) == 11
    assert next_domid({10}, 10, after=MAX_DOMID + 1) == 11


def test_no_free_domid_is_an_error() -> None:
    with pytest.raises(ToolstackError, match="no free domid left"):
        next_domid(set(range(MAX_DOMID - 1, MAX_DOMID + 1)), MAX_DOMID - 1, after=None)


class Store:
    """/local/domain's entries: all the allocator reads."""

    def __init__(self, *domids: int) -> None:
        self.domids = set(domids)

    async def ls(self, path: str) -> list[str]:
        assert path == "/local/domain"
        return [str(d) for d in sorted(self.domids)]


async def test_the_allocator_remembers_the_last_domid_it_gave() -> None:
    store = Store(0)
    registry = Registry({}, store, {}, Path("/unused"))  # type: ignore[arg-type]
    allocator = DomidAllocator(10)
    given = []
    for _ in range(3):
        given.append(domid := await allocator.allocate(registry))
        store.domids.add(domid)
    assert given == [10, 11, 12]
    store.domids -= {10, 11}
    assert await allocator.allocate(registry) == 13
