"""HTTP evasion shapes fed byte-identically to both HTTP parsers (netsec.app.http.HttpParser
and netsec.app.htp.HtpParser), in several segmentings, and what a parser made of them.

Used by tests/unit/test_http_parsers_side_by_side.py and bench/http_parsers.py. A shape is a
client stream and a server stream; `view()` feeds the client's bytes, then the server's,
then closes the server side and finishes, and keeps what rules and EVE see per transaction:
the normalised and raw request fields, the bodies as inspected (windows put together), the
status, the EVE record's hostname and url, and the anomaly events.
"""
from __future__ import annotations

import gzip
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from netsec.app.htp import HtpParser
from netsec.app.http import HttpParser

PARSERS: dict[str, Callable[[], Any]] = {"libhtp": HtpParser, "python": HttpParser}
FIELDS = ("http.method", "http.uri", "http.uri.raw", "http.host", "http.host.raw",
          "http.user_agent", "http.stat_code")
BODIES = ("http.request_body", "http.response_body")
MALWARE = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@dataclass(frozen=True)
class Shape:
    name: str
    client: bytes
    server: bytes


def _get(target: bytes = b"/", host: bytes = b"site.example", extra: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"\r\n"


def _ok(body: bytes = b"hello", extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)) + extra + b"\r\n" + body


def _chunked(*chunks: bytes, ext: bytes = b"", size_fmt: bytes = b"%x") -> bytes:
    out = b"".join((size_fmt % len(c)) + ext + b"\r\n" + c + b"\r\n" for c in chunks)
    return out + b"0\r\n\r\n"


_TE = b"Transfer-Encoding: chunked\r\n"
_HALF = len(MALWARE) // 2

SHAPES: tuple[Shape, ...] = (
    Shape("plain", _get(), _ok()),
    Shape("host case", _get(host=b"ADULT.Example"), _ok()),
    Shape("host trailing dot", _get(host=b"adult.example."), _ok()),
    Shape("host port", _get(host=b"adult.example:8080"), _ok()),
    Shape("host dot+port+case", _get(host=b"ADULT.example.:80"), _ok()),
    Shape("host IPv6 literal", _get(host=b"[2001:DB8::1]:80"), _ok()),
    Shape("absolute URI vs Host", _get(b"http://adult.example/x", b"allowed.example"), _ok()),
    Shape("absolute URI with port", _get(b"http://Adult.Example.:81/x", b"allowed.example"),
          _ok()),
    Shape("IDN host (UTF-8)", _get(host="bücher.example".encode()), _ok()),
    Shape("percent-encoded path", _get(b"/%61dmin/%2e%2e/secret?q=%41"), _ok()),
    Shape("encoded slash", _get(b"/a%2fb%2Fc"), _ok()),
    Shape("encoded NUL", _get(b"/evil.php%00.jpg"), _ok()),
    Shape("%u encoding", _get(b"/%u0061dmin%u2215x"), _ok()),
    Shape("overlong UTF-8", _get(b"/a%c0%afb"), _ok()),
    Shape("dot segments", _get(b"/a/./b/../../c/."), _ok()),
    Shape("double slashes", _get(b"//a///b"), _ok()),
    Shape("backslash", _get(b"/a\\..\\b\\c"), _ok()),
    Shape("space in URI", _get(b"/a b"), _ok()),
    Shape("LF line endings", b"GET /lf HTTP/1.1\nHost: adult.example\n\n",
          b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    Shape("leading CRLF", b"\r\n\r\n" + _get(), _ok()),
    Shape("lowercase method", b"get / HTTP/1.1\r\nHost: site.example\r\n\r\n", _ok()),
    Shape("no space after colon", b"GET / HTTP/1.1\r\nHost:adult.example\r\n\r\n", _ok()),
    Shape("duplicate Host", _get(extra=b"Host: adult.example\r\n"), _ok()),
    Shape("duplicate User-Agent", _get(extra=b"User-Agent: a\r\nUser-Agent: b\r\n"), _ok()),
    Shape("folded header", _get(extra=b"User-Agent: evil\r\n  agent\r\n"), _ok()),
    Shape("overlong header (20000)", _get(extra=b"X-Pad: " + b"a" * 20000 + b"\r\n"), _ok()),
    Shape("HTTP/1.0 without Host", b"GET /old HTTP/1.0\r\n\r\n", _ok()),
    Shape("POST Content-Length", b"POST /up HTTP/1.1\r\nHost: s.example\r\n"
          b"Content-Length: %d\r\n\r\n" % len(MALWARE) + MALWARE, _ok()),
    Shape("chunked response", _get(), b"HTTP/1.1 200 OK\r\n" + _TE + b"\r\n"
          + _chunked(MALWARE[:_HALF], MALWARE[_HALF:])),
    Shape("chunk extensions", _get(), b"HTTP/1.1 200 OK\r\n" + _TE + b"\r\n"
          + _chunked(MALWARE[:_HALF], MALWARE[_HALF:], ext=b";name=\"v\"")),
    Shape("chunk sizes odd (0-padded, upper)", _get(), b"HTTP/1.1 200 OK\r\n" + _TE + b"\r\n"
          + _chunked(MALWARE[:_HALF], MALWARE[_HALF:], size_fmt=b"000%X")),
    Shape("chunk size trailing space", _get(), b"HTTP/1.1 200 OK\r\n" + _TE + b"\r\n"
          + _chunked(MALWARE[:_HALF], MALWARE[_HALF:], size_fmt=b"%x ")),
    Shape("chunked with trailer", _get(), b"HTTP/1.1 200 OK\r\n" + _TE + b"\r\n"
          + _chunked(MALWARE)[:-2] + b"X-Trailer: 1\r\n\r\n"),
    Shape("gzip response", _get(), _ok(gzip.compress(MALWARE),
                                       b"Content-Encoding: gzip\r\n")),
    Shape("deflate (zlib) response", _get(), _ok(zlib.compress(MALWARE),
                                                 b"Content-Encoding: deflate\r\n")),
    Shape("deflate (raw) response", _get(), _ok(zlib.compress(MALWARE)[2:-4],
                                                b"Content-Encoding: deflate\r\n")),
    Shape("gzip chunked response", _get(), b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
          + _TE + b"\r\n" + _chunked(gzip.compress(MALWARE)[:20], gzip.compress(MALWARE)[20:])),
    Shape("gzip request body", b"POST /up HTTP/1.1\r\nHost: s.example\r\n"
          b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gzip.compress(MALWARE))
          + gzip.compress(MALWARE), _ok()),
    Shape("body until close", _get(), b"HTTP/1.1 200 OK\r\n\r\n" + MALWARE),
    Shape("100-continue", b"POST /up HTTP/1.1\r\nHost: s.example\r\nExpect: 100-continue\r\n"
          b"Content-Length: 3\r\n\r\nabc", b"HTTP/1.1 100 Continue\r\n\r\n" + _ok()),
    Shape("HEAD with Content-Length", b"HEAD / HTTP/1.1\r\nHost: s.example\r\n\r\n",
          b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + _ok(b"next")),
    Shape("pipelining (3)", _get(b"/1") + _get(b"/2", b"adult.example") + _get(b"/3"),
          _ok(b"one") + _ok(MALWARE) + _ok(b"three")),
    Shape("smuggling CL+TE request", b"POST / HTTP/1.1\r\nHost: s.example\r\n"
          b"Content-Length: 4\r\n" + _TE + b"\r\n" + _chunked(b"abc")
          + _get(b"/smuggled", b"adult.example"), _ok() + _ok()),
    Shape("smuggling TE+CL response", _get(), b"HTTP/1.1 200 OK\r\n" + _TE
          + b"Content-Length: 3\r\n\r\n" + _chunked(MALWARE)),
    Shape("two Content-Length", b"POST / HTTP/1.1\r\nHost: s.example\r\nContent-Length: 3\r\n"
          b"Content-Length: 5\r\n\r\nabcde", _ok()),
    Shape("TE not chunked last", b"POST / HTTP/1.1\r\nHost: s.example\r\n"
          b"Transfer-Encoding: chunked, identity\r\n\r\n" + _chunked(b"abc"), _ok()),
)


def segmentings(seed: int = 7) -> dict[str, Callable[[bytes], list[bytes]]]:
    def random_splits(data: bytes) -> list[bytes]:
        rnd = random.Random(seed ^ len(data))
        out, i = [], 0
        while i < len(data):
            n = rnd.randint(1, 64)
            out.append(data[i:i + n])
            i += n
        return out
    return {"whole": lambda d: [d] if d else [],
            "1-byte": lambda d: [d[i:i + 1] for i in range(len(d))],
            "random": random_splits}


def feed(parser: Any, shape: Shape, split: Callable[[bytes], list[bytes]]) -> Iterator[Any]:
    """Every AppOutput of one run, in order; the events raised ride along as ("event", e)."""
    steps = [(seg, True) for seg in split(shape.client)] + \
        [(seg, False) for seg in split(shape.server)]
    for seg, to_server in steps:
        yield from parser.feed(seg, to_server)
        yield from (("event", e) for e in parser.events)
        parser.events.clear()
    yield from parser.end_of_stream(False)
    yield from parser.finish()


def view(parser: Any, shape: Shape, split: Callable[[bytes], list[bytes]]) -> dict:
    txs: dict[int, dict] = {}
    events: list[str] = []
    for out in feed(parser, shape, split):
        if isinstance(out, tuple):
            events.append(out[1])
            continue
        t = txs.setdefault(out.tx_id, {})
        for name, value in (out.buffers or {}).items():
            if name in BODIES:   # a window: its bytes placed at its start in the body
                body = t.get(name, b"")
                t[name] = body[:value.start] + bytes(value)
            elif name in FIELDS:
                t.setdefault(name, bytes(value))
        if out.record is not None:
            t["eve"] = (out.record["hostname"], out.record["url"], out.record.get("status"))
    return {"txs": [txs[k] for k in sorted(txs)], "events": sorted(set(events))}


def run(shape: Shape, parser: str, segmenting: str) -> dict:
    return view(PARSERS[parser](), shape, segmentings()[segmenting])


def diff(a: dict, b: dict) -> list[str]:
    """What differs between two views, by transaction and field."""
    out = []
    if a["events"] != b["events"]:
        out.append(f"events {a['events']} != {b['events']}")
    if len(a["txs"]) != len(b["txs"]):
        out.append(f"{len(a['txs'])} transactions != {len(b['txs'])}")
    for i, (ta, tb) in enumerate(zip(a["txs"], b["txs"], strict=False)):
        for key in sorted(set(ta) | set(tb)):
            if ta.get(key) != tb.get(key):
                out.append(f"tx {i} {key}: {ta.get(key)!r:.60} != {tb.get(key)!r:.60}")
    return out
