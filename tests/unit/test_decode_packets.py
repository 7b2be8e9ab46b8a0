"""Decoders: each layer's fields, and Suricata's event names on malformed input."""
from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import CookedLinux, Dot1AD, Dot1Q, Ether

from netsec.decode import decode

ETH_V4 = bytes(Ether(type=0x0800))
TCP_PKT = IP(src="192.0.2.1", dst="198.51.100.2", ttl=33, id=7) / TCP(
    sport=40000, dport=443, flags="PA", seq=1000, ack=2000, window=512) / b"data"


def test_ethernet_ipv4_tcp_fields() -> None:
    p = decode(1, 1.5, 3, bytes(Ether() / TCP_PKT))
    assert (p.ts, p.pcap_cnt, p.ip_version, p.src, p.dst) == (
        1.5, 3, 4, "192.0.2.1", "198.51.100.2")
    assert (p.ttl, p.ip_id, p.ip_proto, p.sport, p.dport) == (33, 7, 6, 40000, 443)
    assert (p.seq, p.ack, p.window, p.tcp_flags, p.payload) == (1000, 2000, 512, 0x18, b"data")
    assert p.events == [] and p.checksum_ok


def test_vlan_qinq() -> None:
    p = decode(1, 0, 1, bytes(Ether() / Dot1AD(vlan=100) / Dot1Q(vlan=200) / TCP_PKT))
    assert p.vlan == (100, 200) and p.dport == 443


def test_sll_and_raw() -> None:
    assert decode(113, 0, 1, bytes(CookedLinux(proto=0x0800) / TCP_PKT)).dport == 443
    assert decode(101, 0, 1, bytes(TCP_PKT)).payload == b"data"
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 1, 1, 0, 6, b"\0" * 8) + bytes(TCP_PKT)
    assert decode(276, 0, 1, sll2).dport == 443


def test_ipv4_options_are_skipped() -> None:
    p = decode(101, 0, 1, bytes(IP(options=[IPOption_RR()]) / UDP(dport=53) / b"q"))
    assert (p.dport, p.payload, p.events) == (53, b"q", [])


def test_ipv6_extension_headers_final_next_header() -> None:
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=9) / IPv6ExtHdrHopByHop() / \
        IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / UDP(sport=7, dport=8) / b"v6"
    p = decode(101, 0, 1, bytes(pkt))
    assert (p.ip_version, p.src, p.ttl, p.ip_proto, p.dport, p.payload) == (
        6, "2001:db8::1", 9, 17, 8, b"v6")


def test_icmp_and_icmpv6() -> None:
    p = decode(101, 0, 1, bytes(IP() / ICMP(type=8, code=0) / b"ping"))
    assert (p.icmp_type, p.icmp_code, p.payload) == (8, 0, b"ping")
    p = decode(101, 0, 1, bytes(IPv6() / ICMPv6EchoRequest(data=b"x")))
    assert (p.ip_proto, p.icmp_type, p.icmp_code) == (58, 128, 0)


@pytest.mark.parametrize("frame,event", [
    (bytes(Ether())[:10], "ethernet.pkt_too_small"),
    (bytes(Ether() / IP())[:14 + 12], "ipv4.pkt_too_small"),
    (bytes(Ether() / IP(ihl=4) / TCP()), "ipv4.hlen_too_small"),
    (bytes(Ether() / IP(len=100) / TCP()), "ipv4.trunc_pkt"),
    (bytes(Ether() / IP(len=10) / TCP()), "ipv4.iplen_smaller_than_hlen"),
    (ETH_V4 + struct.pack("!BBHHHBBH4s4s", 0x46, 0, 44, 0, 0, 64, 6, 0, b"\1" * 4, b"\2" * 4)
     + b"\x07\x09\0\0" + bytes(TCP()), "ipv4.opt_malformed"),
    (bytes(Ether() / IP() / TCP(dataofs=3)), "tcp.hlen_too_small"),
    (bytes(Ether() / IP() / TCP(dataofs=15)), "tcp.invalid_optlen"),
    (bytes(Ether() / IP(proto=6) / b"short"), "tcp.pkt_too_small"),
    (bytes(Ether() / IP() / UDP(len=4)), "udp.hlen_too_small"),
    (bytes(Ether() / IP() / UDP(len=200)), "udp.hlen_invalid"),
    (bytes(Ether() / IP(proto=1) / b"abc"), "icmpv4.pkt_too_small"),
    (bytes(Ether() / IPv6(plen=80) / UDP()), "ipv6.trunc_pkt"),
    (bytes(Ether(type=0x86DD)) + b"\x60" + b"\0" * 10, "ipv6.pkt_too_small"),
    (bytes(Ether() / Dot1Q())[:16], "vlan.header_too_small"),
])
def test_malformed_input_sets_suricata_events(frame: bytes, event: str) -> None:
    pkt = decode(1, 0, 1, frame)
    assert event in pkt.events
    assert pkt.no_l4   # whatever layer failed, no L4 header was decoded
    assert not decode(1, 0, 1, bytes(Ether() / TCP_PKT)).no_l4


def test_a_bad_tcp_option_is_an_event_and_the_segment_still_decodes() -> None:
    # a timestamp option claiming length 1: receivers stop reading options and take the
    # data (Linux's tcp_parse_options), so the payload must be decoded for inspection
    seg = TCP(sport=40000, dport=80, flags="PA", seq=7, dataofs=6) / (b"\x08\x01\x01\x01" +
                                                                   b"GET /evil.php")
    pkt = decode(101, 0, 1, bytes(IP(src="192.0.2.1", dst="198.51.100.2") / seg))
    assert pkt.events == ["tcp.opt_invalid_len"] and not pkt.no_l4
    assert (pkt.sport, pkt.dport, pkt.seq, pkt.payload) == (40000, 80, 7, b"GET /evil.php")


def test_wrong_ip_version_on_raw_link() -> None:
    assert decode(101, 0, 1, b"\x50" + b"\0" * 30).events == ["ipraw.invalid_ip_version"]


@pytest.mark.parametrize("pkt", [
    IP(src="1.1.1.1", dst="2.2.2.2") / TCP() / b"x",
    IP(src="1.1.1.1", dst="2.2.2.2") / UDP() / b"x",
    IP() / ICMP() / b"x",
    IPv6() / TCP() / b"x",
    IPv6() / UDP() / b"y",
])
def test_checksums_valid_and_invalid(pkt) -> None:
    good = bytes(pkt)
    assert decode(101, 0, 1, good, checksums=True).checksum_ok
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    assert not decode(101, 0, 1, bytes(bad), checksums=True).checksum_ok
    assert decode(101, 0, 1, bytes(bad), checksums=False).checksum_ok


def test_bad_ipv4_header_checksum() -> None:
    raw = bytearray(bytes(IP() / UDP()))
    raw[10] ^= 0x55
    assert not decode(101, 0, 1, bytes(raw), checksums=True).checksum_ok
