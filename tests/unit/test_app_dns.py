"""DNS codec and parser: build/parse round trips, malformed messages named, compression
(and loops), TCP framing, tx pairing, EVE v2 records."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR

from netsec.app.dns import (
    RCODE_NXDOMAIN,
    TYPE_A,
    TYPE_AAAA,
    DnsError,
    DnsParser,
    build_answer,
    build_error,
    build_query,
    encode_name,
    looks_like_dns,
    parse_message,
    parse_query,
    read_name,
)

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
    with pytest.raises(DnsError, match="more than 16 compression pointers"):
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


LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63)


@given(st.lists(LABEL, min_size=1, max_size=4), st.integers(0, 0xFFFF),
       st.sampled_from([TYPE_A, TYPE_AAAA, 15]))
def test_query_and_answer_round_trip(labels: list[str], tid: int, qtype: int) -> None:
    name = ".".join(labels)
    query = build_query(name, tid, qtype)
    header, q = parse_query(query)
    assert q is not None and (header.id, q.name, q.qtype, q.qclass) == (tid, name.encode(),
                                                                        qtype, 1)
    rdata = {TYPE_A: bytes([192, 0, 2, 1]), TYPE_AAAA: bytes(15) + b"\x01"}.get(qtype)
    m = parse_message(build_answer(header, q, rdata))
    assert m.header.id == tid and m.header.flags == 0x8580      # QR AA RD RA, NOERROR
    assert m.questions == [q]
    assert [(r.name, r.rtype, r.ttl, r.rdata) for r in m.answers] == (
        [] if rdata is None else [(name.encode(), qtype, 60,
                                   "192.0.2.1" if qtype == TYPE_A else "::1")])


def test_what_scapy_reads_of_what_the_codec_builds() -> None:
    q = DNS(build_query("intranet.corp.example", 7))
    assert q.id == 7 and q.rd == 1 and q.qd[0].qname == b"intranet.corp.example."
    assert q.qd[0].qtype == 1 and q.qd[0].qclass == 1
    header, question = parse_query(bytes(q))
    assert question is not None
    a = DNS(build_answer(header, question, bytes([10, 0, 0, 1])))
    assert a.qr == 1 and a.aa == 1 and a.an.rrname == b"intranet.corp.example."
    assert a.an.rdata == "10.0.0.1"
    nx = DNS(build_error(header, RCODE_NXDOMAIN))
    assert (nx.id, nx.qr, nx.rd, nx.rcode, nx.qdcount) == (7, 1, 1, 3, 0)


def test_an_answer_echoes_the_question_as_sent() -> None:
    header, q = parse_query(bytes(DNS(id=1, qd=DNSQR(qname="WwW.Example.", qtype="MX"))))
    assert q is not None and q.name == b"WwW.Example"
    assert DNS(build_answer(header, q, None)).qd.qname == b"WwW.Example."


def test_parse_query_wants_one_question() -> None:
    one = build_query("a.example", 1)
    assert parse_query(one[:4] + b"\x00\x02" + one[6:])[1] is None     # two questions
    assert parse_query(one[:-1])[1] is None                            # truncated
    assert parse_query(bytes(DNS(id=2, qr=1, qd=DNSQR(qname="a.example"))))[1] is None
    with pytest.raises(DnsError, match="shorter than a DNS header"):
        parse_query(one[:11])


HEADER1 = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)


@pytest.mark.parametrize(("msg", "what"), [
    (b"\x00\x01\x01", "message of 3 bytes is shorter than a DNS header"),
    (HEADER1 + b"\x08example", "label runs past the message at offset 12"),
    (HEADER1 + b"\x01a", "name runs past the message at offset 14"),
    (HEADER1 + b"\x01a\x00\x00", "question has no type and class at offset 15"),
    (HEADER1 + b"\xc0", "truncated compression pointer at offset 12"),
    (HEADER1 + b"\xc0\x0c\x00\x01\x00\x01", "more than 16 compression pointers"),
    (HEADER1 + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
     "label length 64 at offset 12 is over 63"),
    (HEADER1 + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63
     + b"\x3f" + b"d" * 63 + b"\x00\x00\x01\x00\x01", "name longer than 255 bytes at offset 204"),
    (struct.pack("!HHHHHH", 1, 0x8000, 0, 1, 0, 0) + b"\x00" + struct.pack("!HHIH", 1, 1, 0, 4)
     + b"\x01", "rdata overruns the message at offset 23"),
])
def test_malformed_messages_say_what_and_where(msg: bytes, what: str) -> None:
    with pytest.raises(DnsError, match=what):
        parse_message(msg)


@pytest.mark.parametrize(("name", "what"), [
    ("", "a label of 0 bytes"),
    ("a..b", "is not a DNS name"),
    ("x" * 64 + ".example", "is not a DNS name"),
    (".".join(["x" * 63] * 4), "257 bytes"),
])
def test_a_name_that_cannot_be_one_is_refused(name: str, what: str) -> None:
    with pytest.raises(DnsError, match=what):
        encode_name(name)
    with pytest.raises(DnsError, match="is not a DNS name"):
        build_query(name, 1)


def test_non_ascii_names_go_as_idna() -> None:
    assert encode_name("bücher.example.") == b"\x0dxn--bcher-kva\x07example\x00"
