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

LOGS = ("eve.json", "dns.json")
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


def concerns(record: dict[str, Any], domain: str | None) -> bool:
    return not domain or record.get("hyperwall", {}).get("guest") == domain


def is_alert(record: dict[str, Any], domain: str | None, since: dt.datetime | None) -> bool:
    if record.get("event_type") != "alert" or not concerns(record, domain):
        return False
    if since is None:
        return True
    try:
        return parse_timestamp(str(record.get("timestamp"))) >= since
    except ValueError:
        return False


def alert_fields(record: dict[str, Any]) -> dict[str, Any]:
    a, hw = record.get("alert", {}), record.get("hyperwall", {})

    def end(ip: str, port: str) -> str:
        return f"{record.get(ip)}:{record[port]}" if port in record else str(record.get(ip))
    return {"timestamp": str(record.get("timestamp", "")), "domain": str(hw.get("guest", "")),
            "action": str(a.get("action", "")), "signature_id": int(a.get("signature_id", 0)),
            "signature": str(a.get("signature", "")), "src": end("src_ip", "src_port"),
            "dest": end("dest_ip", "dest_port"), "category": str(hw.get("category", ""))}


def timeline(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two logs, one order: by timestamp (EVE's format sorts as text)."""
    return sorted(records, key=lambda r: str(r.get("timestamp", "")))
