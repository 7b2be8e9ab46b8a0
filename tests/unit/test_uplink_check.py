"""The uplink check's reading of replies scapy builds, and of garbage."""
from __future__ import annotations

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR

from domains.syssec.uplink_check import first_a, resolve


def reply(tid: int, *answers: DNSRR, rcode: int = 0) -> bytes:
    return bytes(DNS(id=tid, qr=1, rcode=rcode, qd=DNSQR(qname="intranet.corp.example"),
                     an=list(answers) or None))


def test_the_first_a_record_after_a_cname() -> None:
    assert first_a(reply(7, DNSRR(rrname="intranet.corp.example", type="CNAME",
                                  rdata="host.corp.example"),
                         DNSRR(rrname="host.corp.example", type="A", rdata="10.99.0.10")),
                   7) == "10.99.0.10"


def test_nxdomain_and_no_answer_are_none() -> None:
    assert first_a(reply(7, rcode=3), 7) is None
    assert first_a(reply(7), 7) is None


TRUNCATED = reply(7, DNSRR(rrname="x", type="A", rdata="10.0.0.1"))[:-3]


@pytest.mark.parametrize("bad", [b"", b"\x00" * 5, reply(8), TRUNCATED])
def test_garbage_or_someone_elses_reply_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        first_a(bad, 7)


async def test_an_uplink_that_refuses_the_query_is_no_answer_not_a_crash() -> None:
    # connect() to the broadcast address without SO_BROADCAST fails (EACCES), as an
    # unreachable uplink does (ENETUNREACH): the probe loop must get None, not an OSError.
    assert await resolve("corp.example", "255.255.255.255", timeout=1) is None
