"""Stand-ins for the rules and flow sides of the IDS contract, for detector/engine unit tests.

`FakeRule` is the `Rule` interface reduced to one content on one buffer; `FakeFlows` gives
every 5-tuple one flow and hands the engine a packet inspection (plus any app buffers a
test queues for the next packet).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netsec.inspection import PKT, Inspection
from netsec.packet import Packet


class Any_:
    def match(self, _value: Any) -> bool:
        return True


class OneOf:
    def __init__(self, *values: Any) -> None:
        self.values = set(values)

    def match(self, value: Any) -> bool:
        return value in self.values


@dataclass
class Spec:
    track: str
    count: int
    seconds: float
    type: str | None = None


@dataclass
class FakeRule:
    sid: int
    content: bytes = b""
    buffer: str = PKT
    nocase: bool = False
    action: str = "alert"
    proto: str = "tcp"
    src: Any = field(default_factory=Any_)
    dst: Any = field(default_factory=Any_)
    sport: Any = field(default_factory=Any_)
    dport: Any = field(default_factory=Any_)
    bidirectional: bool = False
    gid: int = 1
    rev: int = 1
    msg: str = "test rule"
    classtype: str | None = None
    priority: int = 3
    metadata: dict = field(default_factory=dict)
    app_proto: str | None = None
    threshold: Any = None
    detection_filter: Any = None
    noalert: bool = False
    fast_pattern: bool = True
    flowbits_set: tuple[str, ...] = ()
    flowbits_read: tuple[str, ...] = ()
    calls: int = 0

    @property
    def buffers(self) -> set[str]:
        return {self.buffer} if self.content else set()

    @property
    def prefilter(self) -> tuple[str, bytes, bool] | None:
        if self.content and self.fast_pattern:
            return (self.buffer, self.content, self.nocase)
        return None

    def match(self, ins: Inspection) -> bool:
        self.calls += 1
        if ins.flow is not None and not set(self.flowbits_read) <= ins.flow.flowbits:
            return False
        if not self.content:
            return True
        data = ins.buffers.get(self.buffer)
        if data is None and self.buffer == PKT:
            data = ins.buffers.get("stream")
        items = data if isinstance(data, list) else [data or b""]
        needle = self.content.lower() if self.nocase else self.content
        return any(needle in (d.lower() if self.nocase else d) for d in items)

    def postmatch(self, ins: Inspection) -> None:
        if ins.flow is not None:
            ins.flow.flowbits.update(self.flowbits_set)


@dataclass
class FakeFlow:
    flow_id: int
    app_proto: str = ""
    established: bool = True
    flowbits: set = field(default_factory=set)
    detect_state: dict = field(default_factory=dict)
    alerted: bool = False


class FakeFlows:
    def __init__(self) -> None:
        self.flows: dict[tuple, FakeFlow] = {}
        self.app: list[tuple[dict, int]] = []  # buffers and tx_id for the next packet

    def process(self, pkt: Packet) -> list[Inspection]:
        key = (pkt.ip_proto, *sorted([(pkt.src, pkt.sport), (pkt.dst, pkt.dport)]))
        flow = self.flows.get(key)
        if flow is None:
            flow = self.flows[key] = FakeFlow(len(self.flows) + 1)
            flow.client = (pkt.src, pkt.sport)  # type: ignore[attr-defined]
        to_server = (pkt.src, pkt.sport) == flow.client  # type: ignore[attr-defined]
        out = [Inspection(pkt, flow, to_server, {PKT: pkt.payload})]
        for buffers, tx in self.app:
            out.append(Inspection(pkt, flow, to_server, buffers, tx))
        self.app = []
        return out

    def drain_events(self) -> list:
        return []

    def flush(self) -> list:
        return []


def packet(n: int, payload: bytes = b"", src: str = "10.0.0.1", dst: str = "10.0.0.2",
           sport: int = 40000, dport: int = 80, proto: int = 6, ts: float = 1.7e9) -> Packet:
    p = Packet(ts=ts + n, pcap_cnt=n, raw=b"\0" * (54 + len(payload)))
    p.ip_version, p.src, p.dst, p.ip_proto = 4, src, dst, proto
    p.sport, p.dport, p.payload, p.ttl, p.ip_len = sport, dport, payload, 64, 40 + len(payload)
    p.tcp_flags = 0x18
    return p
