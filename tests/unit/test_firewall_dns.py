"""The filtered guests' DNS rules (netsec.policy.dns_rules) in the inline engine, datagram
by datagram: DNS on any port and protocol to anything but sys-sec's resolver is dropped,
the same bytes from another guest or to the resolver pass."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP

from domains.syssec.ipsd import Ipsd
from netsec.engine import Verdict
from netsec.flow import FlowConfig
from netsec.policy import dns_rules

FILTERED, OPEN, GW, SERVER = "10.137.0.6", "10.137.0.7", "10.137.255.254", "198.51.100.53"
QUERY = bytes(DNS(id=7, rd=1, qd=DNSQR(qname="blocked.example")))


def engine(tmp_path: Path) -> Ipsd:
    (tmp_path / "policy.rules").write_text(dns_rules([FILTERED], GW))
    return Ipsd([tmp_path / "policy.rules"], tmp_path / "log", None,
                FlowConfig(inline=True))


def udp(src: str, dst: str, dport: int, *payloads: bytes) -> list[bytes]:
    return [bytes(IP(src=src, dst=dst) / UDP(sport=40000, dport=dport) / p) for p in payloads]


def tcp(src: str, dst: str, dport: int, data: bytes) -> list[bytes]:
    c = lambda **kw: IP(src=src, dst=dst) / TCP(sport=40001, dport=dport, **kw)  # noqa: E731
    s = lambda **kw: IP(src=dst, dst=src) / TCP(sport=dport, dport=40001, **kw)  # noqa: E731
    return [bytes(p) for p in (c(flags="S", seq=100), s(flags="SA", seq=500, ack=101),
                               c(flags="A", seq=101, ack=501),
                               c(flags="PA", seq=101, ack=501) / data)]


TCP_QUERY = struct.pack("!H", len(QUERY)) + QUERY


@pytest.mark.parametrize(("shape", "packets"), [
    ("udp 5353", udp(FILTERED, SERVER, 5353, QUERY)),
    ("udp high port", udp(FILTERED, SERVER, 40053, QUERY)),
    ("udp after a datagram that is not DNS", udp(FILTERED, SERVER, 5353, b"\0junk", QUERY)),
    ("tcp 5353", tcp(FILTERED, SERVER, 5353, TCP_QUERY)),
    ("tcp high port", tcp(FILTERED, SERVER, 40053, TCP_QUERY)),
])
def test_a_filtered_guests_dns_elsewhere_is_dropped(tmp_path: Path, shape: str,
                                                    packets: list[bytes]) -> None:
    ipsd = engine(tmp_path)
    verdicts = [ipsd.decide(p, 1.0 + i).verdict for i, p in enumerate(packets)]
    assert verdicts[-1] is Verdict.DROP, shape
    assert Verdict.DROP not in verdicts[:-1], "only the query is dropped, not what came first"


@pytest.mark.parametrize(("shape", "packets"), [
    ("another guest, udp", udp(OPEN, SERVER, 5353, QUERY)),
    ("another guest, tcp", tcp(OPEN, SERVER, 5353, TCP_QUERY)),
    ("to sys-sec's resolver", udp(FILTERED, GW, 5353, QUERY)),
    ("not DNS", udp(FILTERED, SERVER, 5353, b"\0" * 40)),
])
def test_the_same_bytes_pass_where_the_rule_does_not_apply(tmp_path: Path, shape: str,
                                                          packets: list[bytes]) -> None:
    ipsd = engine(tmp_path)
    assert Verdict.DROP not in [ipsd.decide(p, 1.0).verdict for p in packets], shape


def test_no_filtered_guest_no_rules() -> None:
    assert dns_rules([], GW) == ""
