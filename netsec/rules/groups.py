"""The list grammar addresses and ports share: `any`, `!x`, `[a,b,[c,!d]]`, `$VAR`.

A group is parsed once into sorted, merged integer intervals; matching is one bisect.
Inside a list, negated items are taken away from the union of the others (from
everything when a list has only negated items), as Suricata does.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable

from netsec.rules.errors import RuleError

Intervals = list[tuple[int, int]]
_MAX_DEPTH = 16


def _merge(ivs: Intervals) -> Intervals:
    out: Intervals = []
    for lo, hi in sorted(ivs):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _complement(ivs: Intervals, top: int) -> Intervals:
    out: Intervals = []
    nxt = 0
    for lo, hi in ivs:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= top:
        out.append((nxt, top))
    return out


def _split_top(text: str, what: str) -> list[str]:
    items: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise RuleError(f"{what}: unbalanced ']' in {text!r}")
        if ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise RuleError(f"{what}: unbalanced '[' in {text!r}")
    items.append("".join(cur))
    return items


class GroupParser:
    """Parses one kind of group (addresses or ports) to intervals."""

    def __init__(self, what: str, top: int, atom: Callable[[str], tuple[int, int]],
                 variable: Callable[[str], str]) -> None:
        self.what, self.top, self.atom, self.variable = what, top, atom, variable

    def parse(self, text: str, depth: int = 0) -> Intervals:
        if depth > _MAX_DEPTH:
            raise RuleError(f"{self.what}: variables nest too deep in {text!r}")
        text = text.strip()
        negated = False
        while text.startswith("!"):
            negated, text = not negated, text[1:].strip()
        if not text:
            raise RuleError(f"{self.what}: empty value")
        if text.startswith("["):
            if not text.endswith("]"):
                raise RuleError(f"{self.what}: unbalanced list {text!r}")
            pos: Intervals = []
            neg: Intervals = []
            for item in _split_top(text[1:-1], self.what):
                item = item.strip()
                if not item:
                    raise RuleError(f"{self.what}: empty item in {text!r}")
                if item.startswith("!"):
                    neg.extend(self.parse(item[1:], depth + 1))
                else:
                    pos.extend(self.parse(item, depth + 1))
            ivs = _merge(pos) if pos else [(0, self.top)]
            if neg:
                ivs = _merge(_complement(_merge(_complement(ivs, self.top) + neg), self.top))
        elif text == "any":
            ivs = [(0, self.top)]
        elif text.startswith("$"):
            ivs = self.parse(self.variable(text[1:]), depth + 1)
        else:
            ivs = [self.atom(text)]
        ivs = _merge(ivs)
        if negated:
            ivs = _complement(ivs, self.top)
        if not ivs:
            raise RuleError(f"{self.what}: {text!r} matches nothing")
        return ivs


class IntervalSet:
    """Membership in sorted disjoint intervals; `is_any` lets callers skip the check."""

    __slots__ = ("los", "his", "is_any")

    def __init__(self, ivs: Intervals, top: int) -> None:
        self.los = [lo for lo, _ in ivs]
        self.his = [hi for _, hi in ivs]
        self.is_any = ivs == [(0, top)]

    def contains(self, n: int) -> bool:
        i = bisect_right(self.los, n) - 1
        return i >= 0 and n <= self.his[i]
