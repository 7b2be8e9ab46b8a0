"""`hyperwall-build`: what providers and the project build — signed security bundles (and the
key to sign them), the TUF repository that serves them to fleets, the root-filesystem
template ns domains boot from, and the kernel and initramfs images Xen guests boot.

Every command prints for a person by default and one JSON document with --json (errors
as {"error": {"message": ...}}). Exit codes: 0 done, 1 refused (the message says why),
2 usage.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from builder.bundle import BuildError, build, keygen, load_key
from builder.template import build_template
from builder.tuf_repo import publish, published_version
from netsec.bundle import BundleError, read_manifest

EXIT_OK, EXIT_ERROR = 0, 1
DEFAULT_STATE = Path("/var/lib/hyperwall")


def _created(text: str | None) -> dt.datetime:
    """--created, else SOURCE_DATE_EPOCH (reproducible builds), else now."""
    try:
        if text:
            when = dt.datetime.fromisoformat(text)
            return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        if os.environ.get("SOURCE_DATE_EPOCH"):
            return dt.datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), dt.UTC)
    except ValueError as e:
        raise BuildError(f"--created / SOURCE_DATE_EPOCH: {e}") from None
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _write_new(path: Path, data: bytes) -> None:
    """Written beside and renamed: a failed build never leaves half a bundle at OUT."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _bundle(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    provider = args.provider or args.key.stem
    data = build(rules=args.rules, lists=args.lists, policy=args.policy, selftest=args.selftest,
                 clamav=args.clamav, yara=args.yara, key=load_key(args.key), provider=provider,
                 version=args.version,
                 created=_created(args.created), valid_days=args.expires)
    _write_new(args.out, data)
    m = read_manifest(data)
    human = (f"wrote {args.out}: bundle {m['version']} of {provider}, {len(data)} bytes, "
             f"expires {m['expires']}\n" + _table(
                 [("FILE", "BYTES", "SHA-256"),
                  *((n, str(f["size"]), f["sha256"]) for n, f in m["files"].items())]))
    return human, {"out": str(args.out), "bytes": len(data), **m}


def _publish(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    try:
        data = args.bundle.read_bytes()
    except OSError as e:
        raise BuildError(f"{args.bundle}: {e.strerror}") from None
    before = published_version(args.repo)
    targets = publish(args.repo, load_key(args.key), data, now=dt.datetime.now(dt.UTC),
                      expires_days=args.expires, keys_dir=args.keys)
    version = read_manifest(data)["version"]
    root = args.repo / "metadata" / "1.root.json"
    human = (f"published {args.bundle} in {args.repo}: bundle {before or '-'} -> {version}, "
             f"targets metadata version {targets}, fresh for {args.expires} days\n"
             f"owners enroll {root} (hyperwall provider enroll --root ...)")
    return human, {"repo": str(args.repo), "bundle_version": version,
                   "previous_bundle_version": before, "targets_version": targets,
                   "root": str(root)}


def _in_state(args: argparse.Namespace, *default: str) -> Path:
    """-o, else the default folder under $HYPERWALL_STATE_DIR."""
    return args.out or Path(os.environ.get("HYPERWALL_STATE_DIR") or DEFAULT_STATE).joinpath(
        *default)


def _steps(args: argparse.Namespace) -> tuple[list[str], Callable[[str], None]]:
    steps: list[str] = []

    def progress(step: str) -> None:
        steps.append(step)
        if not args.json:   # one line per step as it happens; --json prints once, at the end
            print(f"[{len(steps)}] {step}", flush=True)
    return steps, progress


def _template(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    out = _in_state(args, "templates", "default")
    steps, progress = _steps(args)
    build_template(out, progress=progress)
    return "", {"out": str(out), "steps": steps}


def _xen_guests(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    from builder import xen_guest, xen_image
    out = _in_state(args, "xen", "images")
    steps, progress = _steps(args)
    try:
        image = xen_image.build(progress=progress)
        xen_guest.build(image, out, progress=progress)
    except (xen_image.ImageUnavailable, xen_guest.GuestBuildError) as e:
        raise BuildError(str(e)) from None
    files = sorted(out.glob("*"))
    human = _table([("FILE", "MiB"), *((str(f), f"{f.stat().st_size / 2**20:.0f}")
                                       for f in files)])
    return human, {"out": str(out), "steps": steps,
                   "files": {f.name: f.stat().st_size for f in files}}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyperwall-build", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="what", required=True)
    k = sub.add_parser("keygen", parents=[common],
                       help="a new Ed25519 signing key (KEY, and KEY.pub beside it)")
    k.add_argument("-o", dest="out", type=Path, required=True, metavar="KEY")
    b = sub.add_parser("bundle", parents=[common], help="a signed, reproducible security bundle")
    b.add_argument("--rules", type=Path, required=True, help="a .rules file or a folder of them")
    b.add_argument("--lists", type=Path, help="folder of <category>.txt block lists")
    b.add_argument("--policy", type=Path, help="policy.toml (sys-sec content only)")
    b.add_argument("--selftest", type=Path, help="folder of .pcap captures for the self-test")
    b.add_argument("--clamav", type=Path, help="a ClamAV database folder (.hdb, .ndb, .ldb, "
                   ".cvd ...) for sys-sec's clamd")
    b.add_argument("--yara", type=Path, help="a folder of YARA rules (.yar, .yara)")
    b.add_argument("--key", type=Path, required=True, help="the provider's private key (PEM)")
    b.add_argument("--provider", help="the provider's name (default: the key file's name)")
    b.add_argument("--version", type=int, required=True, help="higher than every earlier one")
    b.add_argument("--expires", type=int, default=30, metavar="DAYS",
                   help="valid for DAYS after --created (default 30)")
    b.add_argument("--created", help="ISO time (default: SOURCE_DATE_EPOCH, else now)")
    b.add_argument("-o", dest="out", type=Path, required=True, metavar="OUT.bundle")
    u = sub.add_parser("publish", parents=[common],
                       help="serve a bundle from a TUF repository (a folder for a web server)")
    u.add_argument("--repo", type=Path, required=True, help="the folder a web server serves")
    u.add_argument("--key", type=Path, required=True,
                   help="the provider's bundle key (PEM), which also signs TUF targets")
    u.add_argument("--keys", type=Path, metavar="DIR",
                   help="root, snapshot and timestamp keys (made at the first publish; keep "
                   "it out of REPO); without it --key signs every role")
    u.add_argument("--expires", type=int, default=7, metavar="DAYS",
                   help="how long the metadata stays fresh (default 7)")
    u.add_argument("bundle", type=Path)
    t = sub.add_parser("template", parents=[common],
                       help="the root-filesystem template of the ns backend")
    t.add_argument("-o", dest="out", type=Path, metavar="DIR",
                   help="where (default: $HYPERWALL_STATE_DIR/templates/default, "
                   f"$HYPERWALL_STATE_DIR defaulting to {DEFAULT_STATE})")
    x = sub.add_parser("xen-guests", parents=[common],
                       help="what Xen guests boot: the kernel, guest.cpio and sys-sec.cpio "
                       "(hyperwall-dom0d --hypervisor xen --xen-images DIR)")
    x.add_argument("-o", dest="out", type=Path, metavar="DIR",
                   help="where (default: $HYPERWALL_STATE_DIR/xen/images)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.what == "keygen":
            public = keygen(args.out)
            human, machine = f"wrote {args.out} (private, 0600) and {public}", {
                "private": str(args.out), "public": str(public)}
        elif args.what == "bundle":
            human, machine = _bundle(args)
        elif args.what == "publish":
            human, machine = _publish(args)
        elif args.what == "xen-guests":
            human, machine = _xen_guests(args)
        else:
            human, machine = _template(args)
    except (BuildError, BundleError, OSError) as e:
        message = str(e)
        if args.json:
            print(json.dumps({"error": {"message": message}}), flush=True)
        else:
            print(f"hyperwall-build: {message}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(machine), flush=True)
    elif human:
        print(human, flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
