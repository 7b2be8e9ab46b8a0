"""HTTP/1.x parser: request/response buffers, pipelining, bodies, limits, URI normalisation."""
from __future__ import annotations

import gzip

import pytest

from netsec.app import AppOutput
from netsec.app.http import HttpParser, normalize_uri

REQ = (b"GET /a/./b/../c%2Ehtml?q=%41 HTTP/1.1\r\nHost: WWW.Example.com:8080\r\n"
       b"User-Agent: curl/8\r\nCookie: id=1\r\nAccept: */*\r\n\r\n")


def _bufs(outs: list[AppOutput]) -> list[dict]:
    return [o.buffers for o in outs if o.buffers is not None]


def test_request_buffers() -> None:
    [b] = _bufs(HttpParser().feed(REQ, True))
    assert b["http.method"] == b"GET"
    assert b["http.uri.raw"] == b"/a/./b/../c%2Ehtml?q=%41"
    assert b["http.uri"] == b"/a/c.html?q=%41"
    assert b["http.protocol"] == b"HTTP/1.1"
    assert b["http.request_line"] == b"GET /a/./b/../c%2Ehtml?q=%41 HTTP/1.1"
    assert (b["http.host"], b["http.host.raw"]) == (b"www.example.com", b"WWW.Example.com:8080")
    assert (b["http.user_agent"], b["http.cookie"], b["http.accept"]) == (
        b"curl/8", b"id=1", b"*/*")
    assert b["http.header"] == (b"Host: WWW.Example.com:8080\r\nUser-Agent: curl/8\r\n"
                                b"Cookie: id=1\r\nAccept: */*\r\n")
    assert b["http.header_names"] == b"\r\nHost\r\nUser-Agent\r\nCookie\r\nAccept\r\n\r\n"
    assert b["http.header.raw"].endswith(b"Accept: */*\r\n\r\n")


def test_request_split_at_every_byte_gives_one_inspection() -> None:
    p = HttpParser()
    outs = [o for i in range(len(REQ)) for o in p.feed(REQ[i:i + 1], True)]
    assert len(_bufs(outs)) == 1 and outs[0].tx_id == 0


def test_pipelined_requests_pair_with_responses() -> None:
    p = HttpParser()
    reqs = p.feed(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", True)
    assert [(o.tx_id, o.buffers["http.uri"]) for o in reqs] == [(0, b"/1"), (1, b"/2")]
    resp = p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA"
                  b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", False)
    ids = [(o.tx_id, o.buffers is not None, o.record is not None) for o in resp]
    assert ids == [(0, True, False), (0, True, False), (0, False, True),
                   (1, True, False), (1, False, True)]
    assert resp[3].buffers["http.stat_code"] == b"404"
    assert resp[3].buffers["http.stat_msg"] == b"Not Found"
    assert resp[4].record["status"] == 404 and resp[4].record["url"] == "/2"


def test_request_body_by_content_length_is_inspected_as_it_arrives() -> None:
    p = HttpParser(body_context=2)
    outs = p.feed(b"POST /f HTTP/1.1\r\nContent-Length: 7\r\n\r\nabc", True)
    assert _bufs(outs)[1] == {"http.request_body": b"abc"}
    [body] = _bufs(p.feed(b"defg", True))
    # the new bytes after `body_context` already inspected, placed in the body
    assert body == {"http.request_body": b"bcdefg"} and body["http.request_body"].start == 1


def test_chunked_response_is_dechunked() -> None:
    p = HttpParser()
    p.feed(b"GET / HTTP/1.1\r\n\r\n", True)
    resp = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: nginx\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
    outs = p.feed(resp, False)
    head, body = _bufs(outs)   # one inspection per feed, however many chunks it holds
    assert head["http.server"] == b"nginx"
    assert body["file.data"] == body["http.response_body"] == b"hello world"
    assert outs[-1].record["length"] == 11


def test_gzip_body_is_decompressed() -> None:
    p = HttpParser()
    p.feed(b"GET / HTTP/1.1\r\n\r\n", True)
    data = gzip.compress(b"<html>secret</html>")
    outs = p.feed(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
                  + str(len(data)).encode() + b"\r\n\r\n" + data, False)
    assert _bufs(outs)[1]["file.data"] == b"<html>secret</html>"


def test_body_limit_inspects_up_to_the_limit_and_raises_its_event_once() -> None:
    p = HttpParser(request_body_limit=4)
    p.feed(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n", True)
    assert _bufs(p.feed(b"abc", True)) == [{"http.request_body": b"abc"}] and not p.events
    assert _bufs(p.feed(b"def", True)) == [{"http.request_body": b"abcd"}]
    assert p.events == ["applayer.http.request_body_limit_reached"]
    assert _bufs(p.feed(b"ghij", True)) == []
    assert p.events == ["applayer.http.request_body_limit_reached"]


def test_interim_response_and_head_request() -> None:
    p = HttpParser()
    p.feed(b"HEAD / HTTP/1.1\r\n\r\n", True)
    outs = p.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n"
                  b"Location: /x\r\n\r\n", False)
    assert [o.tx_id for o in outs] == [0, 0]
    assert outs[0].buffers["http.location"] == b"/x" and outs[1].record["status"] == 200


def test_unanswered_request_is_logged_at_finish() -> None:
    p = HttpParser()
    p.feed(REQ, True)
    [o] = p.finish()
    assert o.record["hostname"] == "www.example.com" and o.record["http_user_agent"] == "curl/8"
    assert "status" not in o.record


def test_a_header_line_past_the_field_limit_stops_parsing_with_libhtps_event() -> None:
    p = HttpParser()
    assert p.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 18001, True) == []
    assert p.failed and p.feed(b"\r\n\r\n", True) == []
    assert p.events == ["applayer.http.request_field_too_long"]
    p = HttpParser()
    p.feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 18001 + b"\r\n\r\n", False)
    assert p.failed and p.events == ["applayer.http.response_field_too_long"]


def test_a_header_block_past_the_header_limit_stops_parsing() -> None:
    p = HttpParser(header_limit=1000)
    p.feed(b"GET / HTTP/1.1\r\n", True)
    for _ in range(100):
        p.feed(b"X-A: 0123456789\r\n", True)
    assert p.failed and p.events == ["applayer.http.request_header_too_long"]


@pytest.mark.parametrize("raw,norm", [
    (b"/", b"/"), (b"/a/../../b", b"/b"), (b"/%7euser/./x/", b"/~user/x/"),
    (b"http://h.example/p/../q?x=1", b"/q?x=1"), (b"/a/..", b""),
])
def test_normalize_uri(raw: bytes, norm: bytes) -> None:
    assert normalize_uri(raw) == norm


def test_logged_transactions_are_not_kept() -> None:
    p = HttpParser()
    for _ in range(50):
        p.feed(b"GET / HTTP/1.1\r\n\r\n", True)
        p.feed(b"HTTP/1.1 204 No Content\r\n\r\n", False)
    assert p.finish() == []
    p.feed(b"GET /last HTTP/1.1\r\n\r\n", True)
    [o] = p.finish()
    assert o.tx_id == 50 and o.record["url"] == "/last"


def test_response_without_request_midstream() -> None:
    outs = HttpParser().feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False)
    assert [o.tx_id for o in outs] == [0, 0] and outs[1].record["status"] == 200


def test_body_until_close_completes_at_end_of_stream() -> None:
    p = HttpParser()
    p.feed(b"GET / HTTP/1.0\r\n\r\n", True)
    outs = p.feed(b"HTTP/1.0 200 OK\r\n\r\nstreamed ", False)
    assert _bufs(outs)[1]["file.data"] == b"streamed "
    assert _bufs(p.feed(b"until close", False))[0]["file.data"] == b"streamed until close"
    assert p.end_of_stream(True) == []
    [done] = p.end_of_stream(False)   # nothing new to inspect: the record
    assert done.record["length"] == 20
