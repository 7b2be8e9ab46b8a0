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


# Anomaly names (in `Packet.events`) that say a flow is no longer fully inspected: one of
# the limits above was reached. The flow table raises them; the engine logs each as an EVE
# `anomaly` and, in IPS mode, applies the owner's exception policy (drop or pass the flow).
LIMIT_EVENTS = frozenset({
    "stream.reassembly_depth_reached",
    "stream.reassembly_ooo_limit_reached",
    "applayer.http.request_header_too_long",
    "applayer.http.response_header_too_long",
    "applayer.http.request_body_limit_reached",
    "applayer.http.response_body_limit_reached",
    "applayer.tls.record_too_long",
})
