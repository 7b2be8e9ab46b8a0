"""The engine end to end on scapy-crafted pcaps with real rules, with both prefilters."""
from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from netsec import flow as flow_mod
from netsec import pcap as pcap_mod
from netsec import rules as rules_mod
from netsec.cli import categories
from netsec.detect.prefilter import hyperscan
from netsec.engine import Engine, EngineConfig, Verdict
from tests.conftest import ET_OPEN

BACKENDS = ["python"] + (["hyperscan"] if hyperscan else [])
C, S = "10.0.0.5", "192.0.2.80"
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")  # fixed MACs: no ARP lookups


def tcp_session(requests: list[tuple[bytes, bytes]], sport: int = 41000,
                dport: int = 80, split: int | None = None) -> list:
    """A handshake, then each (request, response) as data plus ACKs, then FINs."""
    cseq, sseq, t = 1000, 5000, 0.0
    pkts = []

    def add(p):
        nonlocal t
        t += 0.01
        p.time = 1_700_000_000 + t
        pkts.append(p)

    c2s = lambda **kw: ETH / IP(src=C, dst=S) / TCP(sport=sport, dport=dport, **kw)  # noqa: E731
    s2c = lambda **kw: ETH / IP(src=S, dst=C) / TCP(sport=dport, dport=sport, **kw)  # noqa: E731
    add(c2s(flags="S", seq=cseq))
    add(s2c(flags="SA", seq=sseq, ack=cseq + 1))
    cseq, sseq = cseq + 1, sseq + 1
    add(c2s(flags="A", seq=cseq, ack=sseq))
    for req, resp in requests:
        parts = [req[:split], req[split:]] if split else [req]
        for part in parts:
            add(c2s(flags="PA", seq=cseq, ack=sseq) / part)
            cseq += len(part)
            add(s2c(flags="A", seq=sseq, ack=cseq))
        if resp:
            add(s2c(flags="PA", seq=sseq, ack=cseq) / resp)
            sseq += len(resp)
            add(c2s(flags="A", seq=cseq, ack=sseq))
    add(c2s(flags="FA", seq=cseq, ack=sseq))
    add(s2c(flags="FA", seq=sseq, ack=cseq + 1))
    add(c2s(flags="A", seq=cseq + 1, ack=sseq + 1))
    return pkts


GET = b"GET /evil.php?id=1 HTTP/1.1\r\nHost: bad.example\r\nUser-Agent: x\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/html\r\n\r\nhello"


def run(tmp_path: Path, pkts: list, rules: str, backend: str = "python",
        ips: bool = False, flow_config: flow_mod.FlowConfig | None = None) -> tuple[list, list]:
    pcap = tmp_path / "t.pcap"
    wrpcap(str(pcap), pkts)
    rule_file = tmp_path / "t.rules"
    rule_file.write_text(rules)
    cls = ET_OPEN / "classification.config"
    ruleset = rules_mod.load_rules([rule_file], None, cls if cls.exists() else None)
    assert len(ruleset.rules) == len([r for r in rules.splitlines() if r.strip()])
    table = flow_mod.FlowTable(flow_config or flow_mod.FlowConfig())
    engine = Engine(ruleset.rules, table, EngineConfig(
        simulate_ips=ips, prefilter=backend, categories=categories(cls) if cls.exists() else {}))
    verdicts = [engine.process(p) for p in pcap_mod.read_packets(pcap)]
    events = engine.take_events() + engine.finish()
    return verdicts, events


def alerts(events: list) -> list:
    return [e for e in events if e["event_type"] == "alert"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_http_uri_rule_alerts_once_with_suricatas_fields(tmp_path: Path, backend: str) -> None:
    rules = ('alert http any any -> any any (msg:"ET TEST evil uri"; flow:established,'
             'to_server; http.uri; content:"/evil.php"; classtype:trojan-activity; '
             'metadata:created_at 2024_01_01; sid:1000001; rev:3;)\n')
    _, events = run(tmp_path, tcp_session([(GET, OK)]), rules, backend)
    [a] = alerts(events)
    assert a["alert"] == {"action": "allowed", "gid": 1, "signature_id": 1000001, "rev": 3,
                          "signature": "ET TEST evil uri",
                          "category": "A Network Trojan was detected", "severity": 1,
                          "metadata": {"created_at": ["2024_01_01"]}}
    assert (a["src_ip"], a["src_port"], a["dest_ip"], a["dest_port"]) == (C, 41000, S, 80)
    assert a["proto"] == "TCP" and a["app_proto"] == "http" and a["direction"] == "to_server"
    assert a["flow_id"] > 0 and a["pcap_cnt"] == 4 and a["tx_id"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_content_split_across_segments_alerts_via_the_stream(tmp_path: Path,
                                                             backend: str) -> None:
    rules = 'alert tcp any any -> any 80 (msg:"split"; content:"evil.php"; sid:2;)\n'
    _, events = run(tmp_path, tcp_session([(GET, OK)], split=9), rules, backend)
    assert [a["alert"]["signature_id"] for a in alerts(events)] == [2]


@pytest.mark.parametrize("split", [None, 9])
def test_stream_context_does_not_alert_again_on_later_segments(tmp_path: Path,
                                                               split: int | None) -> None:
    rules = 'alert tcp any any -> any 80 (msg:"once"; content:"evil.php"; sid:4;)\n'
    clean = GET.replace(b"evil", b"good")
    pkts = tcp_session([(GET, OK), (clean, OK), (GET, OK)], split=split)
    _, events = run(tmp_path, pkts, rules)
    first, third = (6, 18) if split else (4, 12)
    assert [a["pcap_cnt"] for a in alerts(events)] == [first, third]


@pytest.mark.parametrize("backend", BACKENDS)
def test_simulated_ips_drop_blocks_and_drops_the_rest_of_the_flow(tmp_path: Path,
                                                                  backend: str) -> None:
    rules = 'drop tcp any any -> any 80 (msg:"drop evil"; content:"/evil.php"; sid:3;)\n'
    verdicts, events = run(tmp_path, tcp_session([(GET, OK)]), rules, backend, ips=True)
    [a] = alerts(events)
    assert a["alert"]["action"] == "blocked" and a["pcap_cnt"] == 4
    assert verdicts[:3] == [Verdict.ACCEPT] * 3
    assert verdicts[3:] == [Verdict.DROP] * (len(verdicts) - 3)
    drops = [e for e in events if e["event_type"] == "drop"]
    assert drops[0]["pcap_cnt"] == 4 and len(drops) == len(verdicts) - 3


def test_drop_rule_without_ips_only_alerts(tmp_path: Path) -> None:
    rules = 'drop tcp any any -> any 80 (msg:"drop evil"; content:"/evil.php"; sid:3;)\n'
    verdicts, events = run(tmp_path, tcp_session([(GET, OK)]), rules)
    assert set(verdicts) == {Verdict.ACCEPT}
    assert [a["alert"]["action"] for a in alerts(events)] == ["allowed"]
    assert not [e for e in events if e["event_type"] == "drop"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_flowbits_set_on_request_checked_on_response(tmp_path: Path, backend: str) -> None:
    rules = (
        'alert http any any -> any any (msg:"req"; flow:to_server; http.uri; '
        'content:"/evil.php"; flowbits:set,evil.req; flowbits:noalert; sid:10;)\n'
        'alert http any any -> any any (msg:"resp after evil req"; flow:to_client; '
        'flowbits:isset,evil.req; http.stat_code; content:"200"; sid:11;)\n'
        'alert http any any -> any any (msg:"resp without"; flow:to_client; '
        'flowbits:isset,other; http.stat_code; content:"200"; sid:12;)\n')
    _, events = run(tmp_path, tcp_session([(GET, OK)]), rules, backend)
    assert [(a["alert"]["signature_id"], a["direction"]) for a in alerts(events)] == \
        [(11, "to_client")]


def test_threshold_limit_one_by_src_over_three_packets(tmp_path: Path) -> None:
    rules = ('alert udp any any -> any 53 (msg:"dns q"; content:"example"; '
             'threshold:type limit, track by_src, count 1, seconds 60; sid:20;)\n')
    pkts = []
    for i in range(3):
        p = ETH / IP(src=C, dst="192.0.2.53") / UDP(sport=5000 + i, dport=53) / \
            DNS(id=i, qd=DNSQR(qname="example.com"))
        p.time = 1_700_000_000 + i
        pkts.append(p)
    _, events = run(tmp_path, pkts, rules)
    assert [a["pcap_cnt"] for a in alerts(events)] == [1]


def test_dns_query_rule(tmp_path: Path) -> None:
    rules = ('alert dns any any -> any any (msg:"dns"; dns.query; content:"evil.example"; '
             'nocase; sid:30;)\n')
    p = ETH / IP(src=C, dst="192.0.2.53") / UDP(sport=5353, dport=53) / \
        DNS(id=1, qd=DNSQR(qname="EVIL.example"))
    _, events = run(tmp_path, [p], rules)
    [a] = alerts(events)
    assert a["app_proto"] == "dns" and a["alert"]["signature_id"] == 30


def test_backends_yield_identical_alerts(tmp_path: Path) -> None:
    if hyperscan is None:
        pytest.skip("hyperscan not installed")
    rules = "".join(
        f'alert tcp any any -> any any (msg:"p{i}"; content:"{pat}"; {mod} sid:{100 + i};)\n'
        for i, (pat, mod) in enumerate([("evil", ""), ("EVIL", "nocase;"), ("php?id", ""),
                                        ("HTTP/1.1", ""), ("ok", "nocase;"), ("hello", ""),
                                        ("|0d 0a 0d 0a|", ""), ("absent", "")]))
    rules += ('alert http any any -> any any (msg:"host"; http.host; content:"bad"; '
              'sid:200;)\n')
    pkts = tcp_session([(GET, OK), (GET.replace(b"evil", b"good"), OK)], split=20)
    strip = lambda evs: [(e["event_type"], e.get("pcap_cnt"), e.get("alert", {}).get(  # noqa: E731
        "signature_id")) for e in evs]
    got = {b: strip(run(tmp_path, pkts, rules, b)[1]) for b in BACKENDS}
    assert got["python"] == got["hyperscan"]
    assert len(alerts(run(tmp_path, pkts, rules, "python")[1])) >= 8


@pytest.mark.skipif(not ET_OPEN.is_dir(), reason="ET Open rules not present")
def test_all_of_et_open_runs_on_a_mixed_pcap(tmp_path: Path) -> None:
    from netsec.detect.detector import Detector

    ruleset = rules_mod.load_rules(sorted(ET_OPEN.glob("*.rules")), None,
                                   ET_OPEN / "classification.config")
    assert len(ruleset.rules) > 15000
    det = Detector(ruleset.rules)
    pkts = tcp_session([(GET, OK)]) + [
        ETH / IP(src=C, dst="192.0.2.53") / UDP(sport=5353, dport=53) /
        DNS(id=1, qd=DNSQR(qname="example.com"))]
    wrpcap(str(tmp_path / "m.pcap"), pkts)
    table = flow_mod.FlowTable(flow_mod.FlowConfig())
    n = 0
    for pkt in pcap_mod.read_packets(tmp_path / "m.pcap"):
        det.inspect(table.process(pkt))
        n += 1
    assert n == len(pkts)
