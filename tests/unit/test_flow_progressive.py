"""Progressive inspection through the flow table and the IPS engine: for every traffic shape
(1-byte segments, chunks splitting the signature, gzip/deflate streamed, until close,
pipelining, keep-alive, split headers, a ClientHello over segments and records) the packet
that completes a match is the one dropped, every earlier one passes, every later one is
dropped; and the bounds raise their anomaly names."""
from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import pytest
from scapy.layers.tls.extensions import ServerName, TLS_Ext_Padding, TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello

from netsec.app.http import HttpParser
from netsec.engine import Engine, EngineConfig, Verdict
from netsec.flow import FlowConfig, FlowTable
from netsec.rules import parse_rule
from tests.unit.test_flow_table import Session

SIG = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
FILE_RULE = ('drop http any any -> any any (msg:"sig in a response body"; flow:to_client; '
             'file.data; content:"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"; sid:1;)')
BODY = b"".join(b"line %04d of a harmless page\n" % i for i in range(40))
EVIL = BODY[:700] + SIG + BODY[700:]
GET = b"GET /f HTTP/1.1\r\nHost: files.example\r\n\r\n"


class Wire:
    """A TCP connection through an IPS engine: what each packet's verdict was."""

    def __init__(self, *rules: str, config: FlowConfig | None = None) -> None:
        self.engine = Engine([parse_rule(r) for r in rules], FlowTable(config),
                             EngineConfig(simulate_ips=True))
        self.s = Session(self.engine.flows)   # type: ignore[arg-type]
        for to_server, flags in ((True, "S"), (False, "SA"), (True, "A")):
            self.send(to_server, b"", flags)

    def send(self, to_server: bool, data: bytes, flags: str = "PA") -> Verdict:
        return self.engine.process(self.s.packet(to_server, flags, data))

    def stream(self, to_server: bool, data: bytes, size: int = 1) -> list[Verdict]:
        return [self.send(to_server, data[i:i + size]) for i in range(0, len(data), size)]

    def alerts(self) -> list[dict]:
        return [e for e in self.engine.take_events() if e.get("event_type") == "alert"]


def first_drop(verdicts: list[Verdict]) -> int | None:
    """Index of the first dropped packet, after checking that every later one is dropped."""
    drops = [i for i, v in enumerate(verdicts) if v is not Verdict.ACCEPT]
    if not drops:
        return None
    assert drops == list(range(drops[0], len(verdicts))), "a packet passed after the drop"
    return drops[0]


def identity(body: bytes) -> tuple[bytes, bytes, int]:
    """(headers, body on the wire, wire index of SIG's last byte)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    return head, body, body.find(SIG) + len(SIG) - 1


def until_close(body: bytes) -> tuple[bytes, bytes, int]:
    return b"HTTP/1.0 200 OK\r\n\r\n", body, body.find(SIG) + len(SIG) - 1


def chunked(body: bytes, size: int = 7) -> tuple[bytes, bytes, int]:
    """Chunks of `size` bytes, so chunk boundaries fall inside the signature."""
    wire, last = b"", body.find(SIG) + len(SIG) - 1
    where = 0
    for i in range(0, len(body), size):
        wire += b"%x\r\n" % len(body[i:i + size])
        if i <= last < i + size:
            where = len(wire) + last - i
        wire += body[i:i + size] + b"\r\n"
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", wire + b"0\r\n\r\n", where


def compressed(name: str, squeeze: Callable[[bytes], bytes],
               wbits: int) -> Callable[[bytes], tuple[bytes, bytes, int]]:
    def shape(body: bytes) -> tuple[bytes, bytes, int]:
        data = squeeze(body)
        # where the signature's last byte comes out of an independent decompressor fed
        # one byte at a time: the match point on the wire
        d, got, end = zlib.decompressobj(wbits), 0, body.find(SIG) + len(SIG)
        for i in range(len(data)):
            got += len(d.decompress(data[i:i + 1]))
            if got >= end:
                break
        assert i < len(data) - 8, "the signature must complete before the body ends"
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (
            name.encode(), len(data))
        return head, data, i
    return shape


def _raw_deflate(body: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(body) + c.flush()


SHAPES = {
    "content-length": identity, "until-close": until_close, "chunked": chunked,
    "gzip": compressed("gzip", gzip.compress, 47),
    "deflate": compressed("deflate", zlib.compress, 47),
    "raw-deflate": compressed("deflate", _raw_deflate, -15),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_body_in_one_byte_segments_is_dropped_at_the_signatures_last_byte(
        shape: str) -> None:
    head, wire, where = SHAPES[shape](EVIL)
    w = Wire(FILE_RULE)
    assert w.send(True, GET) is Verdict.ACCEPT
    assert w.send(False, head) is Verdict.ACCEPT
    assert first_drop(w.stream(False, wire)) == where
    [alert] = w.alerts()
    assert alert["alert"]["signature_id"] == 1 and alert["alert"]["action"] == "blocked"


@pytest.mark.parametrize("shape", SHAPES)
def test_the_same_body_without_the_signature_passes_whole(shape: str) -> None:
    head, wire, _ = SHAPES[shape](EVIL.replace(SIG, b"x" * len(SIG)))
    w = Wire(FILE_RULE)
    w.send(True, GET)
    w.send(False, head)
    assert first_drop(w.stream(False, wire)) is None and w.alerts() == []


def test_chunks_one_per_segment() -> None:
    head, wire, where = chunked(EVIL, 5)
    w = Wire(FILE_RULE)
    w.send(True, GET)
    w.send(False, head)
    segments = wire.split(b"\r\n")
    sent, verdicts, drop_at = 0, [], None
    for seg in segments[:-1]:
        verdicts.append(w.send(False, seg + b"\r\n"))
        if drop_at is None and sent + len(seg) + 2 > where:
            drop_at = len(verdicts) - 1
        sent += len(seg) + 2
    assert first_drop(verdicts) == drop_at


def test_keep_alive_second_response_is_dropped_at_its_signature() -> None:
    w = Wire(FILE_RULE)
    w.send(True, GET + GET)
    head, body, _ = identity(BODY)
    assert w.send(False, head + body) is Verdict.ACCEPT   # the first response: clean, whole
    head, body, where = identity(EVIL)
    assert w.send(False, head) is Verdict.ACCEPT
    assert first_drop(w.stream(False, body)) == where
    [alert] = w.alerts()
    assert alert["tx_id"] == 1


def test_pipelined_request_bodies_each_inspected() -> None:
    rule = ('drop http any any -> any any (msg:"sig in a request"; flow:to_server; '
            'http.request_body; content:"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"; sid:2;)')
    post = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"
    clean = post % len(BODY) + BODY
    evil = post % len(EVIL) + EVIL
    w = Wire(rule)
    assert w.send(True, clean) is Verdict.ACCEPT
    stream = clean + evil
    where = len(clean) + len(post % len(EVIL)) + EVIL.find(SIG) + len(SIG) - 1
    assert first_drop(w.stream(True, stream[len(clean):], 1)) == where - len(clean)
    [alert] = w.alerts()
    assert alert["tx_id"] == 1


def test_headers_split_across_segments_are_inspected_by_the_segment_ending_them() -> None:
    rule = ('drop http any any -> any any (msg:"blocked host"; flow:to_server; http.host; '
            'content:"blocked.example"; sid:3;)')
    req = b"GET / HTTP/1.1\r\nHost: blocked.example\r\nCookie: " + b"c" * 600 + b"\r\n\r\n"
    w = Wire(rule)
    assert first_drop(w.stream(True, req, 1)) == len(req) - 1


def test_a_browser_sized_request_in_one_segment_is_parsed_whole() -> None:
    req = (b"GET /path/page.html?q=1 HTTP/1.1\r\nHost: www.example.com\r\n"
           b"Cookie: " + b"k=v; " * 110 + b"\r\nUser-Agent: browser\r\n\r\n")
    assert len(req) > 600
    s = Session(FlowTable())
    s.handshake()
    [app] = [i for i in s.send(True, "PA", req) if i.tx_id is not None]
    assert app.buffers["http.host"] == b"www.example.com"
    assert app.buffers["http.uri"] == b"/path/page.html?q=1"
    assert app.buffers["http.user_agent"] == b"browser"


def _client_hello(sni: str, size: int) -> bytes:
    """A handshake message (no record header) of about `size` bytes, as browsers send."""
    ch = TLSClientHello(version=0x0303, ciphers=[0x1301, 0xC02B], ext=[
        TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())]),
        TLS_Ext_Padding(padding=b"\0" * size)])
    return bytes(ch)


@pytest.mark.parametrize("records", [1, 3])
def test_a_large_client_hello_over_segments_and_records_is_dropped_at_its_end(
        records: int) -> None:
    rule = ('drop tls any any -> any any (msg:"blocked sni"; tls.sni; '
            'content:"blocked.example"; sid:4;)')
    hs = _client_hello("blocked.example", 1800)
    step = -(-len(hs) // records)
    wire = b"".join(b"\x16\x03\x01" + len(hs[i:i + step]).to_bytes(2, "big") + hs[i:i + step]
                    for i in range(0, len(hs), step))
    assert len(wire) > 1500
    w = Wire(rule)
    verdicts = w.stream(True, wire, 300)
    assert first_drop(verdicts) == len(verdicts) - 1
    w2 = Wire(rule)   # positive control: another name passes whole
    assert first_drop(w2.stream(True, wire.replace(b"blocked", b"allowed"), 300)) is None


def _ids_alerts(rule: str, body: bytes, size: int = 50) -> list[dict]:
    w = Wire(rule.replace("drop", "alert", 1))
    w.send(True, GET)
    head, wire, _ = identity(body)
    w.send(False, head)
    w.stream(False, wire, size)
    return w.alerts()


def test_depth_and_offset_count_from_the_body_start_in_every_window() -> None:
    magic = 'alert http any any -> any any (file.data; content:"MZ"; depth:2; sid:5;)'
    late = 'alert http any any -> any any (file.data; content:"MZ"; offset:5000; depth:2; sid:6;)'
    assert len(_ids_alerts(magic, b"MZ" + b"x" * 5000)) == 1
    assert _ids_alerts(magic, b"x" * 5000 + b"MZ" + b"x" * 10) == []
    assert len(_ids_alerts(late, b"x" * 5000 + b"MZ" + b"x" * 10)) == 1
    assert _ids_alerts(late, b"x" * 4999 + b"MZ" + b"x" * 10) == []
    at = 'alert http any any -> any any (file.data; content:"xx"; isdataat:5002; sid:7;)'
    assert _ids_alerts(at, b"MZ" + b"x" * 5000) == []
    assert len(_ids_alerts(at, b"MZ" + b"x" * 5001)) == 1


def test_a_signature_seen_in_many_windows_alerts_once() -> None:
    assert len(_ids_alerts(FILE_RULE, (SIG + b"." * 100) * 50, 7)) == 1


def test_one_byte_segments_cost_one_window_each_not_the_whole_body() -> None:
    p = HttpParser(response_body_limit=1 << 20, body_context=2048)
    p.feed(GET, True)
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n", False)
    sizes = [len(o.buffers["file.data"]) for i in range(20000)
             for o in p.feed(b"y", False) if o.buffers]
    assert len(sizes) == 20000 and max(sizes) == 2049


def test_limits_raise_their_anomaly_on_the_packet() -> None:
    cfg = FlowConfig(response_body_limit=100)
    s = Session(FlowTable(cfg))
    s.handshake()
    s.send(True, "PA", GET)
    pkt = s.packet(False, "PA", b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b"z" * 500)
    s.table.process(pkt)
    assert pkt.events == ["applayer.http.response_body_limit_reached"]
    s = Session(FlowTable(FlowConfig(tls_record_limit=1000)))
    s.handshake()
    pkt = s.packet(True, "PA", b"\x16\x03\x01" + (1001).to_bytes(2, "big") + b"\x01" * 100)
    s.table.process(pkt)
    assert pkt.events == ["applayer.tls.record_too_long"]


def test_stream_events_overlap_different_data_out_of_order_limit_and_depth() -> None:
    s = Session(FlowTable(FlowConfig(max_ooo_bytes=4, reassembly_depth=100)))
    s.handshake()
    base = s.cseq
    s.send(True, "PA", b"hello world")
    same = s.packet(True, "PA", b"world", seq=base + 6)
    s.table.process(same)
    changed = s.packet(True, "PA", b"WORLD", seq=base + 6)
    s.table.process(changed)
    assert same.events == [] and changed.events == ["stream.reassembly_overlap_different_data"]
    lost = s.packet(True, "PA", b"far ahead", seq=base + 50)
    s.table.process(lost)
    assert lost.events == ["stream.reassembly_ooo_limit_reached"]
    deep = s.packet(True, "PA", b"d" * 200, seq=base + 11)
    s.table.process(deep)
    assert deep.events == ["stream.reassembly_depth_reached"]


def test_split_handshake_is_followed_and_odd_handshakes_raise_stream_events() -> None:
    s = Session(FlowTable())
    s.send(True, "S")
    s.sseq = 7000
    split = s.packet(False, "S")          # the server answers the SYN with a SYN
    s.table.process(split)
    s.send(True, "SA", seq=s.cseq - 1)    # the client's SYN/ACK (its SYN's sequence)
    s.send(False, "A")                    # the server's ACK completes it
    out = s.send(True, "PA", b"GET / HTTP/1.1\r\nHost: split.example\r\n\r\n")
    assert out[0].flow.established
    assert [i.buffers["http.host"] for i in out if i.tx_id is not None] == [b"split.example"]
    s = Session(FlowTable())
    s.send(True, "S")
    wrong = s.packet(True, "SA", seq=s.cseq)
    s.table.process(wrong)
    assert wrong.events == ["stream.3whs_synack_in_wrong_direction"]
    bad_ack = s.packet(False, "SA", seq=s.sseq, ack=1)
    s.table.process(bad_ack)
    assert bad_ack.events == ["stream.3whs_synack_with_wrong_ack"]
    s.send(False, "SA")
    s.send(True, "A")
    again = s.packet(False, "S", seq=s.sseq + 99)
    s.table.process(again)
    assert again.events == ["stream.est_syn_toclient"]
