"""Application-layer parsers (DNS, HTTP/1.x, TLS) fed by the flow table.

A parser is per flow and sans-IO: `feed(data, to_server)` takes the next in-order bytes of
one direction (a whole datagram for UDP) and returns `AppOutput`s in order — buffers for an
app-layer inspection (Suricata's sticky-buffer names) and/or a record for an EVE event of
the parser's protocol. `end_of_stream(to_server)` says that direction closed (TCP FIN or
RST), which completes data delimited by the connection's end (an HTTP response body without
a length). `finish()` at flow end returns records still pending (an HTTP request whose
response never came). Parsers never raise on bad input: they stop parsing
that flow (`failed`) and return nothing more. Where a bound is reached (a header, body or
record limit) the parser appends the anomaly's name ("applayer.<proto>.<name>",
`netsec.flow.config.LIMIT_EVENTS`) to its `events` list; the flow table moves them to the
packet that carried the bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class AppOutput:
    tx_id: int
    to_server: bool
    buffers: dict[str, bytes | list[bytes]] | None = None  # an inspection's buffers
    record: dict[str, Any] | None = None                   # body of an EVE dns/http/tls event


class AppParser(Protocol):
    proto: str
    events: list[str]

    def feed(self, data: bytes, to_server: bool) -> list[AppOutput]: ...

    def end_of_stream(self, to_server: bool) -> list[AppOutput]: ...

    def finish(self) -> list[AppOutput]: ...
