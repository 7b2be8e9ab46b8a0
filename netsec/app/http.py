"""HTTP/1.x requests and responses, as Suricata (libhtp) exposes them to rules.

Requests and responses pair up in order (pipelining): the n-th response belongs to the
n-th request, and the pair is one transaction (`tx_id` = n). An inspection is produced
when a request's (or response's) header block is complete (by the bytes carrying its
end). Bodies are inspected as they arrive: every `feed` that brings new body bytes of a
transaction yields one inspection (`http.request_body`; `http.response_body` and
`file.data`, dechunked and, for gzip/deflate, decompressed as a stream) whose buffer is a
`netsec.inspection.Window`: the new bytes preceded by up to `body_context` bytes already
inspected, its `start` the offset in the body, so absolute offset/depth/isdataat count from
the body's start and a pattern split across segments or chunks is found. The detector
alerts a rule once per transaction, so a match is reported once. Bodies are inspected up
to the body limit; past it "applayer.http.<request|response>_body_limit_reached" is raised
and the rest is not inspected. An EVE `http` record is produced when the response is
complete, or at flow end for a request left unanswered.

Bounds, raised in `events` (after which parsing of the flow stops): a header or start line
longer than `field_limit` ("applayer.http.request_field_too_long" / "response_..."), a
header block longer than `header_limit` ("applayer.http.request_header_too_long" / ...).

URI and host normalisation are `netsec.app.normalize`'s (Suricata's libhtp defaults):
`http.uri` the normalised path with the query as sent, `http.uri.raw` the URI as sent;
`http.host` the absolute URI's host, else the Host header, normalised (case, port, trailing
dot, IDN to A-labels); `http.host.raw` as sent.
"""
from __future__ import annotations

import re
import zlib
from typing import Any, Protocol

from netsec import files as _files
from netsec.app import AppOutput, normalize
from netsec.inspection import Window

_HEAD, _BODY_LEN, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _BODY_CLOSE = range(7)
_IN_BODY = frozenset({_BODY_LEN, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _BODY_CLOSE})
_ZHEAD = 1024   # compressed bytes kept, before any output, to retry them as raw deflate
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")

_REQUEST_HEADER_BUFFERS = {
    b"user-agent": "http.user_agent", b"cookie": "http.cookie",
    b"content-type": "http.content_type", b"referer": "http.referer",
    b"accept": "http.accept", b"accept-language": "http.accept_lang",
    b"accept-encoding": "http.accept_enc", b"connection": "http.connection",
    b"content-length": "http.content_len",
}
_RESPONSE_HEADER_BUFFERS = {
    b"server": "http.server", b"location": "http.location",
    b"content-type": "http.content_type", b"content-length": "http.content_len",
    b"set-cookie": "http.cookie", b"connection": "http.connection",
}


def normalize_uri(uri: bytes) -> bytes:
    """`http.uri` of a request target as sent (libhtp's normalisation)."""
    return normalize.uri(uri)


def _parse_head(head: bytes) -> tuple[list[bytes], list[tuple[bytes, bytes]]] | None:
    """(start line parts, [(name, value)]), folded lines joined; None when malformed."""
    lines = head.split(b"\n")
    start = lines[0].rstrip(b"\r").split(None, 2)
    if not start:
        return None
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip())
            continue
        name, colon, value = line.partition(b":")
        if colon:
            headers.append((name.strip(), value.strip()))
    return start, headers


class _Tx:
    __slots__ = ("tx_id", "method", "uri", "protocol", "host", "user_agent", "referer",
                 "status", "content_type", "length", "logged",
                 "content_encoding", "head_request")

    def __init__(self, tx_id: int) -> None:
        self.tx_id = tx_id
        self.method = b""
        self.uri = b""
        self.protocol = b""
        self.host = b""
        self.user_agent = b""
        self.referer = b""
        self.status = b""
        self.content_type = b""
        self.length = 0
        self.logged = False
        self.content_encoding = b""
        self.head_request = False


class Inflating(Protocol):
    """A body direction's decompression state, as `HttpParser._inflate` keeps it (here
    `_Side`, in libhtp's binding its `_Body`)."""
    decoder: zlib._Decompress | None
    zhead: bytes | None


class _Side:
    """Parsing state of one direction."""
    __slots__ = ("buf", "state", "remaining", "scanned", "line_start", "body", "body_len",
                 "inspected", "limited", "decoder", "zhead", "limit", "tx", "name")

    def __init__(self, limit: int, name: str) -> None:
        self.buf = b""
        self.state = _HEAD
        self.remaining = 0
        self.scanned = 0               # header bytes already searched for the block's end
        self.line_start = 0            # where the unfinished header line starts in buf
        self.body = bytearray()        # the body's last bytes: context, then uninspected
        self.body_len = 0              # body bytes so far (decoded), up to the limit
        self.inspected = 0             # body_len at the last inspection
        self.limited = False           # the body limit was reached: the rest is skipped
        self.decoder: zlib._Decompress | None = None   # gzip/deflate response body
        self.zhead: bytes | None = None  # compressed bytes fed before any output
        self.limit = limit
        self.tx: _Tx | None = None
        self.name = name               # "request" or "response", for event names


class HttpParser:
    proto = "http"

    def __init__(self, request_body_limit: int = 100 * 1024,
                 response_body_limit: int = 100 * 1024, body_context: int = 2048,
                 field_limit: int = 18000, header_limit: int = 64 * 1024,
                 files: _files.FileTracker | None = None) -> None:
        self._sides = (_Side(response_body_limit, "response"),
                       _Side(request_body_limit, "request"))
        self.body_context = body_context
        self.field_limit = field_limit
        self.header_limit = header_limit
        self.events: list[str] = []   # anomalies since the caller last emptied it
        self._txs: dict[int, _Tx] = {}  # open transactions by tx_id (dropped once logged)
        self._ntx = 0
        self._next_response = 0       # tx_id the next response belongs to
        self.failed = False
        self.files = files            # bodies as files (netsec.files), when tracked

    def feed(self, data: bytes, to_server: bool) -> list[AppOutput]:
        if self.failed:
            return []
        side = self._sides[to_server]
        side.buf += data
        out: list[AppOutput] = []
        while side.buf or side.state == _BODY_LEN and side.remaining == 0:
            if side.state == _HEAD:
                if not self._head(side, to_server, out):
                    break
            elif not self._body_step(side, to_server, out):
                break
        if side.state in _IN_BODY:
            self._inspect_body(side, to_server, out)
        return out

    def end_of_stream(self, to_server: bool) -> list[AppOutput]:
        """A response body read until the connection closed is complete now."""
        side = self._sides[to_server]
        out: list[AppOutput] = []
        if side.state == _BODY_CLOSE and not self.failed:
            self._body_done(side, to_server, out)
        return out

    def finish(self) -> list[AppOutput]:
        if self.files is not None:
            self.files.finish()
        out = [AppOutput(tx.tx_id, True, None, _eve(tx)) for tx in self._txs.values()]
        self._txs.clear()
        return out

    def tx_record(self, tx_id: int) -> dict[str, Any] | None:
        """The EVE http object of a transaction still open (a file's, before it is logged)."""
        tx = self._txs.get(tx_id)
        return _eve(tx) if tx is not None else None

    def _head(self, side: _Side, to_server: bool, out: list[AppOutput]) -> bool:
        buf = side.buf if side.scanned else side.buf.lstrip(b"\r\n")
        # Searched from where the last search ended: a header block in 1-byte segments
        # costs linear time, not quadratic.
        m = _END_OF_HEAD.search(buf, max(0, side.scanned - 3))
        if m is None:
            side.buf = buf
            nl = buf.rfind(b"\n", side.scanned)
            if nl >= 0:
                side.line_start = nl + 1
            side.scanned = len(buf)
            if len(buf) - side.line_start > self.field_limit:
                self._limit(side, "field_too_long")
            elif len(buf) > self.header_limit:
                self._limit(side, "header_too_long")
            return False
        head, side.buf = buf[:m.start()], buf[m.end():]
        side.scanned = side.line_start = 0
        if max(map(len, head.split(b"\n"))) > self.field_limit:
            self._limit(side, "field_too_long")
            return False
        parsed = _parse_head(head)
        if parsed is None:
            return True
        start, headers = parsed
        first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
        if to_server:
            self._request(side, start, first_line, headers, head, out)
        else:
            self._response(side, start, first_line, headers, head, out)
        return True

    def _request(self, side: _Side, start: list[bytes], line: bytes,
                 headers: list[tuple[bytes, bytes]], head: bytes,
                 out: list[AppOutput]) -> None:
        tx = self._new_tx()
        side.tx = tx
        tx.method = start[0]
        tx.uri = start[1] if len(start) > 1 else b""
        tx.protocol = start[2] if len(start) > 2 else b""
        tx.head_request = tx.method == b"HEAD"
        bufs = _header_buffers(headers, head, _REQUEST_HEADER_BUFFERS)
        # RFC 9112 §3.2.2, as libhtp: an absolute URI's authority wins over Host
        host_raw = normalize.request_host(tx.uri, _header(headers, b"host"))
        if host_raw:
            bufs["http.host.raw"] = host_raw
            bufs["http.host"] = tx.host = normalize.host(host_raw)
        tx.user_agent = _header(headers, b"user-agent")
        tx.referer = _header(headers, b"referer")
        bufs.update({"http.method": tx.method, "http.uri": normalize_uri(tx.uri),
                     "http.uri.raw": tx.uri, "http.protocol": tx.protocol,
                     "http.request_line": line, "http.start": head + b"\r\n\r\n"})
        out.append(AppOutput(tx.tx_id, True, bufs))
        self._start_body(side, headers, has_body=True)
        self._open_file(side, headers, True)

    def _response(self, side: _Side, start: list[bytes], line: bytes,
                  headers: list[tuple[bytes, bytes]], head: bytes,
                  out: list[AppOutput]) -> None:
        status = start[1] if len(start) > 1 else b""
        if status.startswith(b"1") and status != b"101":
            return   # interim response (100 Continue): the real one follows
        tx = self._txs.get(self._next_response)
        if tx is None:   # a response without a request (midstream pickup)
            tx = self._new_tx()
        self._next_response = tx.tx_id + 1
        side.tx = tx
        tx.protocol = tx.protocol or start[0]
        tx.status = status
        tx.content_type = _header(headers, b"content-type")
        tx.content_encoding = _header(headers, b"content-encoding").lower()
        bufs = _header_buffers(headers, head, _RESPONSE_HEADER_BUFFERS)
        bufs.update({"http.stat_code": status, "http.stat_msg": start[2] if len(start) > 2
                     else b"", "http.response_line": line, "http.protocol": start[0],
                     "http.start": head + b"\r\n\r\n"})
        out.append(AppOutput(tx.tx_id, False, bufs))
        no_body = tx.head_request or status in (b"204", b"304")
        self._start_body(side, headers, has_body=not no_body, until_close=True)
        if side.state != _HEAD and tx.content_encoding in (b"gzip", b"x-gzip", b"deflate"):
            side.decoder = zlib.decompressobj(47)   # 47: a gzip or a zlib header
            side.zhead = b""
        self._open_file(side, headers, False)
        if side.state == _HEAD:
            self._log(tx, out)

    def _open_file(self, side: _Side, headers: list[tuple[bytes, bytes]],
                   to_server: bool) -> None:
        tx = side.tx
        if self.files is None or side.state == _HEAD or tx is None:
            return
        name = _files.file_name(_header(headers, b"content-disposition"), tx.uri)
        self.files.open(tx.tx_id, to_server, name, _header(headers, b"content-encoding"),
                        _files.content_range(_header(headers, b"content-range")))

    def _start_body(self, side: _Side, headers: list[tuple[bytes, bytes]], has_body: bool,
                    until_close: bool = False) -> None:
        side.body = bytearray()
        side.body_len = side.inspected = 0
        side.limited = False
        side.decoder = side.zhead = None
        side.state = _HEAD
        if not has_body:
            return
        if b"chunked" in _header(headers, b"transfer-encoding").lower():
            side.state = _CHUNK_SIZE
            return
        length = _header(headers, b"content-length")
        if length.isdigit():
            side.remaining = int(length)
            if side.remaining:
                side.state = _BODY_LEN
        elif until_close:
            side.state = _BODY_CLOSE

    def _body_step(self, side: _Side, to_server: bool, out: list[AppOutput]) -> bool:
        """Consume body bytes; False when more data is needed."""
        state = side.state
        if state in (_BODY_LEN, _CHUNK_DATA):
            take = side.buf[:side.remaining]
            side.buf = side.buf[len(take):]
            side.remaining -= len(take)
            self._add_body(side, take, to_server, out)
            if side.remaining:
                return False
            if state == _BODY_LEN:
                self._body_done(side, to_server, out)
            else:
                side.state = _CHUNK_END
            return True
        if state == _BODY_CLOSE:
            data, side.buf = side.buf, b""
            self._add_body(side, data, to_server, out)
            return False
        nl = side.buf.find(b"\n")
        if nl < 0:
            if len(side.buf) > 1024:
                self.failed = True
            return False
        line, side.buf = side.buf[:nl].strip(), side.buf[nl + 1:]
        if state == _CHUNK_END:
            side.state = _CHUNK_SIZE
        elif state == _CHUNK_SIZE:
            size = line.split(b";", 1)[0].strip()
            try:
                side.remaining = int(size, 16)
            except ValueError:
                self.failed = True
                return False
            side.state = _CHUNK_DATA if side.remaining else _TRAILER
        elif not line:   # the empty line ending the trailer
            self._body_done(side, to_server, out)
        return True

    def _add_body(self, side: _Side, data: bytes, to_server: bool,
                  out: list[AppOutput]) -> None:
        tx = side.tx
        if tx is not None and not to_server:
            tx.length += len(data)
        if self.files is not None and tx is not None:
            self.files.feed(tx.tx_id, to_server, data)   # past the body limit too
        if side.limited or not data:
            return
        room = side.limit - side.body_len
        if side.decoder is not None:
            data = self._inflate(side, data, room)
        if len(data) > room:
            data = data[:room]
            side.limited = True
            self.events.append(f"applayer.http.{side.name}_body_limit_reached")
        side.body += data
        side.body_len += len(data)

    @staticmethod
    def _inflate(side: Inflating, data: bytes, room: int) -> bytes:
        """`data` decompressed, at most one byte past `room` (that byte says the body
        goes on past the limit: the rest is never decompressed, so a bomb costs little).
        A deflate body without its zlib header is retried as raw deflate; one that is not
        compressed at all is passed through as it is, as libhtp does."""
        decoder = side.decoder
        assert decoder is not None
        try:
            out = decoder.decompress(data, room + 1)
        except zlib.error:
            out = b""
            retry = side.zhead
            side.decoder = side.zhead = None
            if retry is None:
                return data
            decoder = zlib.decompressobj(-15)
            try:
                out = decoder.decompress(retry + data, room + 1)
            except zlib.error:
                return retry + data
            side.decoder = decoder
        if side.zhead is not None:
            side.zhead = None if out or len(side.zhead) > _ZHEAD else side.zhead + data
        return out

    def _body_done(self, side: _Side, to_server: bool, out: list[AppOutput]) -> None:
        side.state = _HEAD
        self._inspect_body(side, to_server, out)
        side.body = bytearray()   # inspected: a long-lived flow keeps no copy
        side.decoder = None
        if self.files is not None and side.tx is not None:
            self.files.close(side.tx.tx_id, to_server)
        if side.tx is not None and not to_server:
            self._log(side.tx, out)

    def _inspect_body(self, side: _Side, to_server: bool, out: list[AppOutput]) -> None:
        """One inspection of the body bytes that arrived since the last one, after up to
        `body_context` bytes already inspected."""
        tx = side.tx
        if side.body_len == side.inspected or tx is None:
            return
        side.inspected = side.body_len
        body = side.body
        window = Window(body, side.body_len - len(body))
        keep = self.body_context
        if len(body) > keep:
            del body[:len(body) - keep]
        if to_server:
            out.append(AppOutput(tx.tx_id, True, {"http.request_body": window}))
        else:
            out.append(AppOutput(tx.tx_id, False, {"http.response_body": window,
                                                   "file.data": window}))

    def _limit(self, side: _Side, what: str) -> None:
        self.events.append(f"applayer.http.{side.name}_{what}")
        self.failed = True

    def _new_tx(self) -> _Tx:
        tx = self._txs[self._ntx] = _Tx(self._ntx)
        self._ntx += 1
        return tx

    def _log(self, tx: _Tx, out: list[AppOutput]) -> None:
        if not tx.logged:
            tx.logged = True
            self._txs.pop(tx.tx_id, None)
            out.append(AppOutput(tx.tx_id, False, None, _eve(tx)))


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    """The value of the first header of that (lowercase) name, or b""."""
    for n, v in headers:
        if n.lower() == name:
            return v
    return b""


def _header_buffers(headers: list[tuple[bytes, bytes]], head: bytes,
                    named: dict[bytes, str]) -> dict[str, bytes | list[bytes]]:
    bufs: dict[str, bytes | list[bytes]] = {}
    for name, value in headers:
        key = named.get(name.lower())
        if key is not None and key not in bufs:
            bufs[key] = value
    bufs["http.header"] = b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    bufs["http.header.raw"] = head.split(b"\n", 1)[1] + b"\r\n\r\n" if b"\n" in head else b""
    bufs["http.header_names"] = b"\r\n" + b"".join(n + b"\r\n" for n, _ in headers) + b"\r\n"
    return bufs


def _eve(tx: _Tx) -> dict[str, Any]:
    """Suricata's EVE http object for one transaction."""
    rec: dict[str, Any] = {"hostname": tx.host.decode("latin-1"), "url": tx.uri.decode("latin-1"),
                 "http_method": tx.method.decode("latin-1"),
                 "protocol": tx.protocol.decode("latin-1"), "length": tx.length}
    if tx.user_agent:
        rec["http_user_agent"] = tx.user_agent.decode("latin-1")
    if tx.referer:
        rec["http_refer"] = tx.referer.decode("latin-1")
    if tx.content_type:
        rec["http_content_type"] = tx.content_type.split(b";")[0].strip().decode("latin-1")
    if tx.status.isdigit():
        rec["status"] = int(tx.status)
    return rec
