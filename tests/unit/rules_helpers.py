"""Small builders for the rules tests: a rule from its options, an inspection from bytes."""
from __future__ import annotations

from dataclasses import dataclass, field

from netsec.inspection import PKT, Inspection
from netsec.packet import Packet
from netsec.rules import Rule, parse_rule


@dataclass
class FakeFlow:
    flow_id: int = 1
    app_proto: str = ""
    established: bool = True
    flowbits: set[str] = field(default_factory=set)
    detect_state: dict = field(default_factory=dict)


def rule(options: str, proto: str = "tcp", header: str = "any any -> any any") -> Rule:
    return parse_rule(f"alert {proto} {header} ({options} sid:1;)")


def ins(payload: bytes = b"", buffers: dict | None = None, flow: FakeFlow | None = None,
        to_server: bool = True, **pkt_fields: object) -> Inspection:
    p = Packet()
    p.ip_version, p.ip_proto, p.payload = 4, 6, payload
    for k, v in pkt_fields.items():
        setattr(p, k, v)
    bufs = {PKT: payload} if buffers is None else buffers
    return Inspection(p, flow if flow is not None else FakeFlow(), to_server, bufs)


def matches(options: str, payload: bytes = b"", **kw: object) -> bool:
    return rule(options).match(ins(payload, **kw))
