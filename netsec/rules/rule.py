"""A parsed rule and the builder its keywords fill in at setup.

`Rule.match` runs the rule's checks (flow, flowbits, header keywords) and then one
inspection chain per buffer; `Rule.postmatch` applies flowbits changes once the whole
rule matched. Everything is compiled at setup so a match call only compares.

Contents without a sticky buffer form the payload chain: it inspects `pkt` and `stream`
(only `pkt` for UDP/ICMP, `flow:no_stream` or dsize rules; only `stream` for
`flow:only_stream`), so `Rule.buffers` names those, and a payload fast pattern is
reported under `pkt` (the engine scans the stream with the same patterns).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netsec.inspection import PKT, Inspection
from netsec.rules.addresses import AddressMatcher
from netsec.rules.content_inspection import MATCH, Content, Ctx, Item, run
from netsec.rules.errors import RuleError
from netsec.rules.ports import PortMatcher

# Suricata evaluates actions in this order (action-order in suricata.yaml).
ACTION_ORDER = ("pass", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth", "alert")
ACTIONS = frozenset(ACTION_ORDER)
PAYLOAD = "payload"  # the chain of contents without a sticky buffer: pkt and/or stream

Check = Callable[[Inspection], bool]
Transform = Callable[[bytes], bytes]
Setup = Callable[["Builder", str | None], None]   # a keyword filling in the builder


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """threshold / detection_filter, parsed; the engine keeps the counters."""

    type: str       # limit | threshold | both (detection_filter: "detection_filter")
    track: str      # by_src | by_dst | by_rule | by_both | by_flow
    count: int
    seconds: int


class Chain:
    """The items of one buffer (after its transforms); any element of a list buffer may match."""

    __slots__ = ("buffer", "sources", "transforms", "transform_names", "items")

    def __init__(self, buffer: str, transform_names: tuple[str, ...],
                 transforms: tuple[Transform, ...]) -> None:
        self.buffer = buffer
        self.sources: tuple[str, ...] = (buffer,)
        self.transform_names = transform_names
        self.transforms = transforms
        self.items: list[Item] = []

    def _one(self, data: bytes) -> bool:
        for t in self.transforms:
            data = t(data)
        return run(self.items, 0, Ctx(data), 0) == MATCH

    def match(self, ins: Inspection) -> bool:
        bufs = ins.buffers
        for name in self.sources:
            data = bufs.get(name)
            if data is None:
                continue
            if isinstance(data, list):
                for d in data:
                    if self._one(d):
                        return True
            elif self._one(data):
                return True
        return False


class Rule:
    __slots__ = (
        "text", "where", "action", "proto", "src", "sport", "dst", "dport", "bidirectional",
        "sid", "gid", "rev", "msg", "classtype", "priority", "metadata", "references",
        "target", "app_proto", "buffers", "prefilter", "flow_conditions", "threshold",
        "detection_filter", "noalert", "checks", "chains", "post", "ip_proto", "flowbits_set",
        "flowbits_read",
    )

    def __init__(self) -> None:
        self.text = ""
        self.where = "<string>:1"
        self.action = "alert"
        self.proto = "ip"
        self.ip_proto: int | None = None  # the IP protocol the rule's proto implies
        self.src: AddressMatcher
        self.dst: AddressMatcher
        self.sport: PortMatcher
        self.dport: PortMatcher
        self.bidirectional = False
        self.sid = 0
        self.gid = 1
        self.rev = 0
        self.msg = ""
        self.classtype: str | None = None
        self.priority = 3
        self.metadata: dict[str, list[str]] = {}
        self.references: list[str] = []
        self.target: str | None = None
        self.app_proto: str | None = None
        self.buffers: set[str] = set()
        self.prefilter: tuple[str, bytes, bool] | None = None
        self.flow_conditions: frozenset[str] = frozenset()
        self.threshold: ThresholdSpec | None = None
        self.detection_filter: ThresholdSpec | None = None
        self.noalert = False
        # flowbit names this rule changes / tests, so the engine can order setters first
        self.flowbits_set: set[str] = set()
        self.flowbits_read: set[str] = set()
        self.checks: tuple[Check, ...] = ()
        self.chains: tuple[Chain, ...] = ()
        self.post: tuple[Callable[[Inspection], None], ...] = ()

    def match(self, ins: Inspection) -> bool:
        for check in self.checks:
            if not check(ins):
                return False
        for chain in self.chains:
            if not chain.match(ins):
                return False
        return True

    def postmatch(self, ins: Inspection) -> None:
        for p in self.post:
            p(ins)

    def __repr__(self) -> str:
        return f"Rule({self.action} sid={self.sid} {self.msg!r})"


class Builder:
    """Setup-time state while a rule's options are read in order."""

    def __init__(self, rule: Rule, shared: dict[str, Any] | None = None) -> None:
        self.rule = rule
        # State several rules share at match time (xbits' host bits), one per rule set.
        self.shared: dict[str, Any] = {} if shared is None else shared
        self.sticky: str | None = None          # the current sticky buffer
        self.transforms: list[tuple[str, Transform]] = []
        self.chains: dict[tuple[str, tuple[str, ...]], Chain] = {}
        self.last: Content | None = None        # the content modifiers apply to
        self.content_chain: Chain | None = None  # the chain holding `last`
        self.last_chain: Chain | None = None     # the chain of the last item of any kind
        self.last_item: Item | None = None
        # After base64_data, items go to the decoder's own list instead of a chain.
        self.redirect: list[Item] | None = None
        self.sublists: list[list[Item]] = []
        self.checks: list[Check] = []
        self.post: list[Callable[[Inspection], None]] = []
        self.flow: set[str] = set()
        self.extracted: set[str] = set()        # byte_extract variable names
        self.seen: set[str] = set()

    def chain(self, buffer: str | None = None) -> Chain:
        """The chain content goes to now: the given buffer, or the sticky one, or payload."""
        if buffer is None:
            buffer = self.sticky or PAYLOAD
            names = tuple(n for n, _ in self.transforms) if self.sticky else ()
            funcs = tuple(f for _, f in self.transforms) if self.sticky else ()
        else:
            names, funcs = (), ()
        key = (buffer, names)
        ch = self.chains.get(key)
        if ch is None:
            ch = self.chains[key] = Chain(buffer, names, funcs)
        return ch

    def add(self, item: Item, buffer: str | None = None, chain: Chain | None = None) -> None:
        """Append to `chain` when given, else to the buffer's (or the current) chain."""
        self.last_item = item
        if chain is None and buffer is None and self.redirect is not None:
            self.redirect.append(item)
            if isinstance(item, Content):
                self.last, self.content_chain = item, None
            return
        if chain is not None:
            ch = chain
        elif buffer is None and self.sticky is None and item.relative and self.last_chain:
            # Without a sticky buffer, a relative keyword joins the list of the item it
            # follows (Suricata's DetectGetLastSMFromLists), e.g. after `http_uri`.
            ch = self.last_chain
        else:
            ch = self.chain(buffer)
        ch.items.append(item)
        self.last_chain = ch
        if isinstance(item, Content):
            self.last = item
            self.content_chain = ch

    def content(self, keyword: str) -> Content:
        if self.last is None:
            raise RuleError(f"{keyword}: needs a preceding content")
        return self.last

    def move_last(self, buffer: str, keyword: str) -> None:
        """A legacy content modifier (`http_uri`): the last content moves to that buffer."""
        c = self.content(keyword)
        ch = self.content_chain
        if ch is None or ch.buffer != PAYLOAD:
            raise RuleError(f"{keyword}: the content is already in a sticky buffer")
        ch.items.remove(c)
        self.add(c, buffer)

    def var(self, text: str, keyword: str) -> int | str:
        """An integer, or the name of a variable a byte_extract set earlier."""
        text = text.strip()
        try:
            return int(text, 0) if text.lower().startswith(("0x", "-0x")) else int(text)
        except ValueError:
            if text in self.extracted:
                return text
            raise RuleError(f"{keyword}: {text!r} is neither a number nor a byte_extract "
                            "variable") from None

    def finish(self, pkt_sources: tuple[str, ...]) -> None:
        r = self.rule
        chains = []
        for items in self.sublists:
            _link(items)
        for ch in self.chains.values():
            if not ch.items:
                continue
            _link(ch.items)
            if ch.buffer == PAYLOAD:
                ch.sources = pkt_sources
            chains.append(ch)
            r.buffers.update(ch.sources)
        r.chains = tuple(chains)
        r.checks = tuple(self.checks)
        r.post = tuple(self.post)
        r.flow_conditions = frozenset(self.flow)
        r.prefilter = _prefilter(chains)


def _link(items: list[Item]) -> None:
    """Tell each item whether the next one depends on where it matched."""
    for a, b in zip(items, items[1:], strict=False):
        a.relnext = b.relative
        if isinstance(a, Content):
            a.within_next = isinstance(b, Content) and b.has_within


_PREFILTER_SAFE = {"dotprefix", "to_lowercase"}


def pattern_strength(pat: bytes) -> int:
    """Suricata's tie-break between equally long patterns: rarer-looking bytes score more."""
    seen: set[int] = set()
    score = 0
    for c in pat:
        if c in seen:
            score += 1
            continue
        seen.add(c)
        if 65 <= c <= 90 or 97 <= c <= 122:
            score += 3
        elif 32 <= c <= 126 or c in (0x00, 0x01, 0xFF):
            score += 4
        else:
            score += 6
    return score


def _buffer_priority(buffer: str) -> int:
    # Suricata 7: application buffers first, then the payload, http.method last.
    if buffer == "http.method":
        return 0
    return 1 if buffer == PAYLOAD else 2


def _prefilter(chains: list[Chain]) -> tuple[str, bytes, bool] | None:
    """The fast pattern, chosen as Suricata does: the `fast_pattern` content, else among
    the positive contents of the highest-priority buffer the longest, then the strongest.

    A content in a transformed buffer stands in only when its pattern still implies
    a pattern of the raw buffer (dotprefix drops the dot, to_lowercase means nocase).
    """
    best: tuple[tuple[int, int, int, int], str, bytes, bool] | None = None
    for ch in chains:
        if not set(ch.transform_names) <= _PREFILTER_SAFE:
            continue
        buffer = PKT if ch.buffer == PAYLOAD else ch.buffer
        prio = _buffer_priority(ch.buffer)
        for it in ch.items:
            if not isinstance(it, Content) or it.negated:
                continue
            pat, nocase = it.raw, it.nocase
            if it.fp_slice:
                o, n = it.fp_slice
                pat = pat[o:o + n]
            if "dotprefix" in ch.transform_names and pat.startswith(b"."):
                pat = pat[1:]
            if "to_lowercase" in ch.transform_names:
                nocase = True
            if not pat:
                continue
            rank = (int(it.fast_pattern), prio, len(it.raw), pattern_strength(it.raw))
            if best is None or rank > best[0]:
                best = (rank, buffer, pat, nocase)
    return None if best is None else (best[1], best[2], best[3])


__all__ = ["ACTIONS", "ACTION_ORDER", "Builder", "Chain", "Rule", "ThresholdSpec"]
