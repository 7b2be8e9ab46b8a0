"""Suricata parity (issue 12, item 7) through the real engine and flow table on scapy pcaps."""
from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, UDP

from netsec.rules import RuleError, parse_rule
from tests.unit.test_engine_e2e import ETH, C, alerts, run, tcp_session

REQ = b"GET /index.php?id=123&page=admin HTTP/1.1\r\nHost: a.example\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"


def sids(tmp_path: Path, pkts: list, rules: list[str], **kw: object) -> list[int]:
    _, events = run(tmp_path, pkts, "".join(r + "\n" for r in rules), **kw)
    return sorted(a["alert"]["signature_id"] for a in alerts(events))


def test_pcre_U_and_R_lists_as_suricata_builds_them(tmp_path: Path) -> None:
    rules = [
        # /UR continues in the URI after the http_uri content; a second /U pcre stands alone
        'alert http any any -> any any (msg:"a"; content:"/index.php"; http_uri; '
        'pcre:"/^\\?id=\\d+/UR"; pcre:"/page=adm/U"; sid:1;)',
        # /R without a buffer flag is relative to the payload's last match ("GET"), not to
        # the /U pcre before it: Host is in the payload, not in the URI
        'alert tcp any any -> any any (msg:"b"; flow:to_server; content:"GET"; '
        'pcre:"/id=\\d+/U"; pcre:"/Host: a/R"; sid:2;)',
        # two /U pcres chained by R, and a sticky buffer with a relative pcre
        'alert http any any -> any any (msg:"c"; pcre:"/^\\/index/U"; pcre:"/^\\.php\\?/UR"; '
        'sid:3;)',
        'alert http any any -> any any (msg:"d"; http.uri; content:"/index"; '
        'pcre:"/^\\.php/R"; pcre:"/page=/U"; sid:4;)',
        # negative controls: anchored at the previous match's end, so these fail
        'alert http any any -> any any (msg:"e"; content:"/index"; http_uri; '
        'pcre:"/^\\?id/UR"; sid:5;)',
        'alert tcp any any -> any any (msg:"f"; content:"GET"; pcre:"/id=\\d+/U"; '
        'pcre:"/^admin/R"; sid:6;)',
    ]
    assert sids(tmp_path, tcp_session([(REQ, OK)]), rules) == [1, 2, 3, 4]


@pytest.mark.parametrize(("options", "reason"), [
    # Suricata's DetectPcreSetup: /R needs a match before it in the list it joins
    ('content:"/a"; http_uri; pcre:"/b/R";', "needs a preceding match"),
    ('content:"GET"; http_method; pcre:"/b/UR";', "needs a preceding match"),
    ('http.host; content:"a"; pcre:"/b/U";', "sticky buffer http.host"),
])
def test_pcre_lists_suricata_refuses(options: str, reason: str) -> None:
    with pytest.raises(RuleError, match=reason):
        parse_rule(f"alert http any any -> any any ({options} sid:1;)")
    # file_data with /Q (Suricata's file_data list) is one buffer, as in ET's rules
    parse_rule('alert http any any -> any any (file_data; content:"<a"; pcre:"/^b/QR"; sid:2;)')


def test_dns_query_after_payload_content(tmp_path: Path) -> None:
    def query(name: str, rd: int) -> object:
        p = ETH / IP(src=C, dst="192.0.2.53") / UDP(sport=5353, dport=53) / \
            DNS(id=7, rd=rd, qd=DNSQR(qname=name))
        p.time = 1_700_000_000 + rd
        return p

    rules = [
        # flags 0x0100 (a standard query with RD) in the payload, then the query name
        'alert dns any any -> any any (msg:"a"; content:"|01 00 00 01|"; offset:2; depth:4; '
        'dns_query; content:"evil"; nocase; sid:1;)',
        # a payload fast pattern: the rule must still be evaluated on the DNS transaction
        'alert udp any any -> any any (msg:"b"; content:"|00 07|"; depth:2; fast_pattern; '
        'dns_query; content:"evil.example"; nocase; sid:2;)',
    ]
    assert sids(tmp_path, [query("EVIL.example", 1)], rules) == [1, 2]
    # the payload part decides: without RD the first rule's payload content is absent
    assert sids(tmp_path, [query("evil.example", 0)], rules) == [2]
    assert sids(tmp_path, [query("good.example", 1)], rules) == []


def test_negated_app_layer_protocol_waits_until_the_protocol_is_known(tmp_path: Path) -> None:
    rule = ['alert tcp any any -> any any (msg:"not http"; app-layer-protocol:!http; sid:1;)']
    # an HTTP flow: never, neither on the handshake nor on the data
    assert sids(tmp_path, tcp_session([(REQ, OK)]), rule) == []
    # an SSH flow: not on the handshake (protocol unknown), only once detection failed
    ssh = tcp_session([(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", b"")], dport=22)
    _, events = run(tmp_path, ssh, rule[0] + "\n")
    assert [a["pcap_cnt"] for a in alerts(events)][0] == 4   # the first data packet
