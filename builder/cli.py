"""`hyperwall-build`: what providers and the project build — signed security bundles (and the
key to sign them), the TUF repository that serves them to fleets, and the root-filesystem
template domains boot from."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from builder.bundle import BuildError, build, keygen, load_key
from builder.template import build_template
from builder.tuf_repo import publish


def _created(text: str | None) -> dt.datetime:
    """--created, else SOURCE_DATE_EPOCH (reproducible builds), else now."""
    if text:
        when = dt.datetime.fromisoformat(text)
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    if "SOURCE_DATE_EPOCH" in os.environ:
        return dt.datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), dt.UTC)
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hyperwall-build", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    k = sub.add_parser("keygen", help="a new Ed25519 signing key (KEY and KEY.pub)")
    k.add_argument("-o", dest="out", type=Path, required=True)
    b = sub.add_parser("bundle", help="a signed, reproducible security bundle")
    b.add_argument("--rules", type=Path, required=True, help="a .rules file or a folder of them")
    b.add_argument("--lists", type=Path, help="folder of <category>.txt block lists")
    b.add_argument("--policy", type=Path, help="policy.toml (sys-sec content only)")
    b.add_argument("--key", type=Path, required=True, help="the provider's private key (PEM)")
    b.add_argument("--provider", required=True)
    b.add_argument("--version", type=int, required=True, help="higher than every earlier one")
    b.add_argument("--expires", type=int, default=30, metavar="DAYS")
    b.add_argument("--created", help="ISO time (default: SOURCE_DATE_EPOCH, else now)")
    b.add_argument("-o", dest="out", type=Path, required=True)
    u = sub.add_parser("publish", help="add a bundle to a TUF repository for fleets")
    u.add_argument("--repo", type=Path, required=True, help="the folder a web server serves")
    u.add_argument("--key", type=Path, required=True, help="the provider's private key (PEM)")
    u.add_argument("--expires", type=int, default=7, metavar="DAYS",
                   help="how long the metadata stays fresh (default 7)")
    u.add_argument("bundle", type=Path)
    t = sub.add_parser("template", help="the root-filesystem template of the ns backend")
    t.add_argument("-o", dest="out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        if args.what == "keygen":
            print(f"wrote {args.out} and {keygen(args.out)}")
        elif args.what == "bundle":
            for path in (args.rules, args.lists, args.policy):
                if path is not None and not path.exists():
                    raise BuildError(f"{path}: no such file or folder")
            data = build(rules=args.rules, lists=args.lists, policy=args.policy,
                         key=load_key(args.key), provider=args.provider,
                         version=args.version, created=_created(args.created),
                         valid_days=args.expires)
            args.out.write_bytes(data)
            print(f"wrote {args.out}: bundle {args.version} of {args.provider}, "
                  f"{len(data)} bytes")
        elif args.what == "publish":
            version = publish(args.repo, load_key(args.key), args.bundle.read_bytes(),
                              now=dt.datetime.now(dt.UTC), expires_days=args.expires)
            print(f"published {args.bundle} in {args.repo} (targets version {version}); "
                  f"enroll {args.repo / 'metadata' / '1.root.json'} as the root")
        else:
            build_template(args.out, progress=lambda step: print(f"  {step}", flush=True))
    except (BuildError, OSError, ValueError) as e:
        print(f"hyperwall-build: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
