"""Assembling an initramfs: copying ELF programs with the shared libraries they load, and
writing the tree as an uncompressed newc cpio (what QEMU and Xen's domain builder load)."""
from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path


def shared_libraries(binaries: Iterable[Path], env: dict[str, str] | None = None) -> set[Path]:
    """The shared libraries `ldd` says these ELF files load (the loader included)."""
    out: set[Path] = set()
    for b in binaries:
        done = subprocess.run(["ldd", str(b)], capture_output=True, text=True, env=env)
        for line in done.stdout.splitlines():
            target = line.split("=>")[1].split()[0] if "=>" in line else line.split()[0]
            if target.startswith("/"):
                out.add(Path(target))
    return out


def write_cpio(folder: Path, out: Path) -> None:
    files = subprocess.run(["find", "."], cwd=folder, capture_output=True, check=True).stdout
    with open(out, "wb") as f:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=files, cwd=folder,
                       stdout=f, check=True)
