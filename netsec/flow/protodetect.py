"""Application protocol detection by content, not port (Suricata's probing parsers).

`detect` looks at the first bytes of one direction and answers a protocol name, None when
more bytes are needed to decide, or "" when it is none of the known protocols.
"""
from __future__ import annotations

from netsec.app.dns import looks_like_dns

HTTP_METHODS = (
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE", b"PATCH",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"SEARCH",
    b"REPORT", b"CHECKOUT", b"MERGE", b"SUBSCRIBE", b"NOTIFY",
)
_REQUEST_PREFIXES = tuple(m + b" " for m in HTTP_METHODS)
_MAX_PREFIX = max(map(len, _REQUEST_PREFIXES))


def _http(data: bytes, to_server: bool) -> str | None:
    if to_server:
        if data.startswith(_REQUEST_PREFIXES):
            return "http"
        if len(data) < _MAX_PREFIX and any(p.startswith(data) for p in _REQUEST_PREFIXES):
            return None
        return ""
    if data.startswith(b"HTTP/1."):
        return "http"
    return None if len(data) < 7 and b"HTTP/1.".startswith(data) else ""


def _tls(data: bytes, to_server: bool) -> str | None:
    # record type handshake (22), version 3.x, then a ClientHello (1) / ServerHello (2)
    if len(data) < 6:
        if data and (data[0] != 22 or (len(data) > 1 and data[1] != 3)):
            return ""
        return None
    if data[0] == 22 and data[1] == 3 and data[2] <= 4 and data[5] == (1 if to_server else 2):
        return "tls"
    return ""


def detect(data: bytes, to_server: bool, tcp: bool) -> str | None:
    """The protocol `data` (the first bytes of a direction) belongs to; see module docstring."""
    if not tcp:
        return "dns" if looks_like_dns(data) else ""
    waiting = False
    for probe in (_http, _tls):
        found = probe(data, to_server)
        if found:
            return found
        waiting = waiting or found is None
    if len(data) >= 14 and int.from_bytes(data[:2], "big") >= 12 and looks_like_dns(data[2:]):
        return "dns"
    if waiting or len(data) < 14:
        return None
    return ""
