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
    # Body bytes already inspected that are repeated before a packet's new ones, so a
    # pattern split across packets is found (Suricata pads to request/response-body-
    # inspect-window, 4096/16384; a smaller window keeps 1-byte segments cheap).
    body_context: int = 2048
    http_field_limit: int = 18000      # libhtp's hard field limit: one header or start line
    http_header_limit: int = 64 * 1024  # a whole header block (libhtp has none: a bound)
    max_ooo_bytes: int = 1 << 20       # out-of-order data buffered per direction
    tls_record_limit: int = (1 << 14) + 2048  # TLSCiphertext's largest fragment (RFC 8446)
    tls_handshake_limit: int = 256 * 1024     # one handshake message (a certificate chain)
    # app-layer.protocols.http.parser: "libhtp" (OISF LibHTP through cffi, Suricata's parser)
    # or "python" (netsec.app.http); README "HTTP parser" says why libhtp is the default
    http_parser: str = "libhtp"
    # HTTP bodies tracked as files (netsec.files: hashes, type, EVE fileinfo, the file
    # keywords, the scanner in flight), each kept up to this many bytes (`--set
    # file-store.stream-depth`). A flow whose file is open reads past reassembly_depth up
    # to this much of the file.
    file_max_size: int = 16 * 1024 * 1024
    # Whether files are tracked (`--set file-store.enabled`). None: only when something
    # asks for them, a loaded rule with a file keyword (the engine says so through
    # FlowTable.want_files) or a scanner (ipsd sets True); tracking costs a copy of every
    # body and reading past the depth, so nobody pays it who does not use it.
    file_tracking: bool | None = None


# Anomaly names (in `Packet.events`) that say a flow is no longer fully inspected: one of
# the limits above was reached. The flow table raises them; the engine logs each as an EVE
# `anomaly` and, in IPS mode, applies the owner's exception policy (drop or pass the flow).
LIMIT_EVENTS = frozenset({
    "stream.reassembly_depth_reached",
    "stream.reassembly_ooo_limit_reached",
    "applayer.http.request_header_too_long",
    "applayer.http.response_header_too_long",
    "applayer.http.request_field_too_long",     # libhtp's REQUEST_FIELD_TOO_LONG
    "applayer.http.response_field_too_long",
    "applayer.http.request_body_limit_reached",
    "applayer.http.response_body_limit_reached",
    "applayer.tls.record_too_long",
    "applayer.tls.handshake_too_long",
})
