"""Which of many rules could match a packet's addresses, in two bisects instead of a check per rule.

ET Open has thousands of rules without a fast pattern whose headers carry long IP lists
(tor, ciarmy, drop, botcc...). Checking each on every new flow costs milliseconds; this
index answers "the rules whose src set holds A and whose dst set holds B" from sorted
interval boundaries, like Suricata's IP-only radix tree. It returns candidates: ports,
direction details and everything else are still checked rule by rule.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from netsec.rules.addresses import address_number


class _Side:
    """One side (src or dst) of many rules: ids matching any address, and per segment."""

    def __init__(self, items: Sequence[tuple[int, Any]]) -> None:
        self.any: frozenset[int] = frozenset(i for i, m in items if m.is_any)
        edges: list[tuple[int, int, int]] = []  # (position, +1 start / -1 end, id)
        for i, m in items:
            if m.is_any:
                continue
            ivs = m._set  # the matcher's sorted disjoint intervals (rules' IntervalSet)
            for lo, hi in zip(ivs.los, ivs.his, strict=True):
                edges.append((lo, 1, i))
                edges.append((hi + 1, -1, i))
        edges.sort()
        self.starts: list[int] = []
        self.sets: list[frozenset[int]] = []
        active: dict[int, int] = {}
        k = 0
        while k < len(edges):
            pos = edges[k][0]
            while k < len(edges) and edges[k][0] == pos:
                _, step, i = edges[k]
                n = active.get(i, 0) + step
                if n:
                    active[i] = n
                else:
                    active.pop(i, None)
                k += 1
            self.starts.append(pos)
            self.sets.append(frozenset(active))

    def lookup(self, addr: str) -> frozenset[int]:
        n = address_number(addr)
        if n is None:
            return frozenset()
        k = bisect_right(self.starts, n) - 1
        return self.sets[k] if k >= 0 else frozenset()


class _Pair:
    """Both sides of a set of rules: ids whose src holds `src` and dst holds `dst`."""

    def __init__(self, rules: Sequence[tuple[int, Any]]) -> None:
        self.src = _Side([(i, r.src) for i, r in rules])
        self.dst = _Side([(i, r.dst) for i, r in rules])
        self.both_any = self.src.any & self.dst.any

    def lookup(self, src: str, dst: str) -> set[int]:
        s, d = self.src.lookup(src), self.dst.lookup(dst)
        out = set(self.both_any)
        out.update(s & d, s & self.dst.any, self.src.any & d)
        return out


class AddressIndex:
    """Candidate rule ids for (src, dst), bidirectional (`<>`) rules also seen reversed."""

    def __init__(self, rules: Sequence[tuple[int, Any]]) -> None:
        self.fwd = _Pair(rules)
        bidir = [(i, r) for i, r in rules if r.bidirectional]
        self.rev = _Pair(bidir) if bidir else None

    def candidates(self, src: str, dst: str) -> set[int]:
        out = self.fwd.lookup(src, dst)
        if self.rev is not None:
            out |= self.rev.lookup(dst, src)
        return out
