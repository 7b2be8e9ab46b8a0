"""`hyperwall alerts` and `hyperwall report`: what sys-sec saw and blocked, read through its
SecurityService: root on its socket in sys-sec's folder on the host (root's only), or the
one named with --security-socket or $HYPERWALL_SECURITY_SOCKET; anyone else through dom0d's
control socket, which relays it with the records of the domains the caller may use.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import grpc

from dom0.cli import EXIT_OK, Session, arg, command
from netsec.report import build_report, guest_address, parse_since, read_eve
from proto.gen.hyperwall.netsec.v1 import security_pb2 as pb
from proto.gen.hyperwall.netsec.v1 import security_pb2_grpc as pb_grpc

DEFAULT_STATE = Path("/var/lib/hyperwall")
SOCKET = arg("--security-socket", type=Path, default=None, metavar="PATH",
             help="sys-sec's SecurityService (default: $HYPERWALL_SECURITY_SOCKET, or "
             "for root STATE/sys-sec/security.sock with STATE from $HYPERWALL_STATE_DIR or "
             f"{DEFAULT_STATE}; for anyone else dom0d's --socket relays it)")
SINCE = arg("--since", metavar="T", help="an ISO time, or a duration back: 30m, 12h, 7d")


def security_socket(args: argparse.Namespace) -> Path | None:
    """The SecurityService socket to call directly; None: through dom0d."""
    if args.security_socket:
        return Path(args.security_socket)
    if "HYPERWALL_SECURITY_SOCKET" in os.environ:
        return Path(os.environ["HYPERWALL_SECURITY_SOCKET"])
    if os.geteuid() != 0:
        return None
    return Path(os.environ.get("HYPERWALL_STATE_DIR", DEFAULT_STATE)) / "sys-sec" / \
        "security.sock"



def _call(s: Session, args: argparse.Namespace, run: Any) -> int:
    path = security_socket(args)
    if path is None:
        # dom0d's answers and failures are the control API's: main.run says them.
        return run(pb_grpc.SecurityServiceStub(s.channel))  # type: ignore[no-any-return]
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return s.fail("PERMISSION_DENIED", f"sys-sec's SecurityService ({path}) is the "
                      "owner's only")
    with grpc.insecure_channel(f"unix:{path}") as channel:
        try:
            return run(pb_grpc.SecurityServiceStub(channel))  # type: ignore[no-any-return]
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                return s.fail("UNAVAILABLE", f"cannot reach sys-sec's SecurityService at "
                              f"{path}: is sys-sec running?")
            return s.fail(e.code().name, e.details() or e.code().name)


def alert_line(a: pb.Alert) -> str:
    return (f"{a.timestamp[:19]}  {a.domain or '-':<10} {a.action:<8} {a.signature_id:>8}  "
            f"{a.signature}  {a.src} -> {a.dest}")


def alert_json(a: pb.Alert) -> dict[str, Any]:
    return {"timestamp": a.timestamp, "domain": a.domain, "action": a.action,
            "signature_id": a.signature_id, "signature": a.signature, "src": a.src,
            "dest": a.dest, "category": a.category}


@command("alerts", "sys-sec's alerts (IDS/IPS and category blocks), oldest first",
         arg("--domain", metavar="NAME", help="only this domain's"), SINCE,
         arg("--follow", action="store_true", help="keep printing new alerts"), SOCKET)
def _alerts(s: Session, args: argparse.Namespace) -> int:
    def run(stub: pb_grpc.SecurityServiceStub) -> int:
        shown = 0
        for a in stub.StreamAlerts(pb.StreamAlertsRequest(
                domain=args.domain or "", since=args.since or "", follow=args.follow)):
            print(json.dumps(alert_json(a)) if s.json else alert_line(a), flush=True)
            shown += 1
        if not shown and not s.json:
            print("no alerts")
        return EXIT_OK
    return _call(s, args, run)


@command("report", "what sys-sec blocked and saw for one domain (the parent's view)",
         arg("--domain", required=True, metavar="NAME"), SINCE, SOCKET,
         arg("--eve", type=Path, action="append", metavar="FILE",
             help="read these EVE logs instead of asking sys-sec (repeatable; e.g. "
             "STATE/sys-sec/log/eve.json and dns.json)"))
def _report(s: Session, args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = parse_since(args.since, dt.datetime.now(dt.UTC))
        except ValueError as e:
            return s.fail("INVALID_ARGUMENT", f"--since: {e}")

    def show(records: list[dict[str, Any]]) -> int:
        report = build_report(records, args.domain, guest_address(records, args.domain), since)
        s.emit(report.as_text().rstrip(), report.as_json())
        return EXIT_OK

    if args.eve:
        try:
            return show(read_eve(args.eve))
        except OSError as e:
            return s.fail("NOT_FOUND", f"--eve {e.filename}: {e.strerror}")
    return _call(s, args, lambda stub: show(
        [json.loads(r.eve_json) for r in
         stub.StreamEvents(pb.StreamEventsRequest(domain=args.domain))]))
