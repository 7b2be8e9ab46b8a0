"""Suricata parity (issue 12, item 7) through the real engine and flow table on scapy pcaps."""
from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.utils import wrpcap

from netsec import flow as flow_mod
from netsec import pcap as pcap_mod
from netsec.engine import Engine, EngineConfig, Verdict
from netsec.flow.config import LIMIT_EVENTS
from netsec.rules import RuleError, parse_rule
from netsec.rules.loader import load_rules
from tests.suricata_rules import event_rules
from tests.unit.test_engine_e2e import ETH, C, S, alerts, run, tcp_session

REQ = b"GET /index.php?id=123&page=admin HTTP/1.1\r\nHost: a.example\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"


def sids(tmp_path: Path, pkts: list, rules: list[str]) -> list[int]:
    _, events = run(tmp_path, pkts, "".join(r + "\n" for r in rules))
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


def _eve(events: list, kind: str) -> list:
    return [e for e in events if e["event_type"] == kind]


def test_anomaly_records_and_decode_event_keyword(tmp_path: Path) -> None:
    udp = bytes(UDP(sport=1111, dport=2222, len=40, chksum=0)) + b"A" * 32
    frag = lambda off, data, more: ETH / IP(src=C, dst="192.0.2.9", id=42, proto=17,  # noqa: E731
                                            frag=off // 8, flags="MF" if more else 0) / data
    pkts = [frag(0, udp[:24], True), frag(8, b"E" * 16, True), frag(24, udp[24:], False)]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i
    rules = ['alert pkthdr any any -> any any (msg:"SURICATA FRAG IPv4 Fragmentation overlap"; '
             'decode-event:ipv4.frag_overlap; classtype:protocol-command-decode; '
             'sid:2200070; rev:2;)',
             'alert ip any any -> any any (msg:"never"; decode-event:ipv4.trunc_pkt; sid:9;)',
             # a lone fragment has no UDP header: only the whole datagram is UDP
             'alert udp any any -> any any (msg:"udp"; sid:3;)']
    _, events = run(tmp_path, pkts, "".join(r + "\n" for r in rules))
    [anomaly] = _eve(events, "anomaly")
    assert anomaly["anomaly"] == {"type": "decode", "event": "decoder.ipv4.frag_overlap"}
    assert (anomaly["pcap_cnt"], anomaly["src_ip"], anomaly["proto"]) == (2, C, "UDP")
    assert [(a["pcap_cnt"], a["alert"]["signature_id"]) for a in alerts(events)] == \
        [(2, 2200070), (3, 3)]
    # and it makes no flow of its own (Suricata's fragments have none)
    assert [(f["src_port"], f["dest_port"]) for f in _eve(events, "flow")] == [(1111, 2222)]
    assert "flow_id" not in anomaly


def test_a_broken_l4_header_makes_no_flow_and_only_protocol_less_rules_see_it(
        tmp_path: Path) -> None:
    broken = ETH / IP(src=C, dst=S) / TCP(sport=41000, dport=80, dataofs=2)
    broken.time = 1_700_000_000
    rules = ['alert tcp any any -> any any (msg:"any tcp"; sid:1;)',
             'alert pkthdr any any -> any any (msg:"SURICATA TCP header length too small"; '
             'decode-event:tcp.hlen_too_small; sid:2200033; rev:2;)']
    _, events = run(tmp_path, [broken], "".join(r + "\n" for r in rules))
    assert [a["alert"]["signature_id"] for a in alerts(events)] == [2200033]
    assert _eve(events, "flow") == []
    [anomaly] = _eve(events, "anomaly")
    assert anomaly["anomaly"] == {"type": "decode", "event": "decoder.tcp.hlen_too_small"}


def _tcp(pkts: list[tuple[bool, str, int, int, bytes]]) -> list:
    """(to_server, flags, seq, ack, data) as frames between C:41000 and S:80, 10 ms apart."""
    out = []
    for i, (up, flags, seq, ack, data) in enumerate(pkts):
        ip = IP(src=C, dst=S) if up else IP(src=S, dst=C)
        tcp = TCP(sport=41000, dport=80, flags=flags, seq=seq, ack=ack) if up else \
            TCP(sport=80, dport=41000, flags=flags, seq=seq, ack=ack)
        p = ETH / ip / tcp / data if data else ETH / ip / tcp
        p.time = 1_700_000_000 + i / 100
        out.append(p)
    return out


STREAM_RULES = [
    'alert tcp any any -> any any (msg:"SURICATA STREAM reassembly overlap with different '
    'data"; stream-event:reassembly_overlap_different_data; sid:2210050; rev:2;)',
    'alert tcp any any -> any any (msg:"SURICATA STREAM 4way handshake SYNACK with wrong '
    'ACK"; stream-event:4whs_synack_with_wrong_ack; sid:2210011; rev:2;)',
    'alert tcp any any -> any 80 (msg:"evil"; flow:established,to_server; '
    'content:"/evil.php"; sid:7;)',
]
HANDSHAKE = [(True, "S", 1000, 0, b""), (False, "SA", 5000, 1001, b""),
             (True, "A", 1001, 5001, b"")]


def test_overlapping_segment_with_other_bytes_is_a_stream_anomaly(tmp_path: Path) -> None:
    first = b"GET /good.php HTTP/1.1\r\n"
    pkts = _tcp([*HANDSHAKE, (True, "PA", 1001, 5001, first),
                 # the same bytes again, but other ones: what the receiver keeps is not
                 # what a naive reassembler would show
                 (True, "PA", 1001, 5001, b"GET /evil.php HTTP/1.1\r\n"),
                 (True, "PA", 1001 + len(first), 5001, b"Host: a\r\n\r\n")])
    uri = 'alert http any any -> any any (msg:"uri"; http.uri; content:"/good.php"; sid:8;)'
    _, events = run(tmp_path, pkts, "".join(r + "\n" for r in [*STREAM_RULES, uri]))
    [anomaly] = _eve(events, "anomaly")
    assert anomaly["anomaly"] == {"type": "stream",
                                  "event": "stream.reassembly_overlap_different_data"}
    assert anomaly["pcap_cnt"] == 5 and anomaly["flow_id"]
    # packet 5's own bytes match sid 7 (packets are inspected as well as the stream), while
    # the stream keeps the first bytes (Suricata's default policy): its URI is /good.php
    assert [(a["pcap_cnt"], a["alert"]["signature_id"]) for a in alerts(events)] == \
        [(5, 2210050), (5, 7), (6, 8)]


@pytest.mark.parametrize(("client_ack", "expected"), [
    (5001, [(5, 7)]),               # a good split handshake is followed: the data is seen
    (4242, [(3, 2210011)]),         # a SYN/ACK acking nothing the server sent
])
def test_split_handshake(tmp_path: Path, client_ack: int,
                         expected: list[tuple[int, int]]) -> None:
    # SYN, the server's own SYN, the client's SYN/ACK, the server's ACK (a 4-way handshake)
    pkts = _tcp([(True, "S", 1000, 0, b""), (False, "S", 5000, 0, b""),
                 (True, "SA", 1000, client_ack, b""), (False, "A", 5001, 1001, b""),
                 (True, "PA", 1001, 5001, b"GET /evil.php HTTP/1.1\r\nHost: a\r\n\r\n")])
    _, events = run(tmp_path, pkts, "".join(r + "\n" for r in STREAM_RULES))
    assert [(a["pcap_cnt"], a["alert"]["signature_id"]) for a in alerts(events)] == expected
    names = [e["anomaly"]["event"] for e in _eve(events, "anomaly")]
    assert names == ([] if client_ack == 5001 else ["stream.4whs_synack_with_wrong_ack"])


def _engine(policy: str, ips: bool, body_limit: int = 16) -> Engine:
    rules = [parse_rule('alert http any any -> any any (msg:"body"; file_data; '
                        'content:"evil"; sid:5;)'),
             parse_rule('alert tcp any any -> any any (msg:"stream"; '
                        'stream-event:reassembly_overlap_different_data; sid:6;)')]
    table = flow_mod.FlowTable(flow_mod.FlowConfig(response_body_limit=body_limit))
    return Engine(rules, table, EngineConfig(simulate_ips=ips, exception_policy=policy))


BIG = b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + b"x" * 60 + b"evil"


def _feed(tmp_path: Path, engine: Engine, pkts: list) -> tuple[list[Verdict], list]:
    pcap = tmp_path / "p.pcap"
    wrpcap(str(pcap), pkts)
    verdicts = [engine.process(p) for p in pcap_mod.read_packets(pcap)]
    return verdicts, engine.take_events() + engine.finish()


@pytest.mark.parametrize(("policy", "ips", "dropped"), [
    ("drop-flow", True, [6, 7, 8, 9, 10]),   # the packet past the limit, and the flow's rest
    ("drop-packet", True, [6]),
    ("reject", True, [6, 7, 8, 9, 10]),
    ("auto", True, [6, 7, 8, 9, 10]),        # Suricata's auto is drop-flow in IPS mode
    ("pass-flow", True, []),
    ("ignore", True, []),
    ("drop-flow", False, []),             # nothing is dropped in IDS mode
    ("auto", False, []),
])
def test_exception_policy_past_a_limit(tmp_path: Path, policy: str, ips: bool,
                                       dropped: list[int]) -> None:
    engine = _engine(policy, ips)
    verdicts, events = _feed(tmp_path, engine, tcp_session([(REQ, BIG)]))
    # packet 6 brings the response body past the 16-byte response-body-limit
    [anomaly] = _eve(events, "anomaly")
    assert anomaly["pcap_cnt"] == 6 and anomaly["anomaly"] == {
        "app_proto": "http", "type": "applayer", "event": "RESPONSE_BODY_LIMIT_REACHED",
        "layer": "proto_parser"}
    assert "applayer.http.response_body_limit_reached" in LIMIT_EVENTS
    assert [i for i, v in enumerate(verdicts, 1) if v is not Verdict.ACCEPT] == dropped
    assert [e["pcap_cnt"] for e in _eve(events, "drop")] == dropped
    if dropped:
        expected = Verdict.REJECT if policy == "reject" else Verdict.DROP
        assert verdicts[5] is expected
    # the control: under the limit, the same body alerts (detection was not cut short)
    roomy = _engine(policy, ips, body_limit=1024)
    verdicts, events = _feed(tmp_path, roomy, tcp_session([(REQ, BIG)]))
    assert set(verdicts) == {Verdict.ACCEPT} and _eve(events, "anomaly") == []
    assert [a["alert"]["signature_id"] for a in alerts(events)] == [5]


def test_exception_policy_value_is_checked() -> None:
    with pytest.raises(ValueError, match="exception-policy: 'drop-everything'"):
        EngineConfig(exception_policy="drop-everything")


SURICATA_RULES = event_rules(
    2200003, 2200015, 2200080, 2200095, 2200069, 2200119, 2200116, 2210004, 2210057, 2210050,
    2210021, 2210054, 2210060, drop=frozenset({2210057})) + \
    'alert pkthdr any any -> any any (msg:"typo"; decode-event:ipv4.trunc_pk; sid:1;)\n'


def test_suricatas_decoder_and_stream_event_rules_load(tmp_path: Path) -> None:
    path = tmp_path / "events.rules"
    path.write_text(SURICATA_RULES)
    ruleset = load_rules([path], None, None)
    assert len(ruleset.rules) == 13
    [skipped] = ruleset.skipped
    assert skipped.sid == 1 and "unknown event 'ipv4.trunc_pk'" in skipped.reason
