"""The filtering resolver's core: sinkhole answers, forwarding, FORMERR, decisions kept."""
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR

from domains.syssec.resolver import Resolver
from netsec.app.dns import DnsError
from netsec.blocklist import Blocklist, Category

BL = Blocklist([Category("gambling", {"casino.example"})])
NOW = dt.datetime(2026, 11, 24, 12, 0)


def resolver() -> Resolver:
    return Resolver(BL, clock=lambda: NOW)


def query(name: str, qtype: str = "A", **kw: object) -> bytes:
    return bytes(DNS(id=0x1234, rd=1, qd=DNSQR(qname=name, qtype=qtype), **kw))


@pytest.mark.parametrize(("qtype", "rdata"), [("A", "0.0.0.0"), ("AAAA", "::")])
def test_blocked_name_gets_a_sinkhole(qtype: str, rdata: str) -> None:
    r = resolver()
    answer = DNS(r.handle_query(query("www.Casino.example.", qtype), "10.137.0.3"))
    assert answer.id == 0x1234 and answer.qr == 1 and answer.rcode == 0 and answer.rd == 1
    assert answer.qd.qname == b"www.Casino.example."
    assert answer.ancount == 1 and answer.an.rdata == rdata and answer.an.ttl == 60
    assert r.decisions[-1].category == "gambling" and r.decisions[-1].name == "www.casino.example"


def test_blocked_name_other_type_gets_empty_noerror() -> None:
    answer = DNS(resolver().handle_query(query("casino.example", "MX"), "10.137.0.3"))
    assert answer.rcode == 0 and answer.ancount == 0


def test_allowed_name_is_forwarded_and_recorded() -> None:
    r = resolver()
    assert r.handle_query(query("news.example"), "10.137.0.3") is None
    d = r.decisions[-1]
    assert (d.name, d.category, d.client, d.when) == ("news.example", None, "10.137.0.3", NOW)


def test_malformed_queries() -> None:
    r = resolver()
    one = query("a.example")
    two_questions = one[:4] + b"\x00\x02" + one[6:] + one[12:]
    assert DNS(r.handle_query(two_questions, "c")).rcode == 1
    truncated = query("casino.example")[:-3]
    assert DNS(r.handle_query(truncated, "c")).rcode == 1
    response = bytes(DNS(id=9, qr=1, qd=DNSQR(qname="a.example")))
    assert DNS(r.handle_query(response, "c")).rcode == 1
    with pytest.raises(DnsError, match="shorter than a DNS header"):
        r.handle_query(b"\x00\x01", "c")


def test_decisions_are_bounded() -> None:
    r = Resolver(BL, clock=lambda: NOW, keep=3)
    for i in range(10):
        r.handle_query(query(f"n{i}.example"), "c")
    assert [d.name for d in r.decisions] == ["n7.example", "n8.example", "n9.example"]


@given(st.binary(max_size=300))
def test_fuzz_only_dns_errors_escape(data: bytes) -> None:
    try:
        resolver().handle_query(data, "c")
    except DnsError:
        pass
