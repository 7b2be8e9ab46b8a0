"""IP fragment reassembly (IPv4 and IPv6): order, overlaps (bsd policy), limits, timeouts."""
from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment

from netsec.decode import Decoder, DecoderConfig, decode


def _v4_frag(offset: int, data: bytes, more: bool, ident: int = 99) -> bytes:
    return bytes(IP(src="10.1.1.1", dst="10.2.2.2", id=ident, proto=17, frag=offset // 8,
                    flags="MF" if more else 0) / data)


UDP_DATA = bytes(UDP(sport=1111, dport=2222, len=8 + 32, chksum=0)) + b"A" * 16 + b"B" * 16


def test_fragment_without_defrag_is_reported_without_l4() -> None:
    p = decode(101, 0, 1, _v4_frag(0, UDP_DATA[:24], True))
    assert (p.ip_proto, p.sport, p.payload) == (17, 0, UDP_DATA[:24])


def test_in_order_and_out_of_order_reassembly() -> None:
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        d = Decoder()
        chunks = [(0, UDP_DATA[:16], True), (16, UDP_DATA[16:32], True),
                  (32, UDP_DATA[32:], False)]
        results = [d.decode(101, i, i, _v4_frag(*chunks[i])) for i in order]
        assert results[:2] == [None, None]
        pkt = results[2]
        assert pkt is not None and pkt.frag
        assert (pkt.sport, pkt.dport, pkt.payload) == (1111, 2222, b"A" * 16 + b"B" * 16)
        assert pkt.ip_len == 20 + len(UDP_DATA)


def test_overlap_policy_lowest_offset_wins_then_first_received() -> None:
    d = Decoder()
    evil = b"E" * 16
    assert d.decode(101, 0, 1, _v4_frag(8, UDP_DATA[8:24], True)) is None
    # same offset again with other bytes: the first received stays; the overlapping
    # fragment's own packet carries the event (it is logged though nothing is complete)
    second = d.decode(101, 0, 2, _v4_frag(8, evil, True))
    assert second is not None and second.events == ["ipv4.frag_overlap"]
    assert second.no_l4 and not second.frag and (second.sport, second.payload) == (0, b"")
    # a fragment starting lower overlaps [8:16] and wins there (it starts first)
    third = d.decode(101, 0, 3, _v4_frag(0, UDP_DATA[:8] + b"Z" * 8, True))
    assert third is not None and third.events == ["ipv4.frag_overlap"]
    pkt = d.decode(101, 0, 4, _v4_frag(24, UDP_DATA[24:], False))
    assert pkt is not None and pkt.events == []   # it overlaps nothing
    assert pkt.payload == b"Z" * 8 + UDP_DATA[16:]


def test_distinct_ids_do_not_mix_and_timeout_drops() -> None:
    d = Decoder(DecoderConfig(defrag_timeout=10))
    assert d.decode(101, 0, 1, _v4_frag(0, UDP_DATA[:16], True, ident=1)) is None
    assert d.decode(101, 15, 2, _v4_frag(16, UDP_DATA[16:], False, ident=2)) is None
    # 15 s later the first datagram's head is gone: its tail alone never completes
    assert d.decode(101, 16, 3, _v4_frag(16, UDP_DATA[16:], False, ident=1)) is None
    assert d.decode(101, 17, 4, _v4_frag(0, UDP_DATA[:16], True, ident=2)) is not None


def test_too_large_datagram_is_an_event() -> None:
    d = Decoder()
    pkt = d.decode(101, 0, 1, _v4_frag(65528, b"x" * 16, False))
    assert pkt is not None and "ipv4.frag_pkt_too_large" in pkt.events


def _v6_frag(offset: int, data: bytes, more: bool) -> bytes:
    return bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") /
                 IPv6ExtHdrFragment(id=5, offset=offset // 8, m=int(more), nh=17) / data)


def test_ipv6_fragments_out_of_order_with_overlap() -> None:
    d = Decoder()
    assert d.decode(101, 0, 1, _v6_frag(16, UDP_DATA[16:], False)) is None
    held = d.decode(101, 0, 2, _v6_frag(8, b"Q" * 16, True))
    assert held is not None and held.events == ["ipv6.frag_overlap"]
    pkt = d.decode(101, 0, 3, _v6_frag(0, UDP_DATA[:16], True))
    assert pkt is not None and pkt.frag and pkt.ip_version == 6
    # bytes 8-16: the fragment at 0 starts lowest and wins over the earlier one at 8;
    # bytes 16-24: the fragment at 8 starts before the one at 16 and wins there
    assert (pkt.ip_proto, pkt.dport) == (17, 2222)
    assert pkt.payload == b"A" * 8 + b"Q" * 8 + b"B" * 16
    assert "ipv6.frag_overlap" in pkt.events


def test_atomic_ipv6_fragment_is_plain() -> None:
    p = Decoder().decode(101, 0, 1, _v6_frag(0, UDP_DATA, False))
    assert p is not None and not p.frag and p.dport == 2222


def test_ipv6_fragmentable_part_starting_with_destination_options() -> None:
    from scapy.layers.inet6 import IPv6ExtHdrDestOpt
    whole = bytes(IPv6ExtHdrDestOpt(nh=17)) + UDP_DATA
    d = Decoder()

    def frag(offset: int, data: bytes, more: bool) -> bytes:
        return bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") /
                     IPv6ExtHdrFragment(id=6, offset=offset // 8, m=int(more), nh=60) / data)

    assert d.decode(101, 0, 1, frag(0, whole[:24], True)) is None
    pkt = d.decode(101, 0, 2, frag(24, whole[24:], False))
    assert pkt is not None and (pkt.ip_proto, pkt.dport) == (17, 2222)


def _v6_raw_frag(offset: int, data: bytes, more: bool, res: int = 0) -> bytes:
    """An IPv6 fragment whose Fragment header's reserved byte is `res` (scapy's `res1`)."""
    return bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") /
                 IPv6ExtHdrFragment(id=6, offset=offset // 8, m=int(more), nh=17, res1=res) /
                 data)


def test_ipv6_fragment_header_oddities_are_suricatas_events() -> None:
    # an atomic fragment (offset 0, no more): decoded at once, flagged as useless
    pkt = decode(101, 0, 1, _v6_raw_frag(0, UDP_DATA, False))
    assert pkt.events == ["ipv6.exthdr_useless_fh"] and pkt.dport == 2222
    # the reserved byte set: not fatal
    pkt = Decoder().decode(101, 0, 1, _v6_raw_frag(0, UDP_DATA, False, res=7))
    assert pkt is not None and "ipv6.fh_non_zero_reserved_field" in pkt.events
    # a non-last fragment whose length is not a multiple of 8
    odd = Decoder().decode(101, 0, 1, _v6_raw_frag(0, UDP_DATA[:13], True))
    assert odd is not None and odd.events == ["ipv6.frag_invalid_length"]
    # two Fragment headers, the first atomic (it used to pass unseen)
    two = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(nh=44) / \
        IPv6ExtHdrFragment(nh=17, m=1, id=3) / UDP_DATA[:16]
    pkt = decode(101, 0, 1, bytes(two))
    assert "ipv6.exthdr_dupl_fh" in pkt.events
    # a well-formed first fragment raises nothing
    assert Decoder().decode(101, 0, 1, _v6_raw_frag(0, UDP_DATA[:16], True)) is None


def test_too_large_counts_the_ip_header_and_ignores_only_that_fragment() -> None:
    # 65520 + 8 bytes of data fit 65535 only without the 20-byte header
    d = Decoder()
    assert d.decode(101, 0, 1, _v4_frag(0, UDP_DATA[:16], True)) is None
    pkt = d.decode(101, 0, 2, _v4_frag(65520, b"x" * 8, False))
    assert pkt is not None and pkt.events == ["ipv4.frag_pkt_too_large"] and pkt.no_l4
    # the datagram's own fragments still make it whole, as in Suricata
    whole = d.decode(101, 0, 3, _v4_frag(16, UDP_DATA[16:], False))
    assert whole is not None and whole.payload == UDP_DATA[8:] and whole.events == []
    assert Decoder().decode(101, 0, 1, _v4_frag(65504, b"x" * 8, False)) is None


def test_tiny_first_fragment_and_a_tcp_header_overwrite() -> None:
    """RFC 1858: a first fragment too small for the TCP header, then one at offset 8 that
    rewrites the header (flags, ports) — reassembled first, so the TCP header the
    detector sees is the one the receiver (BSD policy) builds, and the overlap is an event."""
    from scapy.layers.inet import TCP

    seg = bytes(TCP(sport=40000, dport=80, flags="S", seq=1, chksum=0)) + b"payload!"
    tcp_frag = lambda off, data, more: bytes(  # noqa: E731
        IP(src="10.1.1.1", dst="10.2.2.2", id=7, proto=6, frag=off // 8,
           flags="MF" if more else 0) / data)
    d = Decoder()
    assert d.decode(101, 0, 1, tcp_frag(0, seg[:8], True)) is None   # ports and seq only
    # the next fragment starts at 8 again (the ack, offset and flags) with other flags
    rewritten = bytes(TCP(sport=40000, dport=80, flags="PA", seq=1, chksum=0))[8:]
    over = d.decode(101, 0, 2, tcp_frag(0, seg[:8] + rewritten, True))
    assert over is not None and over.events == ["ipv4.frag_overlap"]
    pkt = d.decode(101, 0, 3, tcp_frag(16, seg[16:], False))
    assert pkt is not None and pkt.frag
    # first received wins at the same offset: the SYN of the first fragment's bytes... and
    # the header bytes 8-20 come from the only fragment that held them
    assert (pkt.ip_proto, pkt.sport, pkt.dport, pkt.payload) == (6, 40000, 80, b"payload!")
    assert pkt.tcp_flags == 0x18
