"""The inline engine's decisions, packet by packet (the NFQUEUE shell is tested in
namespaces by test_stories and test_inline_queue)."""
from __future__ import annotations

import json
from pathlib import Path

from scapy.layers.inet import IP, TCP

from netsec.flow import FlowConfig
from netsec.inline import Verdict
from netsec.ipsd import Ipsd

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


def ipsd(tmp_path: Path, depth: int = 1 << 20, clean: tuple[str, ...] = ()) -> Ipsd:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "a.rules").write_text(RULE)
    (tmp_path / "domains.json").write_text(json.dumps({GUEST: "family"}))
    return Ipsd([tmp_path / "rules"], tmp_path / "log", tmp_path / "domains.json",
                FlowConfig(inline=True, reassembly_depth=depth), clean)


def test_a_drop_rule_drops_the_packet_and_the_rest_of_its_flow_and_names_the_guest(
        tmp_path: Path) -> None:
    engine = ipsd(tmp_path)
    verdicts = [engine.decide(p) for p in flow([(True, b"GET /"), (False, b"EVIL"),
                                                (False, b"more")])]
    assert verdicts == [Verdict.ACCEPT] * 4 + [Verdict.DROP, Verdict.DROP]
    engine.out.flush()
    alerts = [json.loads(line) for line in (tmp_path / "log" / "eve.json").read_text()
              .splitlines() if '"alert"' in line]
    assert alerts[0]["alert"]["action"] == "blocked"
    assert alerts[0]["hyperwall"] == {"guest": "family", "guest_ip": GUEST}


def test_a_flow_past_the_depth_both_ways_is_bypassed(tmp_path: Path) -> None:
    engine = ipsd(tmp_path, depth=100)
    verdicts = [engine.decide(p) for p in flow([(True, b"a" * 150), (False, b"b" * 150),
                                                (False, b"c" * 10)])]
    assert verdicts[-1] is Verdict.BYPASS and Verdict.BYPASS not in verdicts[:4]


def test_a_destination_judged_clean_is_bypassed_at_once(tmp_path: Path) -> None:
    engine = ipsd(tmp_path, clean=("203.0.113.0/24",))
    assert engine.decide(flow([])[0]) is Verdict.BYPASS


def test_what_does_not_decode_does_not_pass(tmp_path: Path) -> None:
    assert ipsd(tmp_path).decide(b"\x45\x00garbage") is Verdict.DROP


def test_reload_brings_new_rules_and_keeps_flows(tmp_path: Path) -> None:
    engine = ipsd(tmp_path)
    first = flow([(True, b"GET /"), (False, b"fine"), (False, b"NEWBAD")], sport=40001)
    assert [engine.decide(p) for p in first[:4]] == [Verdict.ACCEPT] * 4
    (tmp_path / "rules" / "b.rules").write_text(RULE.replace("EVIL", "NEWBAD").replace(
        "sid:1", "sid:2"))
    (tmp_path / "rules" / "bad.rules").write_text("this is not a rule\n")
    engine.reload()
    # The flow from before the reload is still tracked (established), so the new rule,
    # which needs an established flow, applies to its next packet.
    assert engine.decide(first[4]) is Verdict.ACCEPT
    assert engine.decide(first[5]) is Verdict.DROP


def test_rules_the_provider_disabled_are_not_loaded(tmp_path: Path) -> None:
    engine = ipsd(tmp_path)
    assert [r.sid for r in engine.load_rules()] == [1]
    (tmp_path / "state.json").write_text(json.dumps({"disabled_sids": [1]}))
    engine.disabled_file = tmp_path / "state.json"
    assert engine.load_rules() == []
    (tmp_path / "state.json").write_text("{broken")
    assert [r.sid for r in engine.load_rules()] == [1]   # a bad file disables nothing
