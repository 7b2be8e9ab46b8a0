"""The flow table's settings, with Suricata's defaults (suricata.yaml `flow-timeouts`,
`stream`, `app-layer.protocols.http.libhtp.default-config`)."""
from __future__ import annotations

from dataclasses import dataclass, field


def _timeouts() -> dict[str, dict[str, float]]:
    # seconds of capture time without a packet before a flow in that state ends
    return {
        "tcp": {"new": 60, "established": 600, "closed": 60},
        "udp": {"new": 30, "established": 300, "closed": 0},
        "icmp": {"new": 30, "established": 300, "closed": 0},
        "default": {"new": 30, "established": 300, "closed": 0},
    }


@dataclass(slots=True)
class FlowConfig:
    midstream: bool = False            # stream.midstream: track TCP flows picked up mid-way
    inline: bool = False               # stream.inline: IPS mode (read by the engine; in-order
                                       # data is inspected at once in both modes)
    reassembly_depth: int = 1 << 20    # stream.reassembly.depth per direction; 0 = unlimited
    stream_context: int = 2048         # preceding bytes repeated in each `stream` buffer
    checksums: bool = False            # `-k all`: packets with bad checksums are not tracked
    timeouts: dict[str, dict[str, float]] = field(default_factory=_timeouts)
    request_body_limit: int = 100 * 1024   # libhtp request-body-limit
    response_body_limit: int = 100 * 1024  # libhtp response-body-limit
    max_ooo_bytes: int = 1 << 20       # out-of-order data buffered per direction
