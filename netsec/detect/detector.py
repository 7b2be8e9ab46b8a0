"""The detector: which rules run on a packet's inspections, and which of them alert.

Build time groups rules by IP protocol and splits each group into rules with a fast
pattern (found by the prefilter) and rules without one (always candidates). Per packet,
candidates come from one prefilter scan per buffer plus the always-candidates; header
results (addresses, ports, direction) are cached per flow and direction, so a flow's
later packets cost dict lookups.

Suricata semantics kept here:
- evaluation order is Suricata's default `action-order` (pass, drop, reject, alert),
  flowbits setters before readers, then priority, then load order;
- a matching `pass` rule stops evaluation of the packet, and passes its whole flow;
- a packet rule alerts at most once per packet (whether on `pkt` or `stream`); an
  app-layer rule alerts at most once per transaction;
- `noalert` rules and thresholded matches run `postmatch` (flowbits) but do not alert.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from netsec.detect.addrindex import AddressIndex
from netsec.detect.prefilter import Prefilter
from netsec.detect.thresholds import Thresholds
from netsec.inspection import PKT, STREAM, Inspection
from netsec.rules.rule import Rule

ACTION_ORDER = {"pass": 0, "drop": 1, "reject": 2, "rejectsrc": 2, "rejectdst": 2,
                "rejectboth": 2, "alert": 3}
BLOCKING = frozenset({"drop", "reject", "rejectsrc", "rejectdst", "rejectboth"})

_ALL = (1, 6, 17, 58, 132, 0)  # 0 stands for every other IP protocol
_PROTO_NUMBERS: dict[str, tuple[int, ...]] = {
    "tcp": (6,), "tcp-pkt": (6,), "tcp-stream": (6,), "udp": (17,), "sctp": (132,),
    "icmp": (1, 58), "icmpv4": (1,), "icmpv6": (58,), "ip": _ALL, "ipv4": _ALL,
    "ipv6": _ALL, "pkthdr": _ALL, "any": _ALL,
}
_APP_ON_UDP = frozenset({"dns", "dhcp", "ntp", "tftp", "snmp", "sip", "quic", "krb5",
                         "ikev2", "ike", "nfs", "dcerpc", "smb"})
_PAYLOAD = frozenset({PKT, STREAM})
# Per-flow caches that name this detector's rules by index; a flow carried over a rule
# reload (Engine.replace_rules) drops them, as Suricata resets a flow's detect state when
# its de_ctx version changes. Verdicts already given ("pass", the engine's "dropped") stay.
_RULE_CACHES = ("hdr_ts", "hdr_tc", "always", "tx")
_GENERATIONS = itertools.count(1)   # a number, not the detector: flows must not pin it
_INDEX_FROM = 8  # patternless rules in a group before their addresses get an index


@dataclass(slots=True)
class Match:
    """A rule that matched a packet fully and passed its thresholds."""

    rule: Rule
    ins: Inspection
    alert: bool  # False for noalert rules and suppressed (thresholded) matches

    @property
    def action(self) -> str:
        return self.rule.action


def proto_numbers(rule: Rule) -> tuple[int, ...]:
    proto = str(rule.proto).lower()
    if proto in _PROTO_NUMBERS:
        return _PROTO_NUMBERS[proto]
    # An application protocol name (`alert http ...`): TCP, and UDP where it runs there.
    return (6, 17) if proto in _APP_ON_UDP else (6,)


def _flowbits_rank(rule: Rule) -> int:
    """Suricata orders flowbit setters before rules that read them.

    A rule's postmatch actions are its flowbits changes, so a rule with any counts as a
    setter; readers are known only where the rule says so (`flowbits_read`).
    """
    sets = getattr(rule, "flowbits_set", None) or getattr(rule, "post", None)
    reads = getattr(rule, "flowbits_read", None)
    if sets and not reads:
        return 0
    if sets and reads:
        return 1
    if reads:
        return 2
    return 3


# Suricata's evaluation order: action, flowbits rank, priority, load order.
_Order = tuple[int, int, int, int]


class _Compiled:
    """One rule with what the hot path needs precomputed."""

    __slots__ = ("idx", "rule", "order", "payload", "app_buffers", "app_proto",
                 "threshold", "detection_filter", "src", "dst", "sport", "dport", "bidir")

    def __init__(self, idx: int, rule: Rule) -> None:
        self.idx = idx
        self.rule = rule
        self.order = (ACTION_ORDER.get(rule.action, 3), _flowbits_rank(rule),
                      rule.priority or 3, idx)
        buffers = set(rule.buffers)
        self.payload = bool(buffers & _PAYLOAD)
        self.app_buffers = frozenset(buffers - _PAYLOAD)
        self.app_proto = rule.app_proto
        self.threshold = rule.threshold
        self.detection_filter = rule.detection_filter
        self.src, self.dst, self.sport, self.dport = rule.src, rule.dst, rule.sport, rule.dport
        self.bidir = rule.bidirectional

    def header_match(self, src: str, sport: int, dst: str, dport: int) -> bool:
        if (self.src.match(src) and self.dst.match(dst) and self.sport.match(sport)
                and self.dport.match(dport)):
            return True
        return bool(self.bidir and self.src.match(dst) and self.dst.match(src)
                    and self.sport.match(dport) and self.dport.match(sport))

    def wants(self, ins: Inspection, kind: int) -> bool:
        """Does this inspection step carry what the rule inspects?"""
        if self.app_proto and (ins.flow is None or ins.flow.app_proto != self.app_proto):
            return False
        if self.app_buffers:
            return kind == _APP and self.app_buffers.issubset(ins.buffers)
        if self.payload:
            return kind != _APP
        # Header-only rules: once per packet, or once per transaction for `alert http`-style
        # rules without buffers.
        return kind == (_APP if self.app_proto else _PACKET)


_PACKET, _STREAM, _APP = 0, 1, 2


def _stale_stream_match(rule: Rule, ins: Inspection) -> bool:
    """Did a stream match need none of this packet's new bytes?

    Each `stream` buffer repeats earlier bytes as context (so a pattern split across
    segments is seen whole); a match found entirely in that context already alerted when
    those bytes were new, and Suricata does not alert on it again. When the context
    matches too, the new bytes plus a fast pattern's length of context decide whether
    there is also a new occurrence.
    """
    data = ins.buffers.get(STREAM)
    new = len(ins.packet.payload)
    if not isinstance(data, bytes) or not new or new >= len(data):
        return False

    def matches(part: bytes) -> bool:
        return bool(rule.match(Inspection(ins.packet, ins.flow, ins.to_server,
                                          {STREAM: part}, ins.tx_id)))

    if not matches(data[:-new]):
        return False
    overlap = len(rule.prefilter[1]) - 1 if rule.prefilter else len(data)
    return not matches(data[-(new + overlap):])


def _with_payload(ins: Inspection, inspections: list[Inspection]) -> Inspection:
    """The tx step `ins` with the packet and stream buffers of the same packet added."""
    buffers = dict(ins.buffers)
    for other in inspections:
        if other.tx_id is None:
            for name in _PAYLOAD:
                data = other.buffers.get(name)
                if data is not None:
                    buffers[name] = data
    return Inspection(ins.packet, ins.flow, ins.to_server, buffers, ins.tx_id,
                      ins.stream_new)


class _Group:
    """The rules of one IP protocol: a prefilter and the always-candidates per step kind."""

    def __init__(self, proto: int, rules: list[_Compiled], backend: str | None) -> None:
        self.proto = proto
        self.always: list[list[_Compiled]] = [[], [], []]
        entries = []
        for c in rules:
            pf = c.rule.prefilter
            # A payload fast pattern of a rule that also needs app-layer buffers is found
            # on the packet step, but the rule runs on the tx step: no prefilter for it.
            if pf is not None and pf[1] and not (c.app_buffers and pf[0] == PKT):
                entries.append((c.idx, pf[0], pf[1], pf[2]))
                continue
            if c.app_buffers:
                self.always[_APP].append(c)
            elif c.payload:
                self.always[_PACKET].append(c)
                self.always[_STREAM].append(c)
            else:
                self.always[_APP if c.app_proto else _PACKET].append(c)
        self.prefilter = Prefilter(entries, backend=backend)
        # Many patternless rules (IP lists): find the address matches by index.
        self.indexes = [AddressIndex([(c.idx, c.rule) for c in rs])
                        if len(rs) > _INDEX_FROM else None for rs in self.always]


class Detector:
    """Runs a packet's inspections against the rule set; see the module docstring."""

    def __init__(self, rules: Sequence[Rule], prefilter: str | None = None) -> None:
        self.generation = next(_GENERATIONS)
        self.compiled = [_Compiled(i, r) for i, r in enumerate(rules)]
        per_proto: dict[int, list[_Compiled]] = {p: [] for p in _ALL}
        for c in self.compiled:
            for p in proto_numbers(c.rule):
                per_proto[p].append(c)
        self.groups = {p: _Group(p, rs, prefilter) for p, rs in per_proto.items()}
        self.backend = self.groups[6].prefilter.backend
        self.thresholds = Thresholds()

    def inspect(self, inspections: Iterable[Inspection]) -> list[Match]:
        """All full matches for one packet's inspections, in Suricata's evaluation order."""
        work: list[tuple[_Order, _Compiled, Inspection]] = []
        flow = None
        inspections = list(inspections)
        for ins in inspections:
            flow = ins.flow
            if flow is not None:
                state = flow.detect_state
                if state.get("detector") != self.generation:
                    for cache in _RULE_CACHES:
                        state.pop(cache, None)
                    state["detector"] = self.generation
                if state.get("pass"):
                    return []
            work.extend(self._candidates(ins))
        if not work:
            return []
        work.sort(key=lambda w: w[0])
        matches: list[Match] = []
        alerted: set[int] = set()
        for _, c, ins in work:
            if c.idx in alerted:
                continue
            if ins.tx_id is not None and c.app_buffers and ins.flow is not None:
                done = ins.flow.detect_state.setdefault("tx", set())
                key = (c.idx, ins.tx_id, ins.to_server)
                if key in done:
                    continue
            else:
                key = None
            rule = c.rule
            if c.payload and c.app_buffers:
                # Payload and app-layer buffers in one rule (`content:..; dns_query; ..`):
                # Suricata inspects the payload part on the packet that brought the
                # transaction's data, so its tx step sees this packet's payload too.
                if not rule.match(_with_payload(ins, inspections)):
                    continue
            elif not rule.match(ins) or (c.payload and _stale_stream_match(rule, ins)):
                continue
            alerted.add(c.idx)
            if key is not None:
                done.add(key)
            rule.postmatch(ins)
            if rule.action == "pass":
                if flow is not None:
                    flow.detect_state["pass"] = True
                return matches  # pass rules do not alert; the packet is done
            matches.append(Match(rule, ins, self._allowed(c, ins)))
        return matches

    def _allowed(self, c: _Compiled, ins: Inspection) -> bool:
        if c.rule.noalert:
            return False
        for spec in (c.detection_filter, c.threshold):
            if spec is None:
                continue
            kind = getattr(spec, "type", None) or "detection_filter"
            if not self.thresholds.allow(c.idx, kind, spec.track, spec.count,
                                         spec.seconds, ins):
                return False
        return True

    def _candidates(self, ins: Inspection) -> list[tuple[_Order, _Compiled, Inspection]]:
        pkt = ins.packet
        # A lone fragment has no L4 header: only protocol-less rules see it (Suricata).
        group = self.groups[0] if pkt.no_l4 else \
            self.groups.get(pkt.ip_proto) or self.groups[0]
        buffers = ins.buffers
        if ins.tx_id is not None or not (PKT in buffers or STREAM in buffers):
            kind = _APP
        else:
            kind = _STREAM if STREAM in buffers and PKT not in buffers else _PACKET
        hits: set[int] | None = None
        scan = group.prefilter.scan
        for name, data in buffers.items():
            if not data:
                continue
            # Payload rules' fast patterns are looked for in the stream as well.
            found = scan(PKT if name == STREAM else name, data)
            if found:
                hits = found if hits is None else hits | found
        out = []
        if hits:
            header = self._header_cache(ins)
            compiled = self.compiled
            for i in hits:
                c = compiled[i]
                ok = header.get(i)
                if ok is None:
                    ok = header[i] = c.header_match(pkt.src, pkt.sport, pkt.dst, pkt.dport)
                if ok and c.wants(ins, kind):
                    out.append((c.order, c, ins))
        if group.always[kind]:
            for c in self._always(group, kind, ins):
                if kind != _APP or c.app_buffers.issubset(buffers):
                    out.append((c.order, c, ins))
        return out

    @staticmethod
    def _always(group: _Group, kind: int, ins: Inspection) -> list[_Compiled]:
        """The group's patternless rules whose header and app_proto fit, cached per flow.

        The cache key holds everything that decides it (direction, step kind, the flow's
        app_proto so far), so a flow pays the header checks once per key, not per packet.
        """
        flow = ins.flow
        if flow is not None:
            key = (group.proto, kind, ins.to_server, flow.app_proto)
            cache: dict[tuple[int, int, bool, str], list[_Compiled]] = \
                flow.detect_state.setdefault("always", {})
            found = cache.get(key)
            if found is not None:
                return found
        pkt = ins.packet
        app = flow.app_proto if flow is not None else None
        rules = group.always[kind]
        index = group.indexes[kind]
        if index is not None:
            ids = index.candidates(pkt.src, pkt.dst)
            rules = [c for c in rules if c.idx in ids]
        found = [c for c in rules
                 if (not c.app_proto or c.app_proto == app)
                 and c.header_match(pkt.src, pkt.sport, pkt.dst, pkt.dport)]
        if flow is not None:
            cache[key] = found
        return found

    @staticmethod
    def _header_cache(ins: Inspection) -> dict[int, bool]:
        """Header results per flow and direction (addresses and ports do not change)."""
        if ins.flow is None:
            return {}
        state = ins.flow.detect_state
        key = "hdr_ts" if ins.to_server else "hdr_tc"
        cache = state.get(key)
        if cache is None:
            cache = state[key] = {}
        return cache
