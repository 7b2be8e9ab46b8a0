"""The parent's report from EVE events: categories, alerts, destinations, time and guest filters."""
import datetime as dt
import json

import pytest

from netsec.report import build_report, parse_since, parse_timestamp

IP = "10.137.0.6"


def ev(ts: str, kind: str, **kw: object) -> dict:
    return {"timestamp": f"2026-11-24T{ts}.000000+0000", "event_type": kind, **kw}


EVENTS = [
    ev("08:00:00", "alert", src_ip=IP, dest_ip="10.137.255.254",
       alert={"signature_id": 9000001, "signature": "HYPERWALL category gambling",
              "action": "blocked"},
       hyperwall={"guest": "family", "category": "gambling", "site": "casino.example",
                  "by": "dns"}),
    ev("09:00:00", "alert", src_ip=IP, dest_ip="10.137.255.254",
       hyperwall={"guest": "family", "category": "gambling", "site": "casino.example",
                  "by": "sni"}),
    ev("09:01:00", "alert", src_ip="198.51.100.1", dest_ip=IP, flow_id=5,
       alert={"signature_id": 2019401, "signature": "ET MALWARE bad download",
              "action": "blocked"}),
    ev("09:02:00", "tls", src_ip=IP, dest_ip="198.51.100.1", flow_id=7,
       tls={"sni": "news.example"}),
    ev("09:03:00", "flow", src_ip=IP, dest_ip="198.51.100.1", flow_id=7),
    ev("09:04:00", "flow", src_ip=IP, dest_ip="198.51.100.9", flow_id=8),
    ev("09:05:00", "flow", src_ip="10.137.0.3", dest_ip="198.51.100.1", flow_id=9),  # work
    ev("09:06:00", "alert", src_ip="10.137.0.3", dest_ip="198.51.100.1",
       alert={"signature_id": 1, "signature": "not family's", "action": "allowed"}),
]


def test_report_for_one_guest() -> None:
    r = build_report(EVENTS, "family", IP).as_json()
    assert r["events"] == 6
    assert r["blocked"] == [{"category": "gambling", "requests": 2,
                             "sites": [{"site": "casino.example", "requests": 2}]}]
    assert r["alerts"] == [{"signature_id": 2019401, "signature": "ET MALWARE bad download",
                            "action": "blocked", "count": 1}]
    assert {d["destination"] for d in r["top_destinations"]} == {"news.example", "198.51.100.9"}
    json.dumps(r)  # serialisable as is


def test_since_filters_older_events() -> None:
    since = parse_timestamp("2026-11-24T08:30:00+00:00")
    r = build_report(EVENTS, "family", IP, since).as_json()
    assert r["blocked"][0]["requests"] == 1 and r["events"] == 5


def test_text_is_a_table() -> None:
    text = build_report(EVENTS, "family", IP).as_text()
    assert "Blocked sites by category" in text and "gambling" in text
    assert "ET MALWARE bad download" in text and "news.example" in text
    assert "not family's" not in text


def test_garbage_events_are_ignored() -> None:
    r = build_report([None, "x", {"src_ip": IP}, ev("bad", "flow", src_ip=IP)],  # type: ignore[list-item]
                     "family", IP, since=parse_timestamp("2026-01-01T00:00"))
    assert r.events == 0


def test_since_forms() -> None:
    now = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)
    assert parse_since("12h", now) == dt.datetime(2026, 11, 24, 0, tzinfo=dt.UTC)
    assert parse_since("2026-11-20T10:00", now).day == 20
    with pytest.raises(ValueError, match="is not a time"):
        parse_since("yesterday", now)
