"""`hyperwall-ids -r` on scapy pcaps of the shapes evasion relies on: malformed IPv4 and IPv6
fragments, overlapping TCP segments, urgent data, split handshakes. Each gives Suricata's EVE
`anomaly` record and fires the decoder-events/stream-events rule for it, and in each the
traffic around it is still inspected (the positive control)."""
from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.utils import wrpcap

from tests.integration.test_ids_cli import ETH, events, ids
from tests.suricata_rules import event_rules

C4, S4, C6, S6 = "10.0.0.5", "192.0.2.80", "2001:db8::5", "2001:db8::80"
RULES = event_rules(2200069, 2200070, 2200072, 2200080, 2200095, 2200119, 2210050, 2210011,
                    2200033, 2200035) + """\
alert tcp any any -> any any (msg:"TCP urgent data"; flags:U+; sid:10;)
alert udp any any -> any 53 (msg:"whole datagram"; content:"EVILNAME"; sid:11;)
alert tcp any any -> any 80 (msg:"evil"; flow:established,to_server; content:"/evil.php"; sid:12;)
"""

DATAGRAM = bytes(UDP(sport=4444, dport=53, len=8 + 40, chksum=0)) + b"EVILNAME" * 5


def _v4(off: int, data: bytes, more: bool) -> object:
    return ETH / IP(src=C4, dst=S4, id=9, proto=17, frag=off // 8,
                    flags="MF" if more else 0) / data


def _v6(off: int, data: bytes, more: bool, ident: int = 6, res: int = 0) -> object:
    return ETH / IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(
        id=ident, offset=off // 8, m=int(more), nh=17, res1=res) / data


def _tcp(pkts: list[tuple[bool, str, int, int, bytes]], urgptr: int = 0) -> list:
    """(to_server, flags, seq, ack, data) between C4:41000 and S4:80."""
    out = []
    for up, flags, seq, ack, data in pkts:
        ip = IP(src=C4, dst=S4) if up else IP(src=S4, dst=C4)
        sport, dport = (41000, 80) if up else (80, 41000)
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack,
                  urgptr=urgptr if "U" in flags else 0)
        out.append(ETH / ip / tcp / data if data else ETH / ip / tcp)
    return out


HANDSHAKE = [(True, "S", 1000, 0, b""), (False, "SA", 5000, 1001, b""),
             (True, "A", 1001, 5001, b"")]
GET = b"GET /evil.php HTTP/1.1\r\nHost: a\r\n\r\n"

# name: (packets, the anomalies as (pcap_cnt, anomaly object), the alerts (pcap_cnt, sid))
CASES = {
    "ipv4 overlapping fragment": (
        [_v4(0, DATAGRAM[:24], True), _v4(8, b"X" * 16, True), _v4(24, DATAGRAM[24:], False)],
        [(2, {"type": "decode", "event": "decoder.ipv4.frag_overlap"})],
        [(2, 2200070), (3, 11)]),
    "ipv4 fragment past 65535 bytes": (
        [_v4(0, DATAGRAM[:24], True), _v4(65520, b"X" * 16, False),
         _v4(24, DATAGRAM[24:], False)],
        [(2, {"type": "decode", "event": "decoder.ipv4.frag_pkt_too_large"})],
        [(2, 2200069), (3, 11)]),
    "ipv6 fragments": (
        [_v6(0, DATAGRAM[:24], True, res=1), _v6(8, b"X" * 8, True),
         _v6(24, DATAGRAM[24:], False), _v6(0, DATAGRAM, False, ident=7),
         _v6(0, DATAGRAM[:13], True, ident=8)],
        [(1, {"type": "decode", "event": "decoder.ipv6.fh_non_zero_reserved_field"}),
         (2, {"type": "decode", "event": "decoder.ipv6.frag_overlap"}),
         (4, {"type": "decode", "event": "decoder.ipv6.exthdr_useless_fh"}),
         (5, {"type": "decode", "event": "decoder.ipv6.frag_invalid_length"})],
        [(1, 2200095), (2, 2200072), (3, 11), (4, 11), (4, 2200080), (5, 2200119)]),
    "tcp segment overlapping with other bytes": (
        _tcp([*HANDSHAKE, (True, "PA", 1001, 5001, b"GET /good.php"),
              (True, "PA", 1001, 5001, b"GET /evil.php"),
              (True, "PA", 1014, 5001, GET[13:])]),
        [(5, {"type": "stream", "event": "stream.reassembly_overlap_different_data"})],
        [(5, 12), (5, 2210050)]),
    # a malformed option: an event, and the segment's data is still inspected (receivers
    # take it), while a packet whose TCP header does not decode gets no flow at all
    "tcp options with a bad length, tcp header too short": (
        [*_tcp([*HANDSHAKE]), ETH / IP(src=C4, dst=S4) / TCP(
            sport=41000, dport=80, flags="PA", seq=1001, ack=5001, dataofs=6) /
         (b"\x08\x01\x01\x01" + GET),
         ETH / IP(src=C4, dst=S4) / TCP(sport=41000, dport=80, dataofs=2)],
        [(4, {"type": "decode", "event": "decoder.tcp.opt_invalid_len"}),
         (5, {"type": "decode", "event": "decoder.tcp.hlen_too_small"})],
        [(4, 12), (4, 2200035), (5, 2200033)]),
    # Suricata 7 has no urgent-data event: the urgent byte (urgptr 5: the "/") stays in the
    # stream, so /evil.php still matches, and a `flags:U+` rule is how rules see urgent data
    "tcp urgent data": (
        _tcp([*HANDSHAKE, (True, "PAU", 1001, 5001, GET)], urgptr=5),
        [],
        [(4, 10), (4, 12)]),
    # SYN, the server's SYN, a SYN/ACK from the client that acks nothing the server sent
    "split handshake with a wrong ack": (
        _tcp([(True, "S", 1000, 0, b""), (False, "S", 5000, 0, b""),
              (True, "SA", 1000, 4242, b""), (False, "A", 5001, 1001, b""),
              (True, "PA", 1001, 5001, GET)]),
        [(3, {"type": "stream", "event": "stream.4whs_synack_with_wrong_ack"})],
        [(3, 2210011)]),
    "split handshake": (
        _tcp([(True, "S", 1000, 0, b""), (False, "S", 5000, 0, b""),
              (True, "SA", 1000, 5001, b""), (False, "A", 5001, 1001, b""),
              (True, "PA", 1001, 5001, GET)]),
        [],
        [(5, 12)]),
}


@pytest.mark.parametrize("name", CASES)
def test_evasion_shape_gives_suricatas_anomaly_and_rule(tmp_path: Path, name: str) -> None:
    pkts, anomalies, alerts = CASES[name]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i / 100
    wrpcap(str(tmp_path / "in.pcap"), pkts)
    (tmp_path / "events.rules").write_text(RULES)
    r = ids("-r", str(tmp_path / "in.pcap"), "-S", str(tmp_path / "events.rules"),
            "-l", str(tmp_path / "log"), "-k", "none")
    assert r.returncode == 0, r.stderr
    evs = events(tmp_path / "log")
    assert [(e["pcap_cnt"], e["anomaly"]) for e in evs if e["event_type"] == "anomaly"] == \
        anomalies
    assert sorted((e["pcap_cnt"], e["alert"]["signature_id"])
                  for e in evs if e["event_type"] == "alert") == alerts
