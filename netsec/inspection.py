"""What the detection engine is handed: one packet, or one step of a flow's application data.

The decode/flow/app-layer side builds an `Inspection`; the rules and the detector read it.
Neither side reaches into the other's internals — this module is the whole contract.

Buffer names are Suricata's sticky-buffer names. A buffer holds bytes, or a list of
bytes where the protocol has several values at once (one `dns.query` per question).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from netsec.packet import Packet

# The raw packet payload, as `content` without a sticky buffer sees it on a packet.
PKT = "pkt"
# Reassembled TCP payload in the packet's direction, as `content` sees it on a stream.
STREAM = "stream"

APP_BUFFERS = (
    "http.uri", "http.uri.raw", "http.method", "http.host", "http.host.raw",
    "http.user_agent", "http.header", "http.header.raw", "http.header_names",
    "http.cookie", "http.content_type", "http.content_len", "http.request_body",
    "http.stat_code", "http.stat_msg", "http.response_body", "http.request_line",
    "http.response_line", "http.protocol", "http.start", "http.server", "http.location",
    "http.referer", "http.accept", "http.accept_lang", "http.accept_enc", "http.connection",
    "file.data", "dns.query", "tls.sni", "tls.cert_subject", "tls.cert_issuer",
    "tls.cert_serial", "tls.certs", "tls.version", "ja3.hash", "ja3.string", "ja3s.hash",
    "ja3s.string",
)


class Window(bytes):
    """A buffer that is a window of a longer one (an HTTP body inspected as it arrives):
    `start` is the offset of its first byte in the whole, so absolute `offset`, `depth`
    and `isdataat` still count from the body's start (Suricata's inspect_offset)."""

    start: int   # (bytes subclasses cannot have slots: a small __dict__)

    def __new__(cls, data: bytes | bytearray, start: int) -> Window:
        w = super().__new__(cls, data)
        w.start = start
        return w


class FlowView(Protocol):
    """The parts of a flow the detector may read and (for flowbits) write."""

    flow_id: int          # Suricata-style non-zero 64-bit id, stable for the flow's life
    app_proto: str        # "http", "dns", "tls", ... ; "" while unknown, "failed" when undetectable
    established: bool     # three-way handshake seen (or midstream pickup allowed)
    flowbits: set[str]    # names set by `flowbits:set`; owned by the detector
    detect_state: dict[str, Any]   # free slot for the detector's per-flow bookkeeping
    alerted: bool         # set by the engine when a rule alerted on the flow (EVE flow.alerted)


@dataclass(slots=True)
class Inspection:
    packet: Packet
    flow: FlowView | None = None
    # Direction relative to the flow's initiator (the client). True for packets without a flow.
    to_server: bool = True
    # Buffers available at this step. `pkt` is always present for packet inspections;
    # `stream` when reassembled data advanced; app-layer buffers when a parser produced them.
    buffers: dict[str, bytes | list[bytes]] = field(default_factory=dict)
    # The application transaction these app-layer buffers belong to (HTTP request/response
    # pair, DNS query, TLS handshake), so that a rule alerts once per transaction.
    tx_id: int | None = None
    # With `stream`: where the newly reassembled bytes start in it; the bytes before are
    # context already inspected (kept so a pattern split across segments is found). A match
    # that ends at or before this offset was already seen by an earlier stream inspection.
    stream_new: int = 0
    # A file that just ended (netsec.files' File), on the inspection the file keywords see:
    # it carries the `file.name` buffer and the tx that brought the file.
    file: Any = None
