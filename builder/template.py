"""The default root-filesystem template: a directory skeleton the `ns` backend overlays.

The template holds only what makes a domain its own system: `/etc` (accounts, hosts,
resolver, name-service switch), the empty directories that get mounts or state, and the
merged-/usr symlinks (`bin`, `sbin`, `lib`, `lib64` -> `usr/...`, where the host has them).
It holds no programs: the `ns` backend binds the host's `/usr` read-only over it, the way
a Qubes TemplateVM shares its root read-only with its AppVMs, so a domain runs the host's
binaries and libraries without a copy per template, and cannot change them. `/var/run` is a relative
symlink to `../run` so that paths under it land in the domain's own `/run`.

`python -m builder.template DEST` builds one.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

DIRS = ("etc", "tmp", "var/tmp", "var/lib", "var/log", "var/cache", "run", "root", "home",
        "proc", "sys", "dev", "usr", "mnt", "opt", "srv")
USR_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
STICKY = ("tmp", "var/tmp")
FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/hostname": "localhost\n",
    # Filled in by the agent from the domain's xenstore keys once its network is up.
    "etc/resolv.conf": "",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
                         "networks: files\nprotocols: files\nservices: files\n",
}


def build_template(dest: Path, progress: Callable[[str], None] = lambda _: None) -> Path:
    """Make the skeleton in `dest` (which must not exist yet) atomically; returns `dest`."""
    if dest.exists():
        raise FileExistsError(f"template {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place, so a half-built template never shows.
    work = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    work.mkdir()
    for d in DIRS:
        (work / d).mkdir(parents=True, exist_ok=True)
    for d in STICKY:
        (work / d).chmod(0o1777)
    (work / "root").chmod(0o700)
    progress(f"{len(DIRS)} directories")
    for name, target in USR_LINKS.items():
        # Mirror the host: where its /lib is a real directory the backend binds it instead.
        host = Path("/") / name
        if host.is_symlink():
            (work / name).symlink_to(target)
        elif host.is_dir():
            (work / name).mkdir()
    (work / "var" / "run").symlink_to("../run")
    for rel, text in FILES.items():
        (work / rel).write_text(text)
    progress(f"{len(FILES)} files in /etc")
    # Debian's alternatives: /usr/sbin/iptables and friends are symlinks through
    # /etc/alternatives, so the domain's /etc needs the host's choices to run them.
    alternatives = Path("/etc/alternatives")
    if alternatives.is_dir():
        (work / "etc" / "alternatives").mkdir()
        links = [p for p in alternatives.iterdir() if p.is_symlink()]
        for link in links:
            (work / "etc" / "alternatives" / link.name).symlink_to(os.readlink(link))
        progress(f"{len(links)} alternatives")
    work.rename(dest)
    progress(f"template ready at {dest}")
    return dest


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m builder.template DEST", file=sys.stderr)
        return 2
    try:
        build_template(Path(argv[0]), progress=print)
    except OSError as e:
        print(f"builder.template: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
