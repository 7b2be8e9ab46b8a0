"""`hyperwall alerts` and `hyperwall report`: what sys-sec saw and blocked, from its EVE logs.

sys-sec writes them into its folder, which dom0 holds (STATE/sys-sec/log: `eve.json` from
the inline engine, `dns.json` from the filtering resolver); only the owner can read them.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dom0.cli import EXIT_ERROR, EXIT_OK, Session, arg, command
from netsec.report import build_report, parse_since, parse_timestamp

DEFAULT_STATE = Path("/var/lib/hyperwall")
LOGS = ("eve.json", "dns.json")
FOLLOW_POLL = 0.5


def sys_sec_dir() -> Path:
    return Path(os.environ.get("HYPERWALL_STATE_DIR", DEFAULT_STATE)) / "sys-sec"


def read_events(log_dir: Path) -> Iterator[dict[str, Any]]:
    for name in LOGS:
        path = log_dir / name
        if not path.exists():
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue   # a line being written, or a torn one after a crash


def guest_address(state: Path, domain: str) -> str | None:
    try:
        names = json.loads((state / "run" / "domains.json").read_text())
    except (OSError, ValueError):
        return None
    return next((ip for ip, name in names.items() if name == domain), None)


def _fail(s: Session, code: str, message: str) -> int:
    s.emit(f"hyperwall: {message}", {"error": {"code": code, "message": message}})
    return EXIT_ERROR


def _readable(s: Session, state: Path) -> int | None:
    log_dir = state / "log"
    if not log_dir.exists():
        return _fail(s, "NOT_FOUND", f"no sys-sec logs in {log_dir}: has sys-sec run here? "
                     "(HYPERWALL_STATE_DIR names dom0d's state folder)")
    if not os.access(log_dir, os.R_OK | os.X_OK):
        return _fail(s, "PERMISSION_DENIED", f"sys-sec's logs ({log_dir}) are the owner's only")
    return None


@command("report", "what sys-sec blocked and saw for one domain (the parent's view)",
         arg("--domain", required=True, metavar="NAME"),
         arg("--since", metavar="T", help="an ISO time, or a duration back: 30m, 12h, 7d"))
def _report(s: Session, args: argparse.Namespace) -> int:
    state = sys_sec_dir()
    if (refused := _readable(s, state)) is not None:
        return refused
    since = None
    if args.since:
        try:
            since = parse_since(args.since, dt.datetime.now(dt.UTC))
        except ValueError as e:
            return _fail(s, "INVALID_ARGUMENT", f"--since: {e}")
    report = build_report(read_events(state / "log"), args.domain,
                          guest_address(state, args.domain), since)
    s.emit(report.as_text().rstrip(), report.as_json())
    return EXIT_OK


def alert_row(event: dict[str, Any]) -> dict[str, Any]:
    a = event.get("alert", {})
    return {"timestamp": event.get("timestamp"),
            "domain": event.get("hyperwall", {}).get("guest"),
            "action": a.get("action"), "signature_id": a.get("signature_id"),
            "signature": a.get("signature"), "src": f"{event.get('src_ip')}:"
            f"{event.get('src_port', '')}".rstrip(":"),
            "dest": f"{event.get('dest_ip')}:{event.get('dest_port', '')}".rstrip(":")}


def alert_line(row: dict[str, Any]) -> str:
    return (f"{row['timestamp'][:19]}  {row['domain'] or '-':<10} {row['action']:<8} "
            f"{row['signature_id']:>8}  {row['signature']}  {row['src']} -> {row['dest']}")


def _alerts_in(events: Iterator[dict[str, Any]], domain: str | None,
               since: dt.datetime | None) -> Iterator[dict[str, Any]]:
    for e in events:
        if e.get("event_type") != "alert":
            continue
        if domain and e.get("hyperwall", {}).get("guest") != domain:
            continue
        if since is not None:
            try:
                if parse_timestamp(str(e.get("timestamp"))) < since:
                    continue
            except ValueError:
                continue
        yield alert_row(e)


def _follow(log_dir: Path) -> Iterator[dict[str, Any]]:
    """New lines of both logs as they are written (from their current ends)."""
    files = {}
    for name in LOGS:
        f = open(log_dir / name, "a+", encoding="utf-8", errors="replace")  # noqa: SIM115
        f.seek(0, os.SEEK_END)
        files[name] = f
    while True:
        got = False
        for f in files.values():
            while line := f.readline():
                got = True
                try:
                    yield json.loads(line)
                except ValueError:
                    continue
        if not got:
            time.sleep(FOLLOW_POLL)   # EVE files give no event to wait on


@command("alerts", "sys-sec's alerts (IDS/IPS and category blocks), oldest first",
         arg("--domain", metavar="NAME", help="only this domain's"),
         arg("--since", metavar="T", help="an ISO time, or a duration back: 30m, 12h, 7d"),
         arg("--follow", action="store_true", help="keep printing new alerts"))
def _alerts(s: Session, args: argparse.Namespace) -> int:
    state = sys_sec_dir()
    if (refused := _readable(s, state)) is not None:
        return refused
    try:
        since = parse_since(args.since, dt.datetime.now(dt.UTC)) if args.since else None
    except ValueError as e:
        return _fail(s, "INVALID_ARGUMENT", f"--since: {e}")
    # Two logs (engine, resolver): one timeline.
    rows = sorted(_alerts_in(read_events(state / "log"), args.domain, since),
                  key=lambda r: str(r["timestamp"]))
    if s.json:
        for row in rows:
            print(json.dumps(row), flush=True)
    elif not args.follow:
        print("\n".join(alert_line(r) for r in rows) or "no alerts")
    else:
        for r in rows:
            print(alert_line(r), flush=True)
    if args.follow:
        for row in _alerts_in(_follow(state / "log"), args.domain, None):
            print(json.dumps(row) if s.json else alert_line(row), flush=True)
    return EXIT_OK
