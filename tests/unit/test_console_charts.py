"""The console's server-side SVG charts: counts in the right buckets, readable without colour."""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from dom0.console import charts

NOW = dt.datetime(2026, 12, 4, 13, 30, tzinfo=dt.UTC)
SVG = "{http://www.w3.org/2000/svg}"


def block(category: str, when: dt.datetime, site: str = "x.example") -> dict[str, object]:
    return {"timestamp": when.isoformat(), "event_type": "alert",
            "hyperwall": {"category": category, "site": site}}


def alert(when: dt.datetime) -> dict[str, object]:
    return {"timestamp": when.isoformat(), "event_type": "alert",
            "alert": {"action": "blocked", "signature_id": 1}}


def test_records_fall_into_hours_and_days() -> None:
    s = charts.series([block("adult", NOW), block("adult", NOW - dt.timedelta(hours=1)),
                       block("gambling", NOW - dt.timedelta(days=2)),
                       block("adult", NOW - dt.timedelta(days=30)), alert(NOW),
                       {"event_type": "alert", "timestamp": "garbage"},
                       {"event_type": "dns", "timestamp": NOW.isoformat()}], NOW)
    hours, by_hour = s.blocked_by_hour
    assert hours[-1] == "13" and by_hour["adult"][-1] == 1 and by_hour["adult"][-2] == 1
    assert "gambling" not in by_hour
    days, by_day = s.blocked_by_day
    assert days[-1] == "Fri 04" and by_day["adult"][-1] == 2 and by_day["gambling"][-3] == 1
    assert sum(s.alerts_by_hour[1]["blocked"]) == 1


def test_the_chart_is_valid_svg_with_patterns_text_and_a_description() -> None:
    s = charts.series([block("adult", NOW), block("gambling", NOW), block("gambling", NOW)],
                      NOW)
    svg = charts.bars(s.blocked_by_hour, "Blocked <per> hour")
    root = ET.fromstring(svg)
    assert root.find(f"{SVG}title").text == "Blocked <per> hour"   # escaped, then parsed
    assert "adult: 1 in all" in root.find(f"{SVG}desc").text
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "3" in texts    # the stacked bar's total, as text
    assert any(t and t.startswith("adult (1, pattern: solid)") for t in texts)
    assert any(t and t.startswith("gambling (2, pattern: stripes)") for t in texts)
    assert "style=" not in svg   # nothing the CSP's style-src would block


def test_an_empty_period_says_so() -> None:
    svg = charts.bars(charts.series([], NOW).blocked_by_day, "Per day")
    assert "nothing in this period" in svg
    ET.fromstring(svg)


def test_names_from_the_network_are_escaped() -> None:
    svg = charts.bars(charts.series([block("<script>x</script>", NOW)], NOW).blocked_by_hour,
                      "t")
    assert "<script>" not in svg
    ET.fromstring(svg)
