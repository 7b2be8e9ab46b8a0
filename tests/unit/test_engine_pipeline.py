"""The engine over stand-in flows: IDS vs simulated IPS verdicts and the events they leave."""
from __future__ import annotations

import gc
import weakref

from netsec.engine import Engine, EngineConfig, Verdict, settle_heap
from tests.ids_fakes import FakeFlows, FakeRule, packet


def test_ids_mode_drop_rule_only_alerts_allowed() -> None:
    eng = Engine([FakeRule(1, b"bad", action="drop")], FakeFlows())
    assert eng.process(packet(1, b"bad")) is Verdict.ACCEPT
    events = eng.take_events()
    assert [e["event_type"] for e in events] == ["alert"]
    assert events[0]["alert"]["action"] == "allowed"
    assert eng.take_events() == []


def test_simulated_ips_blocks_and_drops_the_rest_of_the_flow() -> None:
    eng = Engine([FakeRule(1, b"bad", action="drop")], FakeFlows(),
                 EngineConfig(simulate_ips=True))
    assert eng.process(packet(1, b"ok")) is Verdict.ACCEPT
    assert eng.process(packet(2, b"bad")) is Verdict.DROP
    ev = eng.take_events()
    assert [(e["event_type"], e["pcap_cnt"]) for e in ev] == [("alert", 2), ("drop", 2)]
    assert ev[0]["alert"]["action"] == "blocked"
    assert eng.process(packet(3, b"fine")) is Verdict.DROP
    assert [e["event_type"] for e in eng.take_events()] == ["drop"]
    other_flow = packet(4, b"fine", sport=40001)
    assert eng.process(other_flow) is Verdict.ACCEPT
    assert eng.counters.drops == 2 and eng.counters.alerts == 1


def test_reject_and_alert_fields_from_the_rule() -> None:
    rule = FakeRule(9, b"x", action="reject", classtype="trojan-activity", priority=1,
                    metadata={"created_at": ["2020_01_01"]}, msg="ET TEST x", rev=4)
    eng = Engine([rule], FakeFlows(), EngineConfig(
        simulate_ips=True, categories={"trojan-activity": "A Network Trojan was detected"}))
    assert eng.process(packet(1, b"x")) is Verdict.REJECT
    alert = eng.take_events()[0]["alert"]
    assert alert == {"action": "blocked", "gid": 1, "signature_id": 9, "rev": 4,
                     "signature": "ET TEST x", "category": "A Network Trojan was detected",
                     "severity": 1, "metadata": {"created_at": ["2020_01_01"]}}


def test_a_reject_is_the_matching_packets_verdict_and_the_flows_rest_is_dropped() -> None:
    """As Suricata's flow drop: the ends are answered once, for the packet that matched."""
    eng = Engine([FakeRule(9, b"x", action="reject")], FakeFlows(),
                 EngineConfig(simulate_ips=True))
    judged = [eng.judge(packet(i, data)) for i, data in enumerate([b"ok", b"x", b"y"], 1)]
    assert [j.verdict for j in judged] == [Verdict.ACCEPT, Verdict.REJECT, Verdict.DROP]
    assert judged[0].flow is not None and judged[1].flow is judged[2].flow is judged[0].flow


def test_stats_counts_decoder_and_alerts() -> None:
    eng = Engine([FakeRule(1, b"x")], FakeFlows())
    eng.process(packet(1, b"x"))
    eng.process(packet(2, b"y", proto=17))
    st = eng.stats_event()
    assert st["event_type"] == "stats"
    assert st["stats"]["decoder"]["pkts"] == 2
    assert (st["stats"]["decoder"]["tcp"], st["stats"]["decoder"]["udp"]) == (1, 1)
    assert st["stats"]["detect"] == {"alert": 1} and st["stats"]["uptime"] == 1


def test_settled_rules_leave_the_collector_and_a_reload_frees_the_old_set() -> None:
    class Node:
        peer: object = None

    old_rules = Node()
    old_rules.peer = old_rules   # a cycle, as rule objects have: only the collector frees it
    gone = weakref.ref(old_rules)
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        del old_rules
        gc.collect()
        assert gone() is not None, "frozen objects are out of the collector's sight"
        settle_heap()   # what a reload does once the new rules are in
        assert gone() is None, "the replaced rule set stayed frozen: every reload leaks it"
    finally:
        gc.unfreeze()
