"""sys-sec's policy core: xenstore keys to vifs, and the category rules, run through the real
rule loader and engine on scapy packets."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS

from domains.syssec.ipsd import category_of
from netsec.blocklist import Blocklist
from netsec.decode import Decoder
from netsec.engine import Engine, EngineConfig, Verdict
from netsec.flow import FlowConfig, FlowTable
from netsec.policy import POLICY_SID_BASE, VifKeys, category_rules, plan
from netsec.rules import load_rules

FILTERED, OPEN, SITE = "10.137.0.3", "10.137.0.4", "203.0.113.12"


def test_plan_routes_good_vifs_and_shuts_or_skips_bad_ones() -> None:
    p = plan([VifKeys(3, 0, b"10.137.0.3", b"filtered", b"family"),
              VifKeys(4, 0, b"10.137.0.4", b"sideways", b"untrusted"),
              VifKeys(5, 0, b"192.168.1.7", b"internet", b"work"),
              VifKeys(6, 0, b"\xff\xfe", b"internet", None),
              VifKeys(7, 0, b"10.137.0.8", b"\xffinternet", None)])
    assert [(v.domid, v.policy) for v in p.vifs] == [(3, "filtered"), (4, "offline"),
                                                     (7, "offline")]
    assert p.names == {"10.137.0.3": "family", "10.137.0.4": "untrusted",
                       "10.137.0.8": "domain-7"}
    assert p.filtered == ["10.137.0.3"]
    assert len(p.errors) == 4
    assert "backend/vif/4/0/hyperwall/policy: b'sideways' is not one of" in p.errors[0]
    assert any("backend/vif/5/0/ip" in e and "not a guest address" in e for e in p.errors)


def test_an_address_claimed_twice_routes_the_first_vif_only() -> None:
    p = plan([VifKeys(4, 0, b"10.137.0.3", b"internet", b"untrusted"),
              VifKeys(3, 0, b"10.137.0.3", b"filtered", b"family")])
    assert [(v.domid, v.policy) for v in p.vifs] == [(3, "filtered")]
    assert p.errors == ["backend/vif/4/0/ip: 10.137.0.3 is already family's; vif not routed"]


def test_what_is_in_force_and_the_domains_map_for_the_engine() -> None:
    p = plan([VifKeys(5, 0, b"10.137.0.6", b"internet", b"work"),
              VifKeys(3, 1, b"10.137.0.3", b"bogus", b"family")])
    assert p.applied_text() == "3/1 family 10.137.0.3 offline\n5/0 work 10.137.0.6 internet"
    assert json.loads(p.domains_json()) == {"10.137.0.3": "family", "10.137.0.6": "work"}


def blocklist(tmp_path: Path) -> Blocklist:
    (tmp_path / "adult.txt").write_text("adult.example\n")
    return Blocklist.from_files([tmp_path / "adult.txt"])[0]


def test_no_filtered_guest_no_rules(tmp_path: Path) -> None:
    assert category_rules(blocklist(tmp_path), []) == ""


def session(src: str, payload: bytes, dport: int) -> list[bytes]:
    c = lambda **kw: IP(src=src, dst=SITE) / TCP(sport=40000, dport=dport, **kw)  # noqa: E731
    s = lambda **kw: IP(src=SITE, dst=src) / TCP(sport=dport, dport=40000, **kw)  # noqa: E731
    return [bytes(p) for p in (c(flags="S", seq=1), s(flags="SA", seq=9, ack=2),
                               c(flags="A", seq=2, ack=10),
                               c(flags="PA", seq=2, ack=10) / payload)]


def client_hello(sni: str) -> bytes:
    return bytes(TLS(version=0x0301, msg=[TLSClientHello(version=0x0303, ciphers=[0xC02B], ext=[
        TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())])])]))


def http_get(host: str) -> bytes:
    return f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


@pytest.mark.parametrize(("src", "payload", "port", "blocked"), [
    (FILTERED, client_hello("adult.example"), 443, True),
    (FILTERED, client_hello("WWW.Adult.Example"), 443, True),
    (FILTERED, client_hello("notadult.example"), 443, False),
    (OPEN, client_hello("adult.example"), 443, False),
    (FILTERED, http_get("www.adult.example"), 80, True),
    (FILTERED, http_get("adult.example.net"), 80, False),
])
def test_category_rules_drop_by_sni_and_host_for_filtered_guests_only(
        tmp_path: Path, src: str, payload: bytes, port: int, blocked: bool) -> None:
    rules_file = tmp_path / "policy.rules"
    rules_file.write_text(category_rules(blocklist(tmp_path), [FILTERED]))
    ruleset = load_rules([rules_file])
    assert len(ruleset.rules) == 2 and not ruleset.skipped
    engine = Engine(ruleset.rules, FlowTable(FlowConfig(inline=True)),
                    EngineConfig(simulate_ips=True))
    decoder = Decoder()
    verdicts = [engine.process(decoder.decode(101, 1.0 + i, i, raw))
                for i, raw in enumerate(session(src, payload, port))]
    assert (verdicts[-1] is Verdict.DROP) == blocked
    events = [e for e in engine.take_events() if e["event_type"] == "alert"]
    if blocked:
        hw = category_of(events[0])
        assert hw == {"category": "adult", "site": "adult.example",
                      "by": "sni" if port == 443 else "host"}
        assert events[0]["alert"]["signature_id"] > POLICY_SID_BASE
    else:
        assert not events


def test_category_rules_follow_the_schedule(tmp_path: Path) -> None:
    (tmp_path / "games.txt").write_text("games.example\n")
    (tmp_path / "adult.txt").write_text("adult.example\n")
    lists = Blocklist.from_files([tmp_path / "adult.txt", tmp_path / "games.txt"],
                                 {"games": ["mon-fri 08:00-16:00"]})[0]
    school = dt.datetime(2026, 11, 24, 10, 0)      # a Tuesday morning
    evening = dt.datetime(2026, 11, 24, 19, 0)
    assert "games.example" in category_rules(lists, [FILTERED], school)
    at_night = category_rules(lists, [FILTERED], evening)
    assert "games.example" not in at_night and "adult.example" in at_night
    # The sids of what stays do not move when a category comes and goes.
    sids = lambda text: {line.split("sid:")[1].split(";")[0] for line in text.splitlines()}  # noqa: E731
    assert sids(at_night) <= sids(category_rules(lists, [FILTERED], school))
