"""The pipeline: Packet -> flow table -> inspections -> detector -> verdict and EVE events.

Sans-IO: `Engine.judge(packet)` returns the packet's verdict and the flow it belongs to
(`process` the verdict alone) and queues EVE events, `take_events()` hands them out. The
offline CLI feeds it a pcap; the inline NFQUEUE datapath feeds it queued packets and
carries out the verdicts.

IDS vs IPS (`simulate_ips`, Suricata's `--simulate-ips`): without it every rule only
alerts (action `allowed`); with it drop/reject rules block the packet (`blocked`
alerts plus a `drop` event) and every later packet of that flow is dropped too. A reject
is the verdict of the packet that matched; the flow's later packets are only dropped, as in
Suricata (a flow drop), so the ends are answered once.

Stream bypass (`stream_bypass`, Suricata's `stream.bypass`): once a TCP direction is past
the reassembly depth the engine sees nothing more of it, and every accepted packet of the
flow from then on gets BYPASS, which an inline shell turns into "the rest of this flow skips
the engine". One direction is enough: a bulk transfer (a download, an upload) is one-way,
so waiting for both would never hand it off; the price, as in Suricata, is that the other
direction is not inspected after that either.

Anomalies: every name in `Packet.events` becomes one EVE `anomaly` event (decoder, stream
or app-layer, see `eve.anomaly`). A name in `netsec.flow.config.LIMIT_EVENTS` says the flow
is no longer fully inspected; the packet then gets the exception policy
(`EngineConfig.exception_policy`, Suricata's `exception-policy` values):

- `drop-flow`, `reject` (IPS only): this packet is dropped (rejected), and the flow's rest;
- `drop-packet` (IPS only): this packet is dropped;
- `pass-flow`, `bypass`: neither this packet nor the flow's rest is inspected;
- `pass-packet`: this packet is not inspected;
- `ignore`: inspection goes on with what the engine still sees;
- `auto`: Suricata's: `drop-flow` in IPS mode, `ignore` in IDS mode.
In IDS mode the drop and reject policies act as `ignore`, as nothing is blocked there.

The default is `ignore`, not Suricata's `auto`: Suricata applies exception policies to
memcaps, midstream pickups and parser errors, not to the stream depth or the body limits,
past which it passes traffic uninspected; most of LIMIT_EVENTS are those limits, and `auto`
would end every download larger than the response-body-limit. An owner who wants the wall
to fail closed sets `exception-policy=drop-flow`.
"""
from __future__ import annotations

import enum
import gc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from netsec import eve, files
from netsec.detect.detector import BLOCKING, Detector, Match
from netsec.flow.config import LIMIT_EVENTS
from netsec.flow.stream import DEPTH
from netsec.inspection import PKT, FlowView, Inspection
from netsec.packet import Packet

# Suricata's exception policy values (docs: configuration/exception-policies).
EXCEPTION_POLICIES = ("auto", "drop-packet", "drop-flow", "reject", "bypass", "pass-packet",
                      "pass-flow", "ignore")


class Verdict(enum.Enum):
    """What becomes of a packet, as Suricata's packet actions; an inline shell maps them to
    its datapath's (domains/syssec/inline.py: NFQUEUE's accept, drop, accept with a mark)."""

    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"   # dropped, and the shell answers the ends (netsec/reject.py)
    # Accepted, and the rest of the flow need not come to the engine (Suricata's bypass).
    BYPASS = "bypass"


@dataclass(frozen=True, slots=True)
class Judgement:
    """A packet's verdict and the flow it belongs to (None: a packet without one), for a
    shell that acts per flow (ipsd bypasses flows to destinations judged clean)."""

    verdict: Verdict
    flow: FlowView | None = None


class FlowSource(Protocol):
    """What the engine needs from the flow table (netsec.flow.FlowTable)."""

    def process(self, pkt: Packet) -> list[Inspection]: ...

    def drain_events(self) -> list[Any]: ...  # FlowEnd / AppEvent records since last call

    def flush(self) -> list[Any]: ...  # end every flow; its records


def settle_heap() -> None:
    """Put what is alive now (the rules, their compiled databases) out of the cyclic
    collector's sight. A program calls this once its engine is built and after each
    reload: otherwise every full collection, one each few thousand packets, walks every
    rule object again (1,000 ET rules: 47k -> 56k packets/s, bench/ids.py). The previous
    rule set is unfrozen and collected first, so a reload does not leak it."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass(slots=True)
class EngineConfig:
    simulate_ips: bool = False
    prefilter: str | None = None   # "hyperscan" | "python" | None (automatic)
    # classification.config descriptions by lower-case classtype (EVE's alert.category).
    categories: dict[str, str] = field(default_factory=dict)
    # What a packet past a limit gets (see the module docstring); one of EXCEPTION_POLICIES.
    exception_policy: str = "ignore"
    # Suricata's stream.bypass: BYPASS for a flow's packets once a direction is past the
    # depth (the module docstring).
    stream_bypass: bool = False

    def __post_init__(self) -> None:
        if self.exception_policy not in EXCEPTION_POLICIES:
            raise ValueError(f"exception-policy: {self.exception_policy!r} is not one of "
                             f"{', '.join(EXCEPTION_POLICIES)}")

    def policy(self) -> str:
        """The exception policy in effect: `auto` resolved, drops void in IDS mode."""
        p = self.exception_policy
        if p == "auto":
            return "drop-flow" if self.simulate_ips else "ignore"
        if not self.simulate_ips and p in ("drop-flow", "drop-packet", "reject"):
            return "ignore"
        return p


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
    anomalies: int = 0
    exception_policy: int = 0   # packets an exception policy other than ignore acted on


class Engine:
    def __init__(self, rules: Sequence[Any], flows: FlowSource,
                 config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._policy = self.config.policy()
        self.detector = Detector(rules, prefilter=self.config.prefilter)
        self.flows = flows
        self._want_files(rules)
        self.counters = Counters()
        self.first_ts: float | None = None
        self.last_ts = 0.0
        self.flows_ended = 0
        self._events: list[eve.Event] = []
        # Files that ended on a packet, for a consumer that scans them (ipsd's FileHold);
        # kept only when it asks (collect_files), or they would pile up.
        self.collect_files = False
        self._files: list[Any] = []

    def take_files(self) -> list[Any]:
        """The files (netsec.files' File) that ended on the packets judged since the last
        call (not those ended with their flow: no packet is left to hold)."""
        done, self._files = self._files, []
        return done

    def replace_rules(self, rules: Sequence[Any]) -> None:
        """Swap in a new rule set (a reload): the detector is built first and replaced in
        one assignment, so a packet sees the old rules or the new ones, never a mix; the
        flow table, and every flow's state, stays."""
        self.detector = Detector(rules, prefilter=self.config.prefilter)
        self._want_files(rules)

    def _want_files(self, rules: Sequence[Any]) -> None:
        # a flow source without file tracking (a test's fake) has nothing to switch
        want = getattr(self.flows, "want_files", None)
        if want is not None:
            want(files.rules_use_files(rules))

    def process(self, pkt: Packet) -> Verdict:
        """The packet's verdict, for callers that need no flow (a pcap, a bundle's tests)."""
        return self.judge(pkt).verdict

    def judge(self, pkt: Packet) -> Judgement:
        self._count(pkt)
        if pkt.no_l4:   # no L4 header to track a flow by (netsec.packet)
            inspections = [Inspection(pkt, None, True, {PKT: pkt.payload})]
        else:
            inspections = self.flows.process(pkt)
        flow = inspections[0].flow if inspections else None
        first = inspections[0] if inspections else Inspection(pkt)
        if pkt.events:
            self._anomalies(pkt, first)
        if flow is not None and flow.detect_state.get("dropped"):
            self._drop(pkt, first)
            return Judgement(Verdict.DROP, flow)
        if self._policy != "ignore" and not LIMIT_EVENTS.isdisjoint(pkt.events):
            verdict = self._exception(pkt, first)
        else:
            verdict = self._detect(pkt, inspections, first)
        self._flow_records()
        if verdict is Verdict.ACCEPT and self._bypassed(pkt, flow):
            verdict = Verdict.BYPASS
        return Judgement(verdict, flow)

    def _detect(self, pkt: Packet, inspections: list[Inspection], first: Inspection) -> Verdict:
        flow = first.flow
        verdict = Verdict.ACCEPT
        ips = self.config.simulate_ips
        for m in self.detector.inspect(inspections):
            blocks = ips and m.action in BLOCKING
            if m.alert:
                self._events.append(self._alert(m, "blocked" if blocks else "allowed"))
                self.counters.alerts += 1
                if flow is not None:
                    flow.alerted = True
            if blocks:
                verdict = Verdict.DROP if m.action == "drop" else Verdict.REJECT
        if verdict is not Verdict.ACCEPT:
            if flow is not None:
                flow.detect_state["dropped"] = True
            self._drop(pkt, first)
        return verdict

    def _bypassed(self, pkt: Packet, flow: FlowView | None) -> bool:
        if not self.config.stream_bypass or flow is None:
            return False
        if DEPTH in pkt.events:   # raised once, by the segment that reached the depth
            flow.detect_state["bypass"] = True
        return bool(flow.detect_state.get("bypass"))

    def _anomalies(self, pkt: Packet, ins: Inspection) -> None:
        flow = ins.flow
        for name in pkt.events:
            self.counters.anomalies += 1
            self._events.append(eve.anomaly(
                pkt, name, flow_id=flow.flow_id if flow else None,
                app_proto=flow.app_proto if flow else None))

    def _exception(self, pkt: Packet, ins: Inspection) -> Verdict:
        """The exception policy for a packet past a limit (module docstring); no detection."""
        self.counters.exception_policy += 1
        policy, flow = self._policy, ins.flow
        verdict = Verdict.ACCEPT
        if policy in ("drop-flow", "reject", "drop-packet"):
            verdict = Verdict.REJECT if policy == "reject" else Verdict.DROP
            if flow is not None and policy != "drop-packet":
                flow.detect_state["dropped"] = True
            self._drop(pkt, ins)
        elif policy in ("pass-flow", "bypass") and flow is not None:
            flow.detect_state["pass"] = True
        return verdict

    def finish(self) -> list[eve.Event]:
        """End of input: every flow ends (its records are logged), then a stats event."""
        self._to_eve(self.flows.flush())
        return self.take_events() + [self.stats_event()]

    def _flow_records(self) -> None:
        records = self.flows.drain_events()
        if records:
            self._to_eve(records)

    def _to_eve(self, records: list[Any]) -> None:
        for r in records:
            if hasattr(r, "file"):
                if self.collect_files and r.packet is not None:
                    self._files.append(r.file)
                self._events.append(eve.fileinfo(r.flow, r.file.eve(), r.http, r.file.tx_id,
                                                 r.file.to_server, r.packet))
            elif hasattr(r, "record"):
                self._events.append(eve.app_record(r.flow, r.proto, r.record, r.tx_id,
                                                   r.to_server, r.packet))
            else:
                self.flows_ended += 1
                self._events.append(eve.flow_end(r.flow))

    def emit(self, event: eve.Event) -> None:
        """Queue an event produced outside detection (flow ends, app-layer records)."""
        self._events.append(event)

    def take_events(self) -> list[eve.Event]:
        events, self._events = self._events, []
        return events

    def stats_event(self, flow_stats: dict[str, int] | None = None) -> eve.Event:
        """Suricata's `stats` record, the subset this engine counts."""
        c = self.counters
        decoder = {"pkts": c.pkts, "bytes": c.bytes, "ipv4": c.ipv4, "ipv6": c.ipv6,
                   "tcp": c.tcp, "udp": c.udp, "icmpv4": c.icmpv4, "icmpv6": c.icmpv6}
        uptime = int(self.last_ts - self.first_ts) if self.first_ts is not None else 0
        flow = {"total": self.flows_ended, **(flow_stats or {})}
        return eve.stats(self.last_ts, uptime, decoder, flow, c.alerts)

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
        proto = pkt.ip_proto
        if proto == 6:
            c.tcp += 1
        elif proto == 17:
            c.udp += 1
        elif proto == 1:
            c.icmpv4 += 1
        elif proto == 58:
            c.icmpv6 += 1

    def _drop(self, pkt: Packet, ins: Inspection) -> None:
        self.counters.drops += 1
        flow = ins.flow
        self._events.append(eve.drop(
            pkt, flow_id=flow.flow_id if flow else None,
            app_proto=flow.app_proto if flow else None, to_server=ins.to_server))

    def _alert(self, m: Match, action: str) -> eve.Event:
        rule, ins = m.rule, m.ins
        flow = ins.flow
        category = self.config.categories.get((rule.classtype or "").lower(), "")
        return eve.alert(
            ins.packet, action=action, gid=rule.gid, sid=rule.sid, rev=rule.rev,
            msg=rule.msg, category=category, severity=rule.priority or 3,
            metadata=rule.metadata or None,
            flow_id=flow.flow_id if flow else None,
            app_proto=flow.app_proto if flow else None,
            to_server=ins.to_server, tx_id=ins.tx_id)
