"""`hyperwall provider enroll|revoke|status`: the owner's say over a security provider.

They act on sys-sec's trust store directly (netsec/trust.py), not through dom0d: they run as
root on the host, where sys-sec's folder is. sys-sec reads the store on every update and
every provider call, so a revoke takes effect at once. The store is `--dir`, else
$HYPERWALL_PROVIDER_DIR, else STATE/sys-sec/provider with STATE from $HYPERWALL_STATE_DIR
(else /var/lib/hyperwall).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dom0.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, Session, arg, command
from netsec.trust_dir import DEFAULT_DIR, ENV_DIR

if TYPE_CHECKING:
    from netsec.trust import TrustStore
# netsec.trust (and the cryptography it needs) is imported by the provider command alone:
# every other `hyperwall` command would pay for it at start.

ENROLL_ONLY = ("root", "bundle_key", "ca", "name", "threshold", "share_alerts")


def store(given: Path | None = None) -> TrustStore:
    from netsec.trust import TrustStore
    if given is not None:
        return TrustStore(given)
    if os.environ.get(ENV_DIR):
        return TrustStore(Path(os.environ[ENV_DIR]))
    if os.environ.get("HYPERWALL_STATE_DIR"):
        return TrustStore(Path(os.environ["HYPERWALL_STATE_DIR"]) / "sys-sec" / "provider")
    return TrustStore(DEFAULT_DIR)


def _fail(s: Session, code: str, message: str, exit_code: int = EXIT_ERROR) -> int:
    if s.json:
        print(json.dumps({"error": {"code": code, "message": message}}), flush=True)
    else:
        print(f"hyperwall: {message}", file=sys.stderr, flush=True)
    return exit_code


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as e:
        from netsec.trust import TrustError
        raise TrustError(f"{what} {path}: {e.strerror}") from None


def describe(trust: TrustStore) -> dict[str, Any]:
    """Everything the owner may want to see of the store, as JSON-ready data."""
    state = trust.load()
    status = ("revoked" if state.revoked else "enrolled" if state.enrolled
              else "not enrolled")
    root: dict[str, Any] | None = None
    raw_root = trust.root_json()
    if raw_root is not None:
        signed = json.loads(raw_root).get("signed", {})
        root = {"version": signed.get("version"), "expires": signed.get("expires")}
    ca: dict[str, Any] | None = None
    raw_ca = trust.provider_ca()
    if raw_ca is not None:
        from cryptography.x509 import load_pem_x509_certificate
        cert = load_pem_x509_certificate(raw_ca)
        ca = {"subject": cert.subject.rfc4514_string(),
              "expires": cert.not_valid_after_utc.isoformat()}
    return {"provider": state.provider, "status": status, "bundle_keys": state.keys,
            "threshold": state.threshold, "tuf_root": root, "provider_ca": ca,
            "last_version": state.last_version,
            "version_problem": trust.version_problem(state), "share_alerts": state.share_alerts,
            "disabled_sids": state.disabled_sids, "dir": str(trust.path)}


def status_table(d: dict[str, Any]) -> str:
    root, ca = d["tuf_root"], d["provider_ca"]
    rows = [
        ("Provider", d["provider"] or "-"),
        ("Status", d["status"]),
        ("Bundle keys", (f"{', '.join(d['bundle_keys'])} ({d['threshold']} of "
                         f"{len(d['bundle_keys'])} must sign)") if d["bundle_keys"] else "-"),
        ("TUF root", f"version {root['version']}, expires {root['expires']}" if root else "-"),
        ("Provider CA", f"{ca['subject']}, expires {ca['expires']}" if ca else "-"),
        ("Applied bundle", d["version_problem"] or str(d["last_version"] or "-")),
        ("Shares alerts", "yes" if d["share_alerts"] else "no"),
        ("Disabled sids", ", ".join(map(str, d["disabled_sids"])) or "-"),
        ("Folder", d["dir"]),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@command("provider", "the security provider of sys-sec: enroll, revoke, status",
         arg("action", choices=("enroll", "revoke", "status"),
             help="enroll: trust a provider (replaces any earlier one); revoke: cut it off "
             "at once; status: what is trusted"),
         arg("--root", type=Path, metavar="root.json",
             help="the provider's TUF root (enroll); pins its bundle key too"),
         arg("--bundle-key", type=Path, action="append", default=[], metavar="KEY.pub",
             help="an Ed25519 key that may sign bundles (enroll; repeatable; default: the "
             "root's targets keys)"),
         arg("--ca", type=Path, metavar="ca.pem",
             help="the provider's CA certificate for its channel (enroll)"),
         arg("--name", help="the provider's name, for the status (enroll)"),
         arg("--threshold", type=int, help="signatures a bundle needs (enroll)"),
         arg("--share-alerts", action=argparse.BooleanOptionalAction, default=None,
             help="let the provider see alert summaries (enroll; default: keep)"),
         arg("--dir", type=Path, help=f"the trust store (default: ${ENV_DIR}, else "
             "$HYPERWALL_STATE_DIR/sys-sec/provider)"))
def _provider(s: Session, args: argparse.Namespace) -> int:
    from netsec.trust import TrustError
    if args.action != "enroll":
        given = [f"--{o.replace('_', '-')}" for o in ENROLL_ONLY
                 if getattr(args, o) not in (None, [])]
        if given:
            return _fail(s, "INVALID_ARGUMENT", f"{' '.join(given)}: only for "
                         "`hyperwall provider enroll`", EXIT_USAGE)
    trust = store(args.dir)
    try:
        if args.action == "enroll":
            if args.root is None and not args.bundle_key:
                return _fail(s, "INVALID_ARGUMENT", "enroll needs the provider's --root "
                             "root.json (or at least one --bundle-key)", EXIT_USAGE)
            keys = [_read(k, "--bundle-key") or b"" for k in args.bundle_key]
            trust.enroll(_read(args.root, "--root"), keys, _read(args.ca, "--ca"),
                         provider=args.name or "", threshold=args.threshold)
            if args.share_alerts is not None:
                trust.update(share_alerts=args.share_alerts)
        elif args.action == "revoke":
            if not trust.load().enrolled:
                return _fail(s, "FAILED_PRECONDITION", "no provider is enrolled; nothing to "
                             "revoke")
            trust.revoke()
        d = describe(trust)
    except (TrustError, ValueError) as e:
        return _fail(s, "INVALID_ARGUMENT", str(e))
    headline = {"enroll": f"enrolled {d['provider'] or 'the provider'}; sys-sec takes its "
                          "bundles from now on\n",
                "revoke": f"revoked {d['provider'] or 'the provider'}: its bundles and its "
                          "channel are refused until you enroll it again\n",
                "status": ""}[args.action]
    s.emit(headline + status_table(d), d)
    return EXIT_OK
