"""The pipeline: Packet -> flow table -> inspections -> detector -> verdict and EVE events.

Sans-IO: `Engine.process(packet)` returns the packet's verdict and queues EVE events,
`take_events()` hands them out. The offline CLI feeds it a pcap; the inline NFQUEUE
datapath feeds it queued packets and carries out the verdicts.

IDS vs IPS (`simulate_ips`, Suricata's `--simulate-ips`): without it every rule only
alerts (action `allowed`); with it drop/reject rules block the packet (`blocked`
alerts plus a `drop` event) and every later packet of that flow is dropped too.
"""
from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from netsec import eve
from netsec.detect.detector import BLOCKING, Detector, Match
from netsec.inspection import Inspection
from netsec.packet import Packet


class Verdict(enum.Enum):
    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"


class FlowSource(Protocol):
    """What the engine needs from the flow table (netsec.flow.FlowTable)."""

    def process(self, pkt: Packet) -> list[Inspection]: ...


@dataclass(slots=True)
class EngineConfig:
    simulate_ips: bool = False
    prefilter: str | None = None   # "hyperscan" | "python" | None (automatic)
    # Suricata's classification descriptions by classtype (EVE's alert.category).
    categories: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Counters:
    pkts: int = 0
    bytes: int = 0
    ipv4: int = 0
    ipv6: int = 0
    tcp: int = 0
    udp: int = 0
    icmpv4: int = 0
    icmpv6: int = 0
    alerts: int = 0
    drops: int = 0


_PROTO_COUNTER = {6: "tcp", 17: "udp", 1: "icmpv4", 58: "icmpv6"}


class Engine:
    def __init__(self, rules: Sequence[Any], flows: FlowSource,
                 config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.detector = Detector(rules, prefilter=self.config.prefilter)
        self.flows = flows
        self.counters = Counters()
        self.first_ts: float | None = None
        self.last_ts = 0.0
        self._events: list[eve.Event] = []
        self._started = time.monotonic()

    def process(self, pkt: Packet) -> Verdict:
        self._count(pkt)
        inspections = self.flows.process(pkt)
        flow = inspections[0].flow if inspections else None
        if flow is not None and flow.detect_state.get("dropped"):
            self._drop(pkt, inspections[0])
            return flow.detect_state["dropped"]
        verdict = Verdict.ACCEPT
        ips = self.config.simulate_ips
        for m in self.detector.inspect(inspections):
            blocks = ips and m.action in BLOCKING
            if m.alert:
                self._events.append(self._alert(m, "blocked" if blocks else "allowed"))
                self.counters.alerts += 1
            if blocks:
                verdict = Verdict.DROP if m.action == "drop" else Verdict.REJECT
        if verdict is not Verdict.ACCEPT:
            if flow is not None:
                flow.detect_state["dropped"] = verdict
            self._drop(pkt, inspections[0] if inspections else Inspection(pkt))
        return verdict

    def emit(self, event: eve.Event) -> None:
        """Queue an event produced outside detection (flow ends, app-layer records)."""
        self._events.append(event)

    def take_events(self) -> list[eve.Event]:
        events, self._events = self._events, []
        return events

    def stats_event(self, flow_stats: dict[str, int] | None = None) -> eve.Event:
        c = self.counters
        decoder = {"pkts": c.pkts, "bytes": c.bytes, "ipv4": c.ipv4, "ipv6": c.ipv6,
                   "tcp": c.tcp, "udp": c.udp, "icmpv4": c.icmpv4, "icmpv6": c.icmpv6}
        uptime = int(self.last_ts - self.first_ts) if self.first_ts is not None else 0
        return eve.stats(self.last_ts, uptime, decoder, flow_stats or {}, c.alerts)

    def _count(self, pkt: Packet) -> None:
        c = self.counters
        c.pkts += 1
        c.bytes += len(pkt.raw)
        if self.first_ts is None:
            self.first_ts = pkt.ts
        self.last_ts = pkt.ts
        if pkt.ip_version == 4:
            c.ipv4 += 1
        elif pkt.ip_version == 6:
            c.ipv6 += 1
        name = _PROTO_COUNTER.get(pkt.ip_proto)
        if name:
            setattr(c, name, getattr(c, name) + 1)

    def _drop(self, pkt: Packet, ins: Inspection) -> None:
        self.counters.drops += 1
        flow = ins.flow
        self._events.append(eve.drop(
            pkt, flow_id=flow.flow_id if flow else None,
            app_proto=flow.app_proto if flow else None, to_server=ins.to_server))

    def _alert(self, m: Match, action: str) -> eve.Event:
        rule, ins = m.rule, m.ins
        flow = ins.flow
        category = (getattr(rule, "category", None)
                    or self.config.categories.get(rule.classtype or "", "")
                    or "")
        return eve.alert(
            ins.packet, action=action, gid=rule.gid, sid=rule.sid, rev=rule.rev,
            msg=rule.msg, category=category, severity=rule.priority or 3,
            metadata=rule.metadata or None,
            flow_id=flow.flow_id if flow else None,
            app_proto=flow.app_proto if flow else None,
            to_server=ins.to_server, tx_id=ins.tx_id)
