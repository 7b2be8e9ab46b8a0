"""`hyperwall scan` and `hyperwall recover`: files at rest and a domain brought back.

Progress goes to stderr (one line, rewritten on a terminal), what was found and every
recovery step to stdout; with --json, stdout is one JSON document at the end: the result,
the steps, and the alert records.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from dom0.cli import EXIT_OK, Session, arg, command
from proto.gen.hyperwall.control.v1 import control_pb2 as pb

EXIT_INFECTED = 3      # like clamscan's 1 "virus found", kept apart from errors (1) and usage (2)


def _follow(s: Session, updates: Iterable[pb.ScanUpdate]) -> dict[str, Any]:
    tty = sys.stderr.isatty()
    steps: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    progress_shown = False
    for update in updates:
        kind = update.WhichOneof("update")
        value = json.loads(getattr(update, kind))
        if kind == "progress_json":
            p = value
            skipped = sum(p["skipped"].values())
            line = (f"{p['domain']}: {p['files']} files, {p['bytes'] / 1e6:.1f} MB, "
                    f"{p['infected']} infected, {p['errors']} unscannable, {skipped} skipped"
                    + (" (stopped at a bound)" if p["truncated"] else ""))
            print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n",
                  file=sys.stderr, flush=True)
            progress_shown = True
        elif kind == "record_json":
            if value.get("event_type") == "alert":
                alerts.append(value)
                hw = value["hyperwall"]
                _out(s, f"FOUND {hw['path']}: {hw['scanner']} {hw['finding']} "
                        f"(sha256 {hw['sha256']})", tty and progress_shown)
            elif value.get("event_type") == "fileinfo" and value["hyperwall"].get("error"):
                hw = value["hyperwall"]
                _out(s, f"UNSCANNED {hw['path']}: {hw['error']}", tty and progress_shown)
        elif kind == "step_json":
            steps.append(value)
            _out(s, f"{value['action']}: {value['detail']}", tty and progress_shown)
        elif kind == "result_json":
            results.append(value)
    if tty and progress_shown:
        print(file=sys.stderr)
    return {"scans": results, "alerts": alerts, "steps": steps}


def _out(s: Session, line: str, clear: bool) -> None:
    if not s.json:
        if clear:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        print(line, flush=True)


def _finish(s: Session, done: dict[str, Any], name: str) -> int:
    infected = sum(len(r["infected"]) for r in done["scans"][:1])
    if s.json:
        print(json.dumps(done), flush=True)
    elif done["scans"]:
        r = done["scans"][0]
        print(f"{name}: {r['files']} files scanned, {infected} infected, "
              f"{r['errors']} unscannable (scan {r['scan_id']}; `hyperwall alerts --domain "
              f"{name}` lists the alerts)", flush=True)
    return EXIT_INFECTED if infected and not done["steps"] else EXIT_OK


@command("scan", "scan what a domain wrote, in sys-sec (exit 3 if something is found and "
         "no recovery step was taken)",
         arg("name", metavar="DOMAIN", help="the domain's name"),
         arg("paths", nargs="*", metavar="PATH", help="only these paths inside its tree"),
         arg("--no-policy", action="store_true",
             help="report only: do not apply the domain's on_infection"))
def _scan(s: Session, args: argparse.Namespace) -> int:
    stream = s.stub.Scan(pb.ScanRequest(name=args.name, paths=args.paths,
                                        no_policy=args.no_policy))
    try:
        return _finish(s, _follow(s, stream), args.name)
    except KeyboardInterrupt:
        stream.cancel()
        raise


@command("recover", "bring a domain back: quarantine what a scan finds, take it offline, or "
         "reset it keeping its clean persist entries",
         arg("name", metavar="DOMAIN", help="the domain's name"),
         arg("--action", choices=("quarantine", "offline", "reset"), default="",
             help="default: the domain's on_infection"))
def _recover(s: Session, args: argparse.Namespace) -> int:
    done = _follow(s, s.stub.Recover(pb.RecoverRequest(name=args.name, action=args.action)))
    if s.json:
        print(json.dumps(done), flush=True)
    elif not done["steps"]:
        print(f"{args.name}: nothing to do", flush=True)
    return EXIT_OK
