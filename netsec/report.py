"""The parent's view: what sys-sec blocked and saw for one guest, from its EVE events.

Input is EVE JSON records (Suricata's `alert`, `drop`, `flow`, `dns`, `tls`, `http`
events, plus Hyperwall's category blocks, which are `alert` events carrying a `hyperwall`
object: `{"guest": ..., "category": ..., "site": ..., "by": "dns"|"sni"|"host"}`). Records
are matched to the guest by its address (either end) or by its name in the `hyperwall`
object (`domain`, as the inline engine writes it, or `guest`, as the resolver does).
"""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOP = 10


def parse_timestamp(text: str) -> dt.datetime:
    """EVE's `2026-11-24T09:30:00.123456+0000`, or an ISO time; naive times are UTC."""
    try:
        when = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a time (expected e.g. 2026-11-24T09:30)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """`--since`: an ISO time, or a duration back from now (`30m`, `12h`, `7d`)."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return now - dt.timedelta(seconds=int(text[:-1]) * units[text[-1]])
    return parse_timestamp(text)


@dataclass
class Report:
    guest: str
    since: dt.datetime | None
    blocked: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    alerts: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    destinations: Counter[str] = field(default_factory=Counter)
    events: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "guest": self.guest,
            "since": self.since.isoformat() if self.since else None,
            "events": self.events,
            "blocked": [
                {"category": cat, "requests": sum(sites.values()),
                 "sites": [{"site": s, "requests": n} for s, n in sites.most_common(TOP)]}
                for cat, sites in sorted(self.blocked.items(),
                                         key=lambda kv: -sum(kv[1].values()))],
            "alerts": [{"signature_id": sid, "signature": sig, "action": action, "count": n}
                       for (sid, sig, action), n in self.alerts.most_common(TOP)],
            "top_destinations": [{"destination": d, "flows": n}
                                 for d, n in self.destinations.most_common(TOP)],
        }

    def as_text(self) -> str:
        data = self.as_json()
        lines = [f"Report for {self.guest}"
                 + (f" since {self.since:%Y-%m-%d %H:%M %Z}" if self.since else "")]
        lines.append("")
        lines.append("Blocked sites by category")
        lines += _table(("Category", "Requests", "Sites"),
                        [(b["category"], str(b["requests"]),
                          ", ".join(s["site"] for s in b["sites"][:5])) for b in data["blocked"]])
        lines.append("")
        lines.append("Alerts")
        lines += _table(("SID", "Action", "Count", "Signature"),
                        [(str(a["signature_id"]), a["action"], str(a["count"]), a["signature"])
                         for a in data["alerts"]])
        lines.append("")
        lines.append("Top destinations")
        lines += _table(("Destination", "Flows"),
                        [(d["destination"], str(d["flows"])) for d in data["top_destinations"]])
        return "\n".join(lines) + "\n"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    if not rows:
        return ["  (none)"]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    fmt = "  " + "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), *(fmt.format(*r).rstrip() for r in rows)]


def _concerns(event: dict[str, Any], guest: str, ip: str | None) -> bool:
    hw = event.get("hyperwall")
    if isinstance(hw, dict) and guest in (hw.get("domain"), hw.get("guest")):
        return True
    return ip is not None and ip in (event.get("src_ip"), event.get("dest_ip"))


def guest_address(events: Iterable[dict[str, Any]], guest: str) -> str | None:
    """The guest's address as the records that name it say (`hyperwall.guest_ip`)."""
    for event in events:
        hw = event.get("hyperwall") if isinstance(event, dict) else None
        if isinstance(hw, dict) and guest in (hw.get("domain"), hw.get("guest")) and \
                hw.get("guest_ip"):
            return str(hw["guest_ip"])
    return None


def read_eve(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The records of EVE JSON files (one object a line); a torn or foreign line is skipped,
    as Suricata's consumers do. A file that cannot be read raises OSError naming it."""
    records: list[dict[str, Any]] = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
    return records


def build_report(events: Iterable[dict[str, Any]], guest: str, ip: str | None,
                 since: dt.datetime | None = None) -> Report:
    report = Report(guest, since)
    names: dict[int, str] = {}          # flow_id -> the name the guest asked for
    flows: list[dict[str, Any]] = []
    for event in events:
        if not isinstance(event, dict) or not _concerns(event, guest, ip):
            continue
        if since is not None:
            try:
                if parse_timestamp(str(event.get("timestamp", ""))) < since:
                    continue
            except ValueError:
                continue
        report.events += 1
        kind = event.get("event_type")
        hw = event.get("hyperwall") if isinstance(event.get("hyperwall"), dict) else None
        if kind == "alert" and hw and hw.get("category"):
            report.blocked[str(hw["category"])][str(hw.get("site", "?"))] += 1
        elif kind == "alert" and isinstance(event.get("alert"), dict):
            a = event["alert"]
            report.alerts[(int(a.get("signature_id", 0)), str(a.get("signature", "")),
                           str(a.get("action", "")))] += 1
        elif kind in ("tls", "http") and isinstance(event.get(kind), dict):
            name = event[kind].get("sni" if kind == "tls" else "hostname")
            if name and "flow_id" in event:
                names[event["flow_id"]] = str(name)
        elif kind == "flow":
            flows.append(event)
    for flow in flows:
        # Name a destination by what the guest asked for when sys-sec saw it.
        dest = names.get(flow.get("flow_id", -1)) or str(
            flow.get("dest_ip") if flow.get("src_ip") == ip else flow.get("src_ip"))
        report.destinations[dest] += 1
    return report
