"""`hyperwall provider enroll|revoke|status`: the owner's say over a security provider.
They act on sys-sec's trust store in its folder on this host (STATE/sys-sec/provider);
sys-sec reads it on every update and every provider call, so a revoke takes effect at once.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from dom0.cli import EXIT_ERROR, EXIT_OK, Session, arg, command
from netsec.trust import TrustError, TrustStore

DEFAULT_STATE = Path("/var/lib/hyperwall")


def store() -> TrustStore:
    state = Path(os.environ.get("HYPERWALL_STATE_DIR", DEFAULT_STATE))
    return TrustStore(state / "sys-sec" / "provider")


def _error(s: Session, message: str) -> int:
    s.emit(f"hyperwall: {message}", {"error": {"code": "INVALID_ARGUMENT", "message": message}})
    return EXIT_ERROR


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as e:
        raise TrustError(f"{what} {path}: {e.strerror}") from None


@command("provider", "the security provider: enroll, revoke, status",
         arg("action", choices=("enroll", "revoke", "status")),
         arg("--name", help="the provider's name (enroll)"),
         arg("--bundle-key", type=Path, action="append", default=[], metavar="KEY.pub",
             help="a key that may sign bundles (enroll; repeatable)"),
         arg("--threshold", type=int, default=1, help="signatures a bundle needs (enroll)"),
         arg("--ca", type=Path, help="the provider's CA for its channel (enroll)"),
         arg("--root", type=Path, help="the provider's TUF root.json (enroll)"),
         arg("--share-alerts", action="store_true",
             help="let the provider see alert summaries (enroll)"))
def _provider(s: Session, args: argparse.Namespace) -> int:
    trust = store()
    try:
        if args.action == "enroll":
            if not args.name or not args.bundle_key:
                return _error(s, "enroll needs --name and at least one --bundle-key")
            keys = [_read(k, "--bundle-key") or b"" for k in args.bundle_key]
            trust.enroll(_read(args.root, "--root"), keys, _read(args.ca, "--ca"),
                         provider=args.name, threshold=args.threshold)
            state = trust.update(share_alerts=args.share_alerts)
        elif args.action == "revoke":
            state = trust.revoke()
        else:
            state = trust.load()
    except TrustError as e:
        return _error(s, str(e))
    status = ("revoked" if state.revoked else "enrolled" if state.enrolled
              else "no provider enrolled")
    s.emit(f"provider: {state.provider or '-'} ({status}); bundle version applied: "
           f"{state.last_version}; shares alerts: {'yes' if state.share_alerts else 'no'}",
           {"provider": state.provider, "status": status, "last_version": state.last_version,
            "threshold": state.threshold, "share_alerts": state.share_alerts})
    return EXIT_OK
