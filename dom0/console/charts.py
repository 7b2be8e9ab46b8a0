"""The console's charts, drawn on the server as SVG (sans-IO: records and a time in, markup
out), so that they need no script and no library in the browser and pass the CSP.

Readable without colour: each category has its own fill pattern (stripes, dots, cross-hatch,
...) shown in the legend with its name, every bar carries its count as text, and the chart
has a <title> and <desc> for screen readers. The markup is built from escaped strings only.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from typing import Any

from netsec.report import parse_timestamp

HOURS, DAYS = 24, 7
# (pattern id, the pattern's content on a 8x8 tile): distinct by shape, not by hue.
PATTERNS = (
    ("solid", '<rect width="8" height="8" fill="#333"/>'),
    ("stripes", '<path d="M0 8L8 0M-2 2L2 -2M6 10L10 6" stroke="#333" stroke-width="2"/>'),
    ("dots", '<circle cx="4" cy="4" r="2" fill="#333"/>'),
    ("cross", '<path d="M0 0L8 8M8 0L0 8" stroke="#333" stroke-width="1.5"/>'),
    ("grid", '<path d="M4 0V8M0 4H8" stroke="#333" stroke-width="1.5"/>'),
    ("hollow", '<rect x="1" y="1" width="6" height="6" fill="none" stroke="#333"/>'),
)


@dataclass
class Series:
    """Counts per category per bucket; a bucket's label is its hour or day (UTC)."""

    blocked_by_hour: tuple[list[str], dict[str, list[int]]]
    blocked_by_day: tuple[list[str], dict[str, list[int]]]
    alerts_by_hour: tuple[list[str], dict[str, list[int]]]


def series(records: Iterable[dict[str, Any]], now: dt.datetime) -> Series:
    """Category blocks per hour (last 24) and per day (last 7), other alerts per hour."""
    hour0 = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=HOURS - 1)
    day0 = now.replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=DAYS - 1)
    by_hour: dict[str, list[int]] = defaultdict(lambda: [0] * HOURS)
    by_day: dict[str, list[int]] = defaultdict(lambda: [0] * DAYS)
    alerts: dict[str, list[int]] = defaultdict(lambda: [0] * HOURS)
    for r in records:
        if r.get("event_type") != "alert":
            continue
        try:
            when = parse_timestamp(str(r.get("timestamp", "")))
        except ValueError:
            continue
        hour = int((when - hour0).total_seconds() // 3600)
        day = (when.date() - day0.date()).days
        hw = r.get("hyperwall")
        if isinstance(hw, dict) and hw.get("category"):
            category = str(hw["category"])
            if 0 <= hour < HOURS:
                by_hour[category][hour] += 1
            if 0 <= day < DAYS:
                by_day[category][day] += 1
        elif 0 <= hour < HOURS:
            a = r.get("alert")
            a = a if isinstance(a, dict) else {}
            alerts["blocked" if a.get("action") == "blocked" else "allowed"][hour] += 1
    hours = [f"{(hour0 + dt.timedelta(hours=i)).hour:02d}" for i in range(HOURS)]
    days = [(day0 + dt.timedelta(days=i)).strftime("%a %d") for i in range(DAYS)]
    return Series((hours, dict(by_hour)), (days, dict(by_day)), (hours, dict(alerts)))


def bars(data: tuple[list[str], dict[str, list[int]]], title: str) -> str:
    """A stacked bar chart: one bar per bucket, one patterned segment per category, the
    bucket's total above it and its label below; a legend names each pattern."""
    labels, counts = data
    names = sorted(counts)
    width, height, left, top, bottom = 720, 220, 30, 30, 40
    legend_h = 18 * max(1, len(names))
    plot_h = height - top - bottom
    step = (width - left) / max(1, len(labels))
    peak = max([sum(counts[n][i] for n in names) for i in range(len(labels))] or [0])
    scale = plot_h / peak if peak else 0.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
           f'viewBox="0 0 {width} {height + legend_h}" aria-labelledby="t d">',
           f"<title>{escape(title)}</title>",
           f"<desc>{escape(describe(data))}</desc>", "<defs>"]
    for pid, tile in PATTERNS:
        out.append(f'<pattern id="p-{pid}" width="8" height="8" '
                   f'patternUnits="userSpaceOnUse">{tile}</pattern>')
    out.append("</defs>")
    out.append(f'<text x="{left}" y="16" font-size="13">{escape(title)}</text>')
    base = top + plot_h
    out.append(f'<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#000"/>')
    for i, label in enumerate(labels):
        x = left + i * step
        y = float(base)
        total = 0
        for k, name in enumerate(names):
            n = counts[name][i]
            if not n:
                continue
            total += n
            h = n * scale
            y -= h
            pid = PATTERNS[k % len(PATTERNS)][0]
            out.append(f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{step - 4:.1f}" '
                       f'height="{h:.1f}" fill="url(#p-{pid})" stroke="#000">'
                       f"<title>{escape(name)}: {n} at {escape(label)}</title></rect>")
        if total:
            out.append(f'<text x="{x + step / 2:.1f}" y="{y - 3:.1f}" font-size="11" '
                       f'text-anchor="middle">{total}</text>')
        out.append(f'<text x="{x + step / 2:.1f}" y="{base + 14}" font-size="10" '
                   f'text-anchor="middle">{escape(label)}</text>')
    if not names:
        out.append(f'<text x="{left + 10}" y="{base - plot_h / 2:.0f}" font-size="13">'
                   "nothing in this period</text>")
    for k, name in enumerate(names):
        y0 = height + 18 * k
        pid = PATTERNS[k % len(PATTERNS)][0]
        out.append(f'<rect x="{left}" y="{y0 - 12}" width="14" height="14" '
                   f'fill="url(#p-{pid})" stroke="#000"/>')
        out.append(f'<text x="{left + 20}" y="{y0}" font-size="12">{escape(name)} '
                   f"({sum(counts[name])}, pattern: {pid})</text>")
    out.append("</svg>")
    return "\n".join(out)


def describe(data: tuple[list[str], dict[str, list[int]]]) -> str:
    """The chart in words, for a screen reader: each category's total and busiest bucket."""
    labels, counts = data
    if not counts:
        return "no records in this period"
    parts = []
    for name in sorted(counts):
        row = counts[name]
        peak = max(range(len(row)), key=row.__getitem__)
        parts.append(f"{name}: {sum(row)} in all, most ({row[peak]}) at {labels[peak]}")
    return "; ".join(parts)
