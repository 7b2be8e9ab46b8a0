"""The detector on stand-in rules: candidates, headers, order, pass, once-per-tx, thresholds."""
from __future__ import annotations

import pytest

from netsec.detect.detector import Detector
from netsec.detect.prefilter import hyperscan
from netsec.inspection import PKT, STREAM, Inspection
from tests.ids_fakes import FakeFlow, FakeRule, OneOf, Spec, packet

BACKENDS = ["python"] + (["hyperscan"] if hyperscan else [])


def sids(matches) -> list[int]:
    return [m.rule.sid for m in matches]


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_prefilter_hits_and_patternless_rules_are_evaluated(backend: str) -> None:
    hit, miss = FakeRule(1, b"evil"), FakeRule(2, b"absent")
    slow = FakeRule(3, b"evil", fast_pattern=False)
    det = Detector([hit, miss, slow], prefilter=backend)
    pkt = packet(1, b"GET /evil")
    assert sids(det.inspect([Inspection(pkt, None, True, {PKT: pkt.payload})])) == [1, 3]
    assert (hit.calls, miss.calls, slow.calls) == (1, 0, 1)


def test_header_addresses_ports_and_bidirectional() -> None:
    one_way = FakeRule(1, b"x", src=OneOf("10.0.0.1"), dport=OneOf(80))
    both = FakeRule(2, b"x", src=OneOf("10.0.0.2"), sport=OneOf(80), bidirectional=True)
    udp = FakeRule(3, b"x", proto="udp")
    det = Detector([one_way, both, udp])
    fwd, rev = packet(1, b"x"), packet(2, b"x", src="10.0.0.2", dst="10.0.0.1",
                                       sport=80, dport=40000)
    assert sids(det.inspect([Inspection(fwd, None, True, {PKT: b"x"})])) == [1, 2]
    assert sids(det.inspect([Inspection(rev, None, False, {PKT: b"x"})])) == [2]


def test_action_order_and_pass_stops_the_packet_and_the_flow() -> None:
    alert, drop = FakeRule(1, b"x"), FakeRule(2, b"x", action="drop")
    det = Detector([alert, drop])
    flow = FakeFlow(7)
    pkt = packet(1, b"x")
    assert sids(det.inspect([Inspection(pkt, flow, True, {PKT: b"x"})])) == [2, 1]
    det = Detector([alert, drop, FakeRule(3, b"x", action="pass")])
    assert sids(det.inspect([Inspection(pkt, flow, True, {PKT: b"x"})])) == []
    later = packet(2, b"zz")
    assert det.inspect([Inspection(later, flow, True, {PKT: b"x"})]) == []


def test_packet_rule_alerts_once_per_packet_across_pkt_and_stream() -> None:
    det = Detector([FakeRule(1, b"split")])
    flow, pkt = FakeFlow(1), packet(1, b"lit")
    steps = [Inspection(pkt, flow, True, {PKT: b"lit"}),
             Inspection(pkt, flow, True, {STREAM: b"split"})]
    matches = det.inspect(steps)
    assert sids(matches) == [1] and STREAM in matches[0].ins.buffers


def test_app_rule_alerts_once_per_transaction() -> None:
    rule = FakeRule(1, b"/bad", buffer="http.uri", app_proto="http")
    det = Detector([rule])
    flow = FakeFlow(1, app_proto="http")
    step = lambda n, tx: Inspection(packet(n), flow, True, {"http.uri": b"/bad"}, tx)  # noqa: E731
    assert sids(det.inspect([step(1, 0)])) == [1]
    assert det.inspect([step(2, 0)]) == []
    assert sids(det.inspect([step(3, 1)])) == [1]
    other = FakeFlow(2, app_proto="dns")
    assert det.inspect([Inspection(packet(4), other, True, {"http.uri": b"/bad"}, 0)]) == []


def test_flowbits_setter_runs_before_reader_on_the_same_packet() -> None:
    reader = FakeRule(1, b"x", flowbits_read=("seen",))
    setter = FakeRule(2, b"x", flowbits_set=("seen",), noalert=True)
    det = Detector([reader, setter])
    matches = det.inspect([Inspection(packet(1, b"x"), FakeFlow(1), True, {PKT: b"x"})])
    assert [(m.rule.sid, m.alert) for m in matches] == [(2, False), (1, True)]


@pytest.mark.parametrize(("spec", "expected"), [
    (Spec("by_src", 1, 60, "limit"), [True, False, False, False]),
    (Spec("by_src", 2, 60, "threshold"), [False, True, False, True]),
    (Spec("by_src", 2, 60, "both"), [False, True, False, False]),
    (Spec("by_src", 2, 60), [False, False, True, True]),  # detection_filter
])
def test_thresholds(spec: Spec, expected: list[bool]) -> None:
    kw = {"detection_filter": spec} if spec.type is None else {"threshold": spec}
    det = Detector([FakeRule(1, b"x", **kw)])
    got = []
    for n in range(4):
        ms = det.inspect([Inspection(packet(n, b"x"), None, True, {PKT: b"x"})])
        got.append(ms[0].alert)
    assert got == expected


def test_threshold_window_restarts_and_tracks_by_source() -> None:
    det = Detector([FakeRule(1, b"x", threshold=Spec("by_src", 1, 10, "limit"))])
    run = lambda n, src: det.inspect(  # noqa: E731
        [Inspection(packet(n, b"x", src=src), None, True, {PKT: b"x"})])[0].alert
    assert [run(0, "1.1.1.1"), run(1, "1.1.1.1"), run(2, "2.2.2.2"), run(20, "1.1.1.1")] == \
        [True, False, True, True]
