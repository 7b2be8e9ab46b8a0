"""What a reject answers with: RSTs that the receivers accept (right addresses, ports,
sequence numbers and checksums), ICMP unreachable quoting the packet, nothing for ICMP."""
from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP

from netsec.decode import Decoder, DecoderConfig
from netsec.packet import Packet
from netsec.reject import answers

RAW = 101


def decoded(raw: bytes) -> Packet:
    pkt = Decoder(DecoderConfig(checksums=True)).decode(RAW, 0.0, 1, raw)
    assert pkt is not None
    return pkt


def test_a_rejected_tcp_packet_resets_both_ends_at_the_right_sequence_numbers() -> None:
    raw = bytes(IP(src="203.0.113.10", dst="10.137.0.3") /
                TCP(sport=80, dport=40000, flags="PA", seq=1000, ack=500) / (b"x" * 10))
    to_sender, to_receiver = answers(decoded(raw), raw)
    s, r = IP(to_sender), IP(to_receiver)
    assert (s.src, s.dst, s[TCP].sport, s[TCP].dport) == ("10.137.0.3", "203.0.113.10",
                                                          40000, 80)
    assert (s[TCP].seq, s[TCP].ack, str(s[TCP].flags)) == (500, 1010, "RA")
    assert (r.src, r.dst, r[TCP].seq, str(r[TCP].flags)) == ("203.0.113.10", "10.137.0.3",
                                                             1000, "R")
    for answer in (to_sender, to_receiver):   # checksums verified by the project's decoder
        assert decoded(answer).checksum_ok is not False
        again = IP(answer)
        del again.chksum, again[TCP].chksum
        assert bytes(IP(bytes(again))) == answer   # scapy computes the same checksums


def test_a_rejected_udp_packet_gets_port_unreachable_quoting_it() -> None:
    raw = bytes(IP(src="10.137.0.3", dst="203.0.113.10") / UDP(sport=5000, dport=53) /
                b"query")
    (answer,) = answers(decoded(raw), raw)
    icmp = IP(answer)
    assert (icmp.src, icmp.dst, icmp[ICMP].type, icmp[ICMP].code) == (
        "203.0.113.10", "10.137.0.3", 3, 3)
    assert bytes(icmp[ICMP].payload)[:28] == raw[:28]
    again = IP(answer)
    del again[ICMP].chksum
    assert bytes(IP(bytes(again))) == answer


def test_icmp_and_resets_are_never_answered() -> None:
    for raw in (bytes(IP(src="10.137.0.3", dst="203.0.113.10") / ICMP()),
                bytes(IP(src="10.137.0.3", dst="203.0.113.10") / TCP(flags="R"))):
        assert answers(decoded(raw), raw) == []
