"""netsec.files: files carried in HTTP bodies, as both HTTP parsers feed the tracker."""
from __future__ import annotations

import gzip
import hashlib
import zlib

import pytest

from netsec.app.htp import HtpParser
from netsec.app.http import HttpParser
from netsec.files import (
    ContentRange,
    FileState,
    FileTracker,
    body_length,
    content_range,
    file_name,
)

PARSERS = {"libhtp": HtpParser, "python": HttpParser}
BODY = b"%PDF-1.4\n" + bytes(range(256)) * 40


def _run(parser: str, exchanges: list[tuple[bytes, bytes]], max_size: int = 1 << 20,
         step: int = 0, end: bool = True) -> list:
    files = FileTracker(max_size)
    p = PARSERS[parser](files=files)
    for req, resp in exchanges:
        for data, to_server in ((req, True), (resp, False)):
            chunks = [data[i:i + step] for i in range(0, len(data), step)] if step else [data]
            for c in chunks:
                p.feed(c, to_server)
    if end:
        p.end_of_stream(False)
        p.finish()
    return files.take()


def _get(uri: bytes = b"/dl/report.pdf?x=1") -> bytes:
    return b"GET " + uri + b" HTTP/1.1\r\nHost: example.com\r\n\r\n"


def _resp(body: bytes, *headers: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(h + b"\r\n" for h in headers)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _chunked(body: bytes, *headers: bytes) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + \
        b"".join(h + b"\r\n" for h in headers) + b"\r\n"
    for i in range(0, len(body), 1000):
        part = body[i:i + 1000]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def _check_whole(f, body: bytes) -> None:
    assert f.state == FileState.CLOSED
    assert f.size == len(body) and bytes(f.data) == body
    assert f.sha256 == hashlib.sha256(body).hexdigest()
    assert f.md5 == hashlib.md5(body).hexdigest()
    assert f.sha1 == hashlib.sha1(body).hexdigest()
    assert not f.gaps


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("step", [0, 7])
def test_plain_chunked_and_gzip_bodies_are_whole_files(parser: str, step: int) -> None:
    got = _run(parser, [(_get(), _resp(BODY)),
                        (_get(b"/b.bin"), _chunked(BODY)),
                        (_get(b"/c.bin"), _resp(gzip.compress(BODY), b"Content-Encoding: gzip")),
                        (_get(b"/d.bin"), _chunked(zlib.compress(BODY),
                                                   b"Content-Encoding: deflate"))], step=step)
    assert [f.name for f in got] == ["report.pdf", "b.bin", "c.bin", "d.bin"]
    assert [f.tx_id for f in got] == [0, 1, 2, 3]
    for f in got:
        _check_whole(f, BODY)
    assert got[0].magic.startswith("PDF document")
    assert got[0].ext == "pdf"


@pytest.mark.parametrize("parser", PARSERS)
def test_pipelined_requests_each_get_their_file(parser: str) -> None:
    reqs = _get(b"/one.txt") + _get(b"/two.txt")
    resps = _resp(b"first file") + _resp(b"second, longer file")
    got = _run(parser, [(reqs, resps)])
    assert [(f.name, bytes(f.data)) for f in got] == [
        ("one.txt", b"first file"), ("two.txt", b"second, longer file")]


@pytest.mark.parametrize("parser", PARSERS)
def test_a_zip_bomb_is_a_truncated_file_at_the_cap(parser: str) -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))   # 50 MiB from ~50 KiB
    got = _run(parser, [(_get(b"/bomb.gz"), _resp(bomb, b"Content-Encoding: gzip"))],
               max_size=64 * 1024)
    (f,) = got
    assert f.state == FileState.TRUNCATED and f.size == 64 * 1024 and f.gaps
    assert len(f.data) == 64 * 1024
    assert f.eve()["state"] == "TRUNCATED"


@pytest.mark.parametrize("parser", PARSERS)
def test_a_body_cut_by_the_flow_end_is_truncated(parser: str) -> None:
    resp = _resp(BODY)[:-100]
    files = FileTracker()
    p = PARSERS[parser](files=files)
    p.feed(_get(), True)
    p.feed(resp, False)
    assert files.take() == []          # still open
    assert len(files.open_files) == 1
    p.finish()
    (f,) = files.take()
    assert f.state == FileState.TRUNCATED and f.size == len(BODY) - 100


@pytest.mark.parametrize("parser", PARSERS)
def test_name_from_content_disposition_and_range_is_a_partial_file(parser: str) -> None:
    part = BODY[:500]
    resp = _resp(part, b'Content-Disposition: attachment; filename="inv\\"oice.exe"',
                 b"Content-Range: bytes 0-499/%d" % len(BODY)).replace(b"200 OK", b"206 Partial")
    (f,) = _run(parser, [(_get(), resp)])
    assert f.name == 'inv"oice.exe' and f.ext == "exe"
    assert f.range == ContentRange(0, 499, len(BODY)) and f.gaps
    rec = f.eve()
    assert rec["start"] == 0 and rec["end"] == 499 and rec["gaps"] is True


@pytest.mark.parametrize("parser", PARSERS)
def test_an_upload_is_a_file_to_server(parser: str) -> None:
    req = b"POST /up/x.doc HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    (f,) = _run(parser, [(req, _resp(b""))])
    assert f.to_server and f.name == "x.doc" and bytes(f.data) == b"hello"


def test_a_body_that_does_not_decompress_is_an_error_file() -> None:
    t = FileTracker()
    t.open(0, False, "x", b"gzip")
    t.feed(0, False, gzip.compress(b"a" * 5000)[:20])     # a good start, output later
    t.feed(0, False, b"\xff" * 4000)                       # then garbage
    t.close(0, False)
    (f,) = t.take()
    assert f.state == FileState.ERROR and "decompress" in f.error


def test_raw_deflate_without_zlib_header_is_retried() -> None:
    co = zlib.compressobj(wbits=-15)
    raw = co.compress(BODY) + co.flush()
    t = FileTracker()
    t.open(0, False, "x", b"deflate")
    t.feed(0, False, raw)
    t.close(0, False)
    (f,) = t.take()
    _check_whole(f, BODY)


@pytest.mark.parametrize("disposition,uri,name", [
    (b"attachment; filename*=UTF-8''%e2%82%ac.txt; filename=\"e.txt\"", b"/", "\u20ac.txt"),
    (b"inline; filename=plain.bin", b"/x", "plain.bin"),
    (b"", b"/a/b/c%20d.zip?q=/etc", "c d.zip"),
    (b"", b"http://host.example/path/f.js", "f.js"),
    (b"", b"/", ""),
])
def test_file_name(disposition: bytes, uri: bytes, name: str) -> None:
    assert file_name(disposition, uri) == name


def test_content_range() -> None:
    assert content_range(b"bytes 10-19/*") == ContentRange(10, 19, None)
    assert content_range(b"bytes 19-10/40") is None
    assert content_range(b"") is None


def test_body_length_is_content_length_unless_chunked() -> None:
    assert body_length({b"content-length": b" 42 "}) == 42
    assert body_length({b"content-length": b"42",
                              b"transfer-encoding": b"Chunked"}) is None
    assert body_length({b"content-length": b"-1"}) is None
    assert body_length({}) is None


def test_close_short_of_the_declared_length_is_truncated() -> None:
    t = FileTracker()
    t.open(0, False, "a", length=10)
    t.feed(0, False, b"12345")
    t.close(0, False)
    t.open(1, False, "b", length=5)
    t.feed(1, False, b"12345")
    t.close(1, False)
    assert [(f.name, f.state) for f in t.take()] == \
        [("a", FileState.TRUNCATED), ("b", FileState.CLOSED)]


def test_without_keep_data_a_file_keeps_only_its_head() -> None:
    t = FileTracker(keep_data=False)
    t.open(0, False, "big.bin")
    t.feed(0, False, b"%PDF-1.4\n" + b"x" * 10000)
    t.close(0, False)
    [f] = t.take()
    assert (f.size, len(f.data), f.state) == (10009, 4096, FileState.CLOSED)
    assert f.magic.startswith("PDF document")
    assert f.sha256 == hashlib.sha256(b"%PDF-1.4\n" + b"x" * 10000).hexdigest()
