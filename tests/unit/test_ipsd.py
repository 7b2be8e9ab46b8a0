"""The inline engine's decisions, packet by packet: packets and times in, Decisions (verdict,
packets to send, EVE records, counters) out, no queue and no clock (the NFQUEUE shell is
tested in namespaces by test_stories, test_inline_queue and test_ipsd_inline)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP

from domains.syssec.ipsd import Bypass, Config, ConfigError, Decision, Inline, Ipsd
from netsec import eve
from netsec.engine import Verdict
from netsec.flow import FlowConfig
from tests.conftest import refused_naming_the_file

GUEST, SERVER = "10.137.0.3", "203.0.113.10"
RULE = ('drop tcp any any -> $HOME_NET any (msg:"evil reply"; flow:established,to_client; '
        'content:"EVIL"; sid:1; rev:1;)\n')


def flow(payloads: list[tuple[bool, bytes]], sport: int = 40000) -> list[bytes]:
    """Handshake, then each (from_client, data) in order, with the right sequence numbers."""
    c = lambda **kw: IP(src=GUEST, dst=SERVER) / TCP(sport=sport, dport=80, **kw)  # noqa: E731
    s = lambda **kw: IP(src=SERVER, dst=GUEST) / TCP(sport=80, dport=sport, **kw)  # noqa: E731
    pkts = [c(flags="S", seq=100), s(flags="SA", seq=500, ack=101), c(flags="A", seq=101,
                                                                      ack=501)]
    cseq, sseq = 101, 501
    for from_client, data in payloads:
        if from_client:
            pkts.append(c(flags="PA", seq=cseq, ack=sseq) / data)
            cseq += len(data)
        else:
            pkts.append(s(flags="PA", seq=sseq, ack=cseq) / data)
            sseq += len(data)
    return [bytes(p) for p in pkts]


def ipsd(tmp_path: Path, depth: int = 1 << 20, clean: tuple[str, ...] = (),
         bypass_after_depth: bool = True) -> Ipsd:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "a.rules").write_text(RULE)
    (tmp_path / "domains.json").write_text(json.dumps({GUEST: "family"}))
    return Ipsd([tmp_path / "rules"], tmp_path / "log", tmp_path / "domains.json",
                FlowConfig(inline=True, reassembly_depth=depth), clean,
                bypass_after_depth=bypass_after_depth)


T0 = 1_700_000_000.0   # the time the decisions are given; no clock is read


def decide(engine: Ipsd, packets: list[bytes], t0: float = T0) -> list[Decision]:
    """Each packet's decision, the i-th arriving at t0 + i seconds."""
    return [engine.decide(p, t0 + i) for i, p in enumerate(packets)]


def verdicts(decisions: list[Decision]) -> list[Verdict | None]:
    return [d.verdict for d in decisions]


def records(decisions: list[Decision], event_type: str) -> list[dict]:
    return [e for d in decisions for e in d.eve if e["event_type"] == event_type]


def test_a_drop_rule_drops_the_packet_and_the_rest_of_its_flow_and_names_the_guest(
        tmp_path: Path) -> None:
    got = decide(ipsd(tmp_path), flow([(True, b"GET /"), (False, b"EVIL"), (False, b"more")]))
    assert verdicts(got) == [Verdict.ACCEPT] * 4 + [Verdict.DROP, Verdict.DROP]
    assert [d.eve for d in got[:4]] == [()] * 4     # the control: clean packets, no record
    [alert] = records(got, "alert")
    assert alert["alert"]["action"] == "blocked" and alert["pcap_cnt"] == 5
    assert alert["timestamp"] == eve.timestamp(T0 + 4)   # the time given, not the clock's
    assert alert["hyperwall"] == {"domain": "family", "guest": "family", "guest_ip": GUEST}
    assert [e["pcap_cnt"] for e in records(got, "drop")] == [5, 6]
    assert all(d.send == () and d.count == () for d in got)


def test_a_download_past_the_depth_is_bypassed(tmp_path: Path) -> None:
    got = decide(ipsd(tmp_path, depth=100), flow([(True, b"GET /"), (False, b"b" * 60),
                                                 (False, b"c" * 60), (False, b"d" * 10)]))
    assert verdicts(got) == [Verdict.ACCEPT] * 5 + [Verdict.BYPASS] * 2
    assert [d.count for d in got] == [()] * 5 + [("bypassed_depth",)] * 2


def test_a_destination_judged_clean_is_bypassed_at_once(tmp_path: Path) -> None:
    engine = ipsd(tmp_path, clean=("203.0.113.0/24",))
    assert engine.decide(flow([])[0], T0) == Decision(Verdict.BYPASS,
                                                      count=("bypassed_clean",))


def test_what_does_not_decode_does_not_pass(tmp_path: Path) -> None:
    assert ipsd(tmp_path).decide(b"\x45\x00garbage", T0) == Decision(
        Verdict.DROP, count=("undecodable",))


def test_a_lone_fragment_is_logged_and_never_passes(tmp_path: Path) -> None:
    engine = ipsd(tmp_path, clean=("203.0.113.0/24",))
    # the last flow seen is a clean one
    assert engine.decide(flow([])[0], T0).verdict is Verdict.BYPASS
    udp = bytes(UDP(sport=4444, dport=53, len=8 + 32, chksum=0)) + b"A" * 32
    frag = lambda off, data, more: bytes(IP(  # noqa: E731
        src=GUEST, dst="198.51.100.7", id=5, proto=17, frag=off // 8,
        flags="MF" if more else 0) / data)
    # the overlapping fragment: its anomaly is logged, and no other flow's verdict applies
    got = decide(engine, [frag(0, udp[:24], True), frag(8, b"X" * 16, True),
                          frag(24, udp[24:], False)], T0 + 1)
    assert verdicts(got) == [Verdict.DROP, Verdict.DROP, Verdict.ACCEPT]  # the whole datagram
    assert [a["anomaly"]["event"] for a in records(got, "anomaly")] == [
        "decoder.ipv4.frag_overlap"]
    assert got[1].count == ("undecodable",)


def test_reload_brings_new_rules_and_keeps_flows(tmp_path: Path) -> None:
    engine = ipsd(tmp_path)
    first = flow([(True, b"GET /"), (False, b"fine"), (False, b"NEWBAD")], sport=40001)
    assert verdicts(decide(engine, first[:4])) == [Verdict.ACCEPT] * 4
    (tmp_path / "rules" / "b.rules").write_text(RULE.replace("EVIL", "NEWBAD").replace(
        "sid:1", "sid:2"))
    (tmp_path / "rules" / "bad.rules").write_text("this is not a rule\n")
    engine.reload()
    # The flow from before the reload is still tracked (established), so the new rule,
    # which needs an established flow, applies to its next packet.
    assert verdicts(decide(engine, first[4:], T0 + 4)) == [Verdict.ACCEPT, Verdict.DROP]


def test_rules_the_provider_disabled_are_not_loaded(tmp_path: Path) -> None:
    engine = ipsd(tmp_path)
    assert [r.sid for r in engine.load_rules()] == [1]
    (tmp_path / "state.json").write_text(json.dumps({"disabled_sids": [1]}))
    engine.disabled_file = tmp_path / "state.json"
    assert engine.load_rules() == []
    (tmp_path / "state.json").write_text("{broken")
    assert [r.sid for r in engine.load_rules()] == [1]   # a bad file disables nothing


def test_without_bypass_after_depth_the_engine_keeps_every_packet(tmp_path: Path) -> None:
    packets = flow([(True, b"a" * 150), (False, b"b" * 150), (False, b"c" * 10)])
    assert Verdict.BYPASS not in verdicts(decide(ipsd(tmp_path, 100, bypass_after_depth=False),
                                                 packets))
    assert Verdict.BYPASS in verdicts(decide(ipsd(tmp_path, 100), packets))


def test_a_clean_server_port_is_bypassed_and_other_ports_are_not(tmp_path: Path) -> None:
    assert ipsd(tmp_path, clean=("80",)).decide(flow([])[0], T0).verdict is Verdict.BYPASS
    assert ipsd(tmp_path, clean=("443",)).decide(flow([])[0], T0).verdict is Verdict.ACCEPT


@pytest.mark.parametrize("entry, says", [("example.org", "'example.org' is not an address"),
                                         ("70000", "70000 is not in 1-65535")])
def test_a_bad_bypass_entry_is_refused_naming_it(entry: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Bypass([entry], "test.yaml")


def test_the_config_file_gives_depth_bypass_and_vars(tmp_path: Path) -> None:
    cfg = tmp_path / "suricata.yaml"
    cfg.write_text("vars:\n  address-groups:\n    HOME_NET: '[10.137.0.0/16]'\n"
                   "stream:\n  reassembly:\n    depth: 64kb\nbypass: ['198.51.100.0/24', 443]\n")
    got = Config.load(cfg)
    assert got.flow == {"reassembly_depth": 65536}
    assert got.bypass == ["198.51.100.0/24", "443"]
    assert got.variables is not None and got.variables.address("HOME_NET") == "[10.137.0.0/16]"


@pytest.mark.parametrize("text, says", [
    ("stream:\n  reassembly:\n    depth: lots\n", "not a size"),
    ("bypass: 443\n", "bypass: want a list"),
    ("stream: [1]\n", "stream: not a mapping"),
    ("a: [unclosed\n", "suricata.yaml"),
])
def test_a_bad_config_file_is_refused_naming_the_file(tmp_path: Path, text: str,
                                                      says: str) -> None:
    refused_naming_the_file(tmp_path / "suricata.yaml", text, Config.load, ConfigError, says)


def test_rules_that_all_fail_are_fatal_at_start_but_not_at_reload(tmp_path: Path) -> None:
    engine = ipsd(tmp_path)
    (tmp_path / "rules" / "a.rules").write_text("this is not a rule\n")
    assert engine.reload() is False and engine.rules_loaded == 1
    assert engine.stats()["reload_failures"] == 1
    with pytest.raises(ConfigError, match="no rule loaded"):
        Ipsd([tmp_path / "rules"], tmp_path / "log", None, FlowConfig(inline=True))
    # No rules at all (an empty folder, nothing given) is not an error: nothing to match.
    (tmp_path / "empty").mkdir()
    assert Ipsd([tmp_path / "empty"], tmp_path / "log", None, FlowConfig()).rules_loaded == 0


def test_a_reject_rule_sends_resets_once_per_flow_and_drops_the_rest(tmp_path: Path) -> None:
    engine = ipsd(tmp_path)
    (tmp_path / "rules" / "a.rules").write_text(RULE.replace("drop", "reject"))
    engine.reload()
    got = decide(engine, flow([(True, b"GET /"), (False, b"EVIL"), (False, b"more")]))
    assert verdicts(got) == [Verdict.ACCEPT] * 4 + [Verdict.REJECT, Verdict.DROP]
    resets = [IP(p) for p in got[4].send]
    assert [(r.src, r.dst, r[TCP].flags.R) for r in resets] == [(GUEST, SERVER, True),
                                                               (SERVER, GUEST, True)]
    assert got[4].count == ("rejected_flows",)
    assert (got[5].send, got[5].count) == ((), ())


def test_the_shell_carries_out_the_decisions(tmp_path: Path) -> None:
    """Inline, the NFQUEUE loop's callback: EVE written, counters bumped, the reject's
    answers queued to send, the verdict handed back."""
    engine = ipsd(tmp_path)
    (tmp_path / "rules" / "a.rules").write_text(RULE.replace("drop", "reject"))
    engine.reload()
    shell = Inline(engine, clock=lambda: T0)
    got = [shell(p) for p in flow([(True, b"GET /"), (False, b"EVIL"), (False, b"more")])]
    assert got == [Verdict.ACCEPT] * 4 + [Verdict.REJECT, Verdict.DROP]
    assert [IP(p)[TCP].flags.R for p in shell.take_outbox()] == [True, True]
    assert shell.take_outbox() == []
    assert shell(b"\x45junk") is Verdict.DROP
    engine.out.flush()
    written = [json.loads(line) for line in (tmp_path / "log" / "eve.json").read_text()
               .splitlines()]
    assert [(e["event_type"], e["timestamp"]) for e in written] == [
        ("alert", eve.timestamp(T0)), ("drop", eve.timestamp(T0)), ("drop", eve.timestamp(T0))]
    assert written[0]["hyperwall"]["guest"] == "family"
    stats = engine.stats()
    assert (stats["rejected_flows"], stats["undecodable"], stats["packets"]) == (1, 1, 6)


def test_the_domains_map_is_reread_when_the_controller_replaces_it(tmp_path: Path) -> None:
    engine = ipsd(tmp_path)
    assert not engine.domains_changed()
    new = tmp_path / "domains.json.tmp"
    new.write_text(json.dumps({GUEST: "work"}))
    new.replace(tmp_path / "domains.json")
    assert engine.domains_changed()
    engine.load_domains()
    assert engine.domains == {GUEST: "work"} and not engine.domains_changed()
    (tmp_path / "domains.json").write_text("[1, 2]")   # not a map: the old one stays
    engine.load_domains()
    assert engine.domains == {GUEST: "work"}


def test_stats_count_the_inline_decisions(tmp_path: Path) -> None:
    engine = ipsd(tmp_path, depth=100)
    shell = Inline(engine, clock=lambda: T0)
    for p in flow([(True, b"a" * 150), (False, b"b" * 150), (False, b"c" * 10)]):
        shell(p)
    shell(b"\x45junk")
    stats = engine.stats()
    assert (stats["packets"], stats["bypassed_depth"], stats["undecodable"]) == (6, 3, 1)
    event = engine.stats_event({"accepted": 5})
    assert event["event_type"] == "stats" and event["stats"]["ips"]["bypassed"] == 3
