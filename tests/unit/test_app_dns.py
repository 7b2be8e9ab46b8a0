"""DNS parser: questions, compression (and loops), TCP framing, tx pairing, EVE v2 records."""
from __future__ import annotations

import struct

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR

from netsec.app.dns import DnsError, DnsParser, looks_like_dns, read_name

QUERY = bytes(DNS(id=0x1234, rd=1, qd=DNSQR(qname="www.example.com", qtype="AAAA")))
ANSWER = bytes(DNS(id=0x1234, qr=1, rd=1, ra=1, qd=DNSQR(qname="www.example.com"),
                   an=[DNSRR(rrname="www.example.com", type="CNAME", rdata="web.example.com"),
                       DNSRR(rrname="web.example.com", type="A", rdata="192.0.2.9", ttl=60)]))


def test_query_buffers_and_record() -> None:
    [o] = DnsParser(tcp=False).feed(QUERY, True)
    assert o.buffers == {"dns.query": [b"www.example.com"]} and o.tx_id == 0
    assert o.record == {"version": 2, "type": "query", "id": 0x1234, "tx_id": 0, "opcode": 0,
                        "rrname": "www.example.com", "rrtype": "AAAA"}


def test_answer_shares_the_query_tx_and_lists_answers() -> None:
    p = DnsParser(tcp=False)
    p.feed(QUERY, True)
    p.feed(bytes(DNS(id=1, qd=DNSQR(qname="other.example"))), True)
    [o] = p.feed(ANSWER, False)
    assert o.tx_id == 0 and o.buffers is None
    r = o.record
    assert (r["type"], r["rcode"], r["rd"], r["ra"], r["flags"]) == (
        "answer", "NOERROR", True, True, "8180")
    assert r["answers"] == [
        {"rrname": "www.example.com", "rrtype": "CNAME", "ttl": 0, "rdata": "web.example.com"},
        {"rrname": "web.example.com", "rrtype": "A", "ttl": 60, "rdata": "192.0.2.9"}]
    assert r["grouped"] == {"CNAME": ["web.example.com"], "A": ["192.0.2.9"]}


def test_nxdomain_rcode() -> None:
    [o] = DnsParser(tcp=False).feed(bytes(DNS(id=3, qr=1, rcode=3, qd=DNSQR(qname="n.x"))),
                                    False)
    assert o.record["rcode"] == "NXDOMAIN" and "answers" not in o.record


def test_compressed_names() -> None:
    # scapy compresses the answer's name as a pointer to the question's
    m = bytes(DNS(id=1, qr=1, qd=DNSQR(qname="a.example"),
                  an=DNSRR(rrname="a.example", rdata="1.2.3.4")).compress())
    assert b"\xc0\x0c" in m
    [o] = DnsParser(tcp=False).feed(m, False)
    assert o.record["answers"][0]["rrname"] == "a.example"


def test_compression_loop_does_not_hang() -> None:
    header = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0)
    loop = header + b"\xc0\x0c" + b"\x00\x01\x00\x01"      # the name points at itself
    with pytest.raises(DnsError, match="too many compression pointers"):
        read_name(loop, 12)
    assert DnsParser(tcp=False).feed(loop, True) == []
    two = header + b"\x01a\xc0\x0e" + b"\x00\x01\x00\x01"  # label then a pointer back to it
    assert DnsParser(tcp=False).feed(two, True) == []


def test_tcp_framing_across_segments_and_two_messages_in_one() -> None:
    framed = struct.pack("!H", len(QUERY)) + QUERY
    p = DnsParser(tcp=True)
    assert p.feed(framed[:5], True) == []
    assert len(p.feed(framed[5:] + framed, True)) == 2


def test_looks_like_dns() -> None:
    assert looks_like_dns(QUERY) and looks_like_dns(ANSWER)
    assert not looks_like_dns(b"GET / HTTP/1.1\r\n\r\n")
    assert not looks_like_dns(QUERY[:20])
