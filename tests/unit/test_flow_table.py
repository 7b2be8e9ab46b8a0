"""The flow table: inspections per packet, TCP state, midstream, reassembly, EVE records."""
from __future__ import annotations

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from netsec.decode import decode
from netsec.flow import AppEvent, FlowConfig, FlowEnd, FlowTable
from netsec.inspection import Inspection
from netsec.packet import Packet

C, S = "10.0.0.1", "10.0.0.2"


class Session:
    """A TCP connection between C:40000 and S:80, packets decoded and fed to a table."""

    def __init__(self, table: FlowTable, ts: float = 100.0) -> None:
        self.table = table
        self.ts = ts
        self.cseq, self.sseq = 1000, 5000
        self.cnt = 0

    def send(self, to_server: bool, flags: str, data: bytes = b"",
             seq: int | None = None) -> list[Inspection]:
        return self.table.process(self.packet(to_server, flags, data, seq))

    def packet(self, to_server: bool, flags: str, data: bytes = b"",
               seq: int | None = None, ack: int | None = None) -> Packet:
        """The next packet of the connection, decoded (sequence numbers advance)."""
        self.cnt += 1
        self.ts += 0.01
        if to_server:
            ip = IP(src=C, dst=S) / TCP(sport=40000, dport=80, flags=flags,
                                        seq=self.cseq if seq is None else seq,
                                        ack=self.sseq if ack is None else ack)
        else:
            ip = IP(src=S, dst=C) / TCP(sport=80, dport=40000, flags=flags,
                                        seq=self.sseq if seq is None else seq,
                                        ack=self.cseq if ack is None else ack)
        pkt = decode(1, self.ts, self.cnt, bytes(Ether() / ip / data))
        if seq is None:
            adv = len(data) + (1 if "S" in flags or "F" in flags else 0)
            if to_server:
                self.cseq += adv
            else:
                self.sseq += adv
        return pkt

    def handshake(self) -> None:
        self.send(True, "S")
        self.send(False, "SA")
        self.send(True, "A")


def _kinds(inss: list[Inspection]) -> list[str]:
    return ["app" if i.tx_id is not None else next(iter(i.buffers)) for i in inss]


def test_handshake_then_established_and_stream() -> None:
    t = FlowTable()
    s = Session(t)
    syn = s.send(True, "S")
    assert len(syn) == 1 and not syn[0].flow.established and syn[0].to_server
    synack = s.send(False, "SA")
    assert not synack[0].to_server and not synack[0].flow.established
    ack = s.send(True, "A")
    assert ack[0].flow.established and ack[0].flow is syn[0].flow
    out = s.send(True, "PA", b"hello")
    assert _kinds(out) == ["pkt", "stream"]
    assert out[1].buffers["stream"] == b"hello"
    assert len(t) == 1 and syn[0].flow.flow_id > 0


def test_content_split_across_segments_is_in_the_stream_buffer() -> None:
    s = Session(FlowTable())
    s.handshake()
    s.send(True, "PA", b"xxEV")
    out = s.send(True, "PA", b"IL yy")
    assert out[1].buffers["stream"] == b"xxEVIL yy" and out[1].stream_new == 4
    assert b"EVIL" not in out[0].buffers["pkt"]


def test_out_of_order_and_retransmission_through_the_table() -> None:
    s = Session(FlowTable())
    s.handshake()
    base = s.cseq
    assert _kinds(s.send(True, "PA", b"world", seq=base + 6)) == ["pkt"]
    out = s.send(True, "PA", b"hello ", seq=base)
    assert out[1].buffers["stream"] == b"hello world"
    assert _kinds(s.send(True, "PA", b"HELLO ", seq=base)) == ["pkt"]


def test_midstream_off_gives_packet_inspections_only() -> None:
    s = Session(FlowTable(FlowConfig(midstream=False)))
    out = s.send(True, "PA", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert _kinds(out) == ["pkt"]
    assert not out[0].flow.established and out[0].flow.app_proto == ""


def test_midstream_on_tracks_and_parses() -> None:
    s = Session(FlowTable(FlowConfig(midstream=True)))
    out = s.send(True, "PA", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert _kinds(out) == ["pkt", "stream", "app"]
    assert out[0].flow.established and out[0].flow.app_proto == "http"
    assert out[2].buffers["http.host"] == b"a"


def test_depth_stops_stream_inspection() -> None:
    s = Session(FlowTable(FlowConfig(reassembly_depth=10)))
    s.handshake()
    first = s.send(True, "PA", b"0123456789abc")
    assert first[1].buffers["stream"] == b"0123456789"
    assert first[0].flow.past_depth(True) and not first[0].flow.past_depth(False)
    assert _kinds(s.send(True, "PA", b"more")) == ["pkt"]


def test_http_transaction_inspections_and_eve_record() -> None:
    t = FlowTable()
    s = Session(t)
    s.handshake()
    req = s.send(True, "PA", b"GET /x HTTP/1.1\r\nHost: Example.com:8080\r\n\r\n")
    assert req[2].tx_id == 0 and req[2].buffers["http.host"] == b"example.com"
    resp = s.send(False, "PA", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert [i.tx_id for i in resp] == [None, None, 0, 0]
    assert resp[3].buffers["file.data"] == b"ok"
    [ev] = t.drain_events()
    assert isinstance(ev, AppEvent) and ev.proto == "http" and ev.record["status"] == 200
    assert ev.record["hostname"] == "example.com" and ev.packet is resp[0].packet


def test_tls_client_hello_split_across_segments() -> None:
    from tests.unit.test_app_tls import client_hello_record
    s = Session(FlowTable())
    s.handshake()
    rec = client_hello_record("split.example")
    assert _kinds(s.send(True, "PA", rec[:40])) == ["pkt", "stream"]
    out = s.send(True, "PA", rec[40:])
    assert _kinds(out) == ["pkt", "stream", "app"]
    assert out[2].buffers["tls.sni"] == b"split.example"
    assert out[0].flow.app_proto == "tls"


def test_udp_dns_flow_and_established_both_ways() -> None:
    t = FlowTable()
    q = decode(1, 1.0, 1, bytes(Ether() / IP(src=C, dst=S) / UDP(sport=5353, dport=53) /
                                DNS(id=7, qd=DNSQR(qname="a.example"))))
    out = t.process(q)
    assert _kinds(out) == ["pkt", "app"] and out[1].buffers["dns.query"] == [b"a.example"]
    assert not out[0].flow.established
    r = decode(1, 1.1, 2, bytes(Ether() / IP(src=S, dst=C) / UDP(sport=53, dport=5353) /
                                DNS(id=7, qr=1, qd=DNSQR(qname="a.example"))))
    back = t.process(r)
    assert back[0].flow is out[0].flow and back[0].flow.established and not back[0].to_server
    records = [e for e in t.drain_events() if isinstance(e, AppEvent)]
    assert [(e.record["type"], e.tx_id) for e in records] == [("query", 0), ("answer", 0)]


def test_timeout_and_flush_produce_flow_records() -> None:
    t = FlowTable()
    first = t.process(decode(1, 10.0, 1, bytes(Ether() / IP(src=C, dst=S) / ICMP())))[0].flow
    t.process(decode(1, 10.5, 2, bytes(Ether() / IP(src=S, dst=C) / ICMP(type=0))))
    # 40 s later (icmp established timeout is 300 s, new is 30 s): still alive
    t.process(decode(1, 50.0, 3, bytes(Ether() / IP(src=C, dst="10.9.9.9") / ICMP())))
    assert not [e for e in t.drain_events() if isinstance(e, FlowEnd)]
    t.process(decode(1, 400.0, 4, bytes(Ether() / IP(src=C, dst="10.8.8.8") / ICMP())))
    ended = [e.flow for e in t.drain_events() if isinstance(e, FlowEnd)]
    assert first in ended and all(f.reason == "timeout" for f in ended)
    eve = first.eve_flow()
    assert (eve["pkts_toserver"], eve["pkts_toclient"], eve["state"]) == (1, 1, "established")
    assert eve["bytes_toserver"] == 42 and eve["age"] == 0
    rest = t.flush()
    assert len(rest) == 1 and rest[0].flow.reason == "shutdown" and len(t) == 0


def test_tcp_close_states_and_flow_ids_differ() -> None:
    t = FlowTable()
    s = Session(t)
    s.handshake()
    s.send(True, "FA")
    out = s.send(False, "FA")
    flow = out[0].flow
    assert flow.state == "closed" and flow.eve_tcp()["tcp_flags_ts"] == "13"
    other = Session(t)
    other.send(True, "R", seq=1)
    assert len(t) == 1  # same 5-tuple
    u = t.process(decode(1, 1, 9, bytes(Ether() / IP(src=C, dst=S) / UDP(sport=1, dport=2))))
    assert u[0].flow.flow_id != flow.flow_id


def test_non_ip_frame_has_no_flow() -> None:
    [ins] = FlowTable().process(decode(1, 0, 1, bytes(Ether(type=0x0806) / (b"\0" * 28))))
    assert ins.flow is None and ins.buffers == {"pkt": b""}


def test_bad_checksum_skips_reassembly_when_validating() -> None:
    s = Session(FlowTable(FlowConfig(checksums=True)))
    s.handshake()
    raw = bytearray(bytes(Ether() / IP(src=C, dst=S) / TCP(sport=40000, dport=80, flags="PA",
                                                           seq=s.cseq) / b"evil"))
    raw[-1] ^= 1
    out = s.table.process(decode(1, s.ts, 99, bytes(raw), checksums=True))
    assert _kinds(out) == ["pkt"]


def test_dns_over_tcp_detected_by_structure_on_any_port() -> None:
    s = Session(FlowTable())
    s.handshake()
    msg = bytes(DNS(id=9, qd=DNSQR(qname="tcp.example")))
    out = s.send(True, "PA", len(msg).to_bytes(2, "big") + msg)
    assert out[0].flow.app_proto == "dns"
    assert out[2].buffers["dns.query"] == [b"tcp.example"]


def test_undetectable_payload_marks_failed() -> None:
    s = Session(FlowTable())
    s.handshake()
    out = s.send(True, "PA", b"\x00\x01binary protocol nobody knows\xff" * 3)
    assert out[0].flow.app_proto == "failed" and _kinds(out) == ["pkt", "stream"]


def test_syn_on_a_closed_flow_starts_a_new_one() -> None:
    t = FlowTable()
    s = Session(t)
    s.handshake()
    old = s.send(True, "R")[0].flow
    t.drain_events()
    s.cseq = 777
    new = s.send(True, "S")[0].flow
    assert new is not old and not new.closed
    [end] = t.drain_events()
    assert isinstance(end, FlowEnd) and end.flow is old and old.reason == "forced"


def test_a_response_body_until_close_is_inspected_as_it_arrives_and_fin_completes_it() -> None:
    t = FlowTable()
    s = Session(t)
    s.handshake()
    s.send(True, "PA", b"GET / HTTP/1.0\r\n\r\n")
    out = s.send(False, "PA", b"HTTP/1.0 200 OK\r\n\r\nbo")
    assert _kinds(out) == ["pkt", "stream", "app", "app"]
    assert out[3].buffers["file.data"] == b"bo"
    out = s.send(False, "PA", b"dy")
    assert out[2].buffers["file.data"] == b"body" and out[2].buffers["file.data"].start == 0
    t.drain_events()
    out = s.send(False, "FA")
    assert _kinds(out) == ["pkt"]   # nothing new to inspect; the transaction is logged
    [rec] = t.drain_events()
    assert isinstance(rec, AppEvent) and rec.record["length"] == 4
