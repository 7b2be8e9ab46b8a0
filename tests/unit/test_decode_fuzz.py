"""Hypothesis: random and mutated input never makes the decoders, flow table or parsers raise."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1Q, Ether

from netsec.app.dns import DnsParser
from netsec.app.http import HttpParser
from netsec.app.tls import TlsParser
from netsec.decode import LINKTYPES, Decoder, decode
from netsec.flow import FlowConfig, FlowTable

SEEDS = [
    bytes(Ether() / IP() / TCP(flags="PA") / b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    bytes(Ether() / Dot1Q() / IP(options=b"\x01\x01\x00\x00") / UDP() / DNS(qd=DNSQR())),
    bytes(Ether() / IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(m=1) / UDP() / b"x"),
    bytes(Ether() / IP(flags="MF") / UDP() / (b"y" * 40)),
]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(frame) - 1))
        frame[i] = draw(st.integers(0, 255))
    return bytes(frame[:draw(st.integers(0, len(frame)))])


@FUZZ
@given(st.sampled_from(sorted(LINKTYPES)), st.binary(max_size=200))
def test_random_frames_never_raise(linktype: int, frame: bytes) -> None:
    decode(linktype, 0.0, 1, frame, checksums=True)


@FUZZ
@given(st.lists(mutated(), min_size=1, max_size=8))
def test_mutated_frames_through_decoder_and_flow_table(frames: list[bytes]) -> None:
    decoder = Decoder()
    table = FlowTable(FlowConfig(midstream=True))
    for i, frame in enumerate(frames):
        pkt = decoder.decode(1, float(i), i + 1, frame)
        if pkt is not None:
            assert table.process(pkt)[0].buffers["pkt"] == pkt.payload
    table.flush()


@FUZZ
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=120)), max_size=6))
def test_app_parsers_never_raise(chunks: list[tuple[bool, bytes]]) -> None:
    for parser in (HttpParser(), DnsParser(tcp=True), DnsParser(tcp=False), TlsParser()):
        for to_server, data in chunks:
            parser.feed(data, to_server)
        parser.finish()


@FUZZ
@given(st.binary(min_size=1, max_size=60), st.integers(0, 200))
def test_mutated_app_messages_never_raise(noise: bytes, where: int) -> None:
    valid = {
        HttpParser: b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n0\r\n\r\n",
        TlsParser: bytes.fromhex("16030100450100004103030000000000000000000000000000000000000000"
                                 "0000000000000000000000000000000004c02b002f0100001400000010000e"
                                 "00000b612e6578616d706c652e"),
    }
    for cls, msg in valid.items():
        cut = where % (len(msg) + 1)
        parser = cls()
        parser.feed(msg[:cut] + noise + msg[cut:], True)
        parser.feed(noise, False)
    dns = bytes(DNS(qd=DNSQR(qname="a.b.c")))
    cut = where % (len(dns) + 1)
    DnsParser(tcp=False).feed(dns[:cut] + noise + dns[cut:], True)
