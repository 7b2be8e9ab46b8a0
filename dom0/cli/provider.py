"""`hyperwall provider enroll|revoke|status`: the owner's say over a security provider.

enroll and revoke act on sys-sec's trust store directly (netsec/trust.py), not through
dom0d: they run as root on the host, where sys-sec's folder is (root's only). sys-sec reads
the store on every update and every provider call, so a revoke takes effect at once. The
store is `--dir`, else $HYPERWALL_PROVIDER_DIR, else STATE/sys-sec/provider with STATE from
$HYPERWALL_STATE_DIR (else /var/lib/hyperwall). `status` reads it directly too for root or
a store named with --dir or $HYPERWALL_PROVIDER_DIR; any other caller asks dom0d, which
shows it to the platform's owners (root and the `hyperwall` group).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dom0.cli import EXIT_OK, EXIT_USAGE, Session, arg, command
from netsec.trust_dir import DEFAULT_DIR, ENV_DIR
from proto.gen.hyperwall.control.v1 import control_pb2 as pb

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


def _denied(s: Session, action: str, path: Path) -> int:
    return s.fail("PERMISSION_DENIED", f"provider {action} uses sys-sec's trust store {path}, "
                  "which only root may open: run it as root (owners see it with `hyperwall "
                  "provider status`)")


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as e:
        from netsec.trust import TrustError
        raise TrustError(f"{what} {path}: {e.strerror}") from None


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
    if args.action != "enroll":
        given = [f"--{o.replace('_', '-')}" for o in ENROLL_ONLY
                 if getattr(args, o) not in (None, [])]
        if given:
            return s.fail("INVALID_ARGUMENT", f"{' '.join(given)}: only for "
                          "`hyperwall provider enroll`", EXIT_USAGE)
    if os.geteuid() != 0 and args.dir is None and not os.environ.get(ENV_DIR):
        if args.action == "status":
            s.emit(status_table(d := json.loads(
                s.stub.ProviderStatus(pb.ProviderStatusRequest()).status_json)), d)
            return EXIT_OK
        return _denied(s, args.action, store().path)
    from netsec.trust import TrustError, describe
    trust = store(args.dir)
    try:
        if args.action == "enroll":
            if args.root is None and not args.bundle_key:
                return s.fail("INVALID_ARGUMENT", "enroll needs the provider's --root "
                              "root.json (or at least one --bundle-key)", EXIT_USAGE)
            keys = [_read(k, "--bundle-key") or b"" for k in args.bundle_key]
            trust.enroll(_read(args.root, "--root"), keys, _read(args.ca, "--ca"),
                         provider=args.name or "", threshold=args.threshold)
            if args.share_alerts is not None:
                trust.update(share_alerts=args.share_alerts)
        elif args.action == "revoke":
            if not trust.load().enrolled:
                return s.fail("FAILED_PRECONDITION", "no provider is enrolled; nothing to "
                              "revoke")
            trust.revoke()
        d = describe(trust)
    except PermissionError:
        return _denied(s, args.action, trust.path)
    except (TrustError, ValueError) as e:
        return s.fail("INVALID_ARGUMENT", str(e))
    except OSError as e:
        return s.fail("FAILED_PRECONDITION", f"sys-sec's trust store {trust.path}: "
                      f"{e.strerror or e}")
    headline = {"enroll": f"enrolled {d['provider'] or 'the provider'}; sys-sec takes its "
                          "bundles from now on\n",
                "revoke": f"revoked {d['provider'] or 'the provider'}: its bundles and its "
                          "channel are refused until you enroll it again\n",
                "status": ""}[args.action]
    s.emit(headline + status_table(d), d)
    return EXIT_OK
