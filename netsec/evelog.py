"""Reading sys-sec's EVE logs: `eve.json` (the inline engine) and `dns.json` (the filtering
resolver), as they are and as they grow. What the SecurityService serves."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

from netsec.report import parse_timestamp

# scan.json: the at-rest scans (domains.syssec.treescan), its own file so that its lines
# never interleave with the engine's buffered writes to eve.json
LOGS = ("eve.json", "dns.json", "scan.json")
FOLLOW_POLL = 0.2


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None    # a line being written, or a torn one after a crash
    return record if isinstance(record, dict) else None


def read_events(log_dir: Path) -> Iterator[dict[str, Any]]:
    for name in LOGS:
        path = log_dir / name
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if (record := _parse(line)) is not None:
                        yield record


class Follower:
    """Records appended to the logs from the moment it is made (both files, as they come)."""

    def __init__(self, log_dir: Path) -> None:
        self.files = []
        for name in LOGS:
            f = open(log_dir / name, "a+", encoding="utf-8", errors="replace")  # noqa: SIM115
            f.seek(0, os.SEEK_END)
            self.files.append(f)

    async def records(self) -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                got = False
                for f in self.files:
                    while line := f.readline():
                        got = True
                        if (record := _parse(line)) is not None:
                            yield record
                if not got:
                    await asyncio.sleep(FOLLOW_POLL)   # a log file gives no event to wait on
        finally:
            for f in self.files:
                f.close()


def domain_of(record: dict[str, Any]) -> str:
    # `domain` is what ipsd writes now; `guest` what the resolver's log and older records say.
    hw = record.get("hyperwall", {})
    return str(hw.get("domain") or hw.get("guest") or "")


def concerns(record: dict[str, Any], domain: str | None) -> bool:
    return not domain or domain_of(record) == domain


def is_alert(record: dict[str, Any], domain: str | None, since: dt.datetime | None,
             drops: bool = False) -> bool:
    """An alert (or, with `drops`, a drop record) of `domain` at or after `since`."""
    kinds = ("alert", "drop") if drops else ("alert",)
    if record.get("event_type") not in kinds or not concerns(record, domain):
        return False
    if since is None:
        return True
    try:
        return parse_timestamp(str(record.get("timestamp"))) >= since
    except ValueError:
        return False


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def alert_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The SecurityService's Alert fields of an EVE alert or drop record (a record written
    by hand or torn in a crash gives empty fields, not an error)."""
    a, hw = record.get("alert") or {}, record.get("hyperwall") or {}
    event_type = str(record.get("event_type", ""))

    def end(ip: str, port: str) -> str:
        return f"{record.get(ip)}:{record[port]}" if port in record else str(record.get(ip))
    return {"timestamp": str(record.get("timestamp", "")), "domain": domain_of(record),
            "action": str(a.get("action", "blocked" if event_type == "drop" else "")),
            "signature_id": _int(a.get("signature_id")),
            "signature": str(a.get("signature", "")), "src": end("src_ip", "src_port"),
            "dest": end("dest_ip", "dest_port"), "category": str(hw.get("category", "")),
            "event_type": event_type, "src_ip": str(record.get("src_ip", "")),
            "src_port": _int(record.get("src_port")), "dest_ip": str(record.get("dest_ip", "")),
            "dest_port": _int(record.get("dest_port")), "proto": str(record.get("proto", "")),
            "severity": _int(a.get("severity")), "flow_id": _int(record.get("flow_id")),
            "app_proto": str(record.get("app_proto", "")), "gid": _int(a.get("gid")),
            "rev": _int(a.get("rev"))}


def timeline(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two logs, one order: by timestamp (EVE's format sorts as text)."""
    return sorted(records, key=lambda r: str(r.get("timestamp", "")))
