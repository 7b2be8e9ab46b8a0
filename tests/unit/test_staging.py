"""Staging a provider's rules: loaded with the real loader, self-tested, swapped atomically
into a running engine whose flows keep their state."""
from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import wrpcap

from netsec.decode import Decoder, DecoderConfig
from netsec.engine import Engine, EngineConfig, Verdict
from netsec.flow import FlowConfig, FlowTable
from netsec.staging import (
    StagingError,
    build,
    builtin_case,
    bundle_cases,
    self_test,
)

GUEST, SERVER = "10.137.0.5", "198.51.100.7"
EVIL = ('drop tcp any any -> any 5555 (msg:"evil payload"; flow:established,to_server; '
        'content:"evilpayload"; sid:2; rev:1;)\n')


def rules_dir(tmp_path: Path, text: str, name: str = "r") -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "p.rules").write_text(text)
    return folder


def tcp_flow(payloads: list[bytes], dport: int = 5555) -> list[bytes]:
    """Handshake, then each client payload in order with the right sequence numbers."""
    c = lambda **kw: IP(src=GUEST, dst=SERVER) / TCP(sport=40000, dport=dport, **kw)  # noqa: E731
    s = lambda **kw: IP(src=SERVER, dst=GUEST) / TCP(sport=dport, dport=40000, **kw)  # noqa: E731
    pkts = [c(flags="S", seq=100), s(flags="SA", seq=500, ack=101), c(flags="A", seq=101,
                                                                      ack=501)]
    seq = 101
    for data in payloads:
        pkts.append(c(flags="PA", seq=seq, ack=501) / data)
        seq += len(data)
    return [bytes(p) for p in pkts]


def test_build_loads_with_the_real_loader_and_leaves_out_disabled_sids(tmp_path: Path) -> None:
    folder = rules_dir(tmp_path, EVIL + EVIL.replace("sid:2", "sid:3") + "alert nonsense\n")
    staged = build(7, folder, disabled=frozenset({3}))
    assert (staged.version, [r.sid for r in staged.rules]) == (7, [2])
    assert len(staged.skipped) == 1 and staged.disabled == {3}


def test_a_bundle_whose_rules_all_fail_to_load_is_refused_naming_them(tmp_path: Path) -> None:
    folder = rules_dir(tmp_path, "alert tcp any any -> any any (msg:\"x\"; bogus:1; sid:9;)\n")
    with pytest.raises(StagingError, match=r"no rule of the bundle loads \(1 skipped: p.rules:1"):
        build(1, folder)
    with pytest.raises(StagingError, match="no rule of the bundle loads"):
        build(1, rules_dir(tmp_path, "", "empty"))


def test_the_loader_raising_refuses_the_bundle(tmp_path: Path) -> None:
    class Exploding:  # variables the loader cannot even look at: it fails as a whole
        def __bool__(self) -> bool:
            raise RuntimeError("broken variables")
    folder = rules_dir(tmp_path, EVIL)
    with pytest.raises(StagingError, match="did not load: RuntimeError: broken variables"):
        build(1, folder, variables=Exploding())  # type: ignore[arg-type]


def test_the_builtin_benign_exchange_passes_a_sane_set_and_fails_one_dropping_it(
        tmp_path: Path) -> None:
    self_test(build(1, rules_dir(tmp_path, EVIL)), [builtin_case()])
    greedy = build(2, rules_dir(tmp_path, 'drop http any any -> any any (msg:"all of http"; '
                                          'sid:5; rev:1;)\n', "greedy"))
    with pytest.raises(StagingError, match=r"built-in benign HTTP exchange: packet \d+ is "
                                           r"benign and was dropped by sid 5 \(all of http\)"):
        self_test(greedy, [builtin_case()])


def test_the_builtin_case_decodes_as_a_full_exchange() -> None:
    decoder, flows = Decoder(DecoderConfig(checksums=True)), FlowTable()
    for n, (lt, frame) in enumerate(builtin_case().frames, 1):
        pkt = decoder.decode(lt, float(n), n, frame)
        assert pkt is not None and pkt.checksum_ok
        flows.process(pkt)
    (flow,) = set(flows._flows.values())
    assert flow.established and flow.app_proto == "http"


def test_a_bundle_capture_must_raise_the_sids_its_policy_expects(tmp_path: Path) -> None:
    staged_dir = tmp_path / "staged"
    (staged_dir / "selftest").mkdir(parents=True)
    wrpcap(str(staged_dir / "selftest" / "evil.pcap"),
           [IP(p) for p in tcp_flow([b"xx evilpayload"])])
    wrpcap(str(staged_dir / "selftest" / "quiet.pcap"), [IP(p) for p in tcp_flow([b"hello"])])
    staged = build(1, rules_dir(tmp_path, EVIL))
    cases = bundle_cases(staged_dir, {"selftest": {"evil.pcap": [2]}})
    assert [(c.name, set(c.expect)) for c in cases] == [("selftest/evil.pcap", {2}),
                                                         ("selftest/quiet.pcap", set())]
    self_test(staged, cases)
    other = build(2, rules_dir(tmp_path, EVIL.replace("evilpayload", "other"), "other"))
    with pytest.raises(StagingError, match=r"selftest/evil.pcap: expected sid\(s\) 2 did not"):
        self_test(other, cases)
    # the benign capture: a set dropping it is refused
    with pytest.raises(StagingError, match="selftest/quiet.pcap: packet 4 is benign"):
        self_test(build(3, rules_dir(tmp_path, EVIL.replace("evilpayload", "hello"), "h")),
                  cases[1:])


@pytest.mark.parametrize(("policy", "reason"), [
    ({"selftest": ["evil.pcap"]}, "must map capture names"),
    ({"selftest": {"missing.pcap": [1]}}, "'missing.pcap', which the bundle does not carry"),
    ({"selftest": {"evil.pcap": "2"}}, "'evil.pcap' must be a list of sids"),
    ({"selftest": {"evil.pcap": [True]}}, "must be a list of sids"),
])
def test_a_bad_selftest_policy_is_refused_naming_it(tmp_path: Path, policy: dict,
                                                    reason: str) -> None:
    (tmp_path / "selftest").mkdir()
    wrpcap(str(tmp_path / "selftest" / "evil.pcap"), [IP(p) for p in tcp_flow([b"x"])])
    with pytest.raises(StagingError, match=reason):
        bundle_cases(tmp_path, policy)


def test_a_damaged_capture_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "selftest").mkdir()
    (tmp_path / "selftest" / "bad.pcap").write_bytes(b"not a capture at all")
    with pytest.raises(StagingError, match="selftest/bad.pcap: .*not a pcap"):
        bundle_cases(tmp_path, {})


def test_a_swap_mid_flow_keeps_the_flow_and_the_new_rules_see_its_later_bytes(
        tmp_path: Path) -> None:
    # The old set's only rule sees this flow's first bytes but not its port: what the old
    # detector cached for the flow (rule 0's header does not fit) must not carry over to
    # the new set, whose rule 0 fits.
    old = build(1, rules_dir(tmp_path, EVIL.replace("any 5555", "any 9999")
                             .replace("evilpayload", "hello")))
    new = build(2, rules_dir(tmp_path, EVIL, "new"))
    flows = FlowTable(FlowConfig(inline=True))
    engine = Engine(list(old.rules), flows, EngineConfig(simulate_ips=True))
    decoder = Decoder()
    # "evilpayload" straddles the swap: "xx evil" arrives before it, "payload" after
    packets = tcp_flow([b"hello ", b"xx evil", b"payload", b"after"])
    verdicts = []
    for n, raw in enumerate(packets, 1):
        if n == 6:
            before = [(f.established, f.streams[1].next) for f in flows._flows.values()][0]
            engine.replace_rules(new.rules)
        pkt = decoder.decode(101, float(n), n, raw)
        assert pkt is not None
        verdicts.append(engine.process(pkt))
    assert len(flows) == 1 and before == (True, len(b"hello xx evil"))
    (flow,) = set(flows._flows.values())
    # every packet got a verdict; the flow kept its state and reassembled across the swap,
    # so the new rule saw "evilpayload" and dropped it and the rest of the flow
    assert verdicts == [Verdict.ACCEPT] * 5 + [Verdict.DROP, Verdict.DROP]
    assert flow.established and flow.streams[1].next == len(b"hello xx evilpayloadafter")
    alerts = [e["alert"]["signature_id"] for e in engine.take_events()
              if e["event_type"] == "alert"]
    assert alerts == [2]
