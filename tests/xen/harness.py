"""The host side of the Xen tests: build (or reuse) the image, boot Xen under QEMU with
tests/xen/check_in_dom0.py as dom0's work, and read its HWCHECK lines off the serial
console. Skips, naming what is missing, where Xen cannot be booted."""
from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMOKE = {"xl-create-paused", "started", "shutdown"}
FULL = {"client-layer-vs-oxenstored", "client-layer-vs-oxenstored-watch",
        "client-layer-via-xenbus", "client-layer-via-xenbus-watch",
        "standard-domains-up", "hyperwall-list-agrees-with-xl-list", "libxl-layout",
        "vifs-connected", "guests-reach-the-server-and-nothing-else", "pause-unpause",
        "hyperwall-down"}


def skip_without_qemu() -> None:
    missing = [tool for tool in ("qemu-system-x86_64", "cpio") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no {' or '.join(missing)} here: real Xen cannot be booted "
                    "(`make test-xen` installs qemu-system-x86 and cpio)")


def run_checks(which: str, timeout: float) -> dict[str, str]:
    """Every check's HWCHECK line by name; fails naming any that is missing or failed."""
    from builder import xen_guest
    from builder.xen_image import ImageUnavailable, boot, build
    skip_without_qemu()
    try:
        image = build(progress=lambda step: print(f"== xen image: {step}", flush=True))
    except ImageUnavailable as e:
        pytest.skip(f"cannot build the Xen image here ({e}); `make test-xen` builds it")
    python = Path(sys.executable)
    paths = sysconfig.get_paths()
    # The interpreter's own standard library too: a venv made from Debian's python3.11 has
    # it in /usr/lib/python3.11, which dom0's root does not hold (pyenv's sat beside its
    # binary).
    python_dirs = [Path(paths[key]) for key in ("purelib", "stdlib", "platstdlib")]
    guests = image.folder.parent / f"guests-{os.getpid()}"
    try:
        started = time.monotonic()
        xen_guest.build(image, guests, REPO,
                        progress=lambda step: print(f"== xen guests: {step}", flush=True))
        print(f"== xen guests built in {time.monotonic() - started:.1f}s", flush=True)
        script = (f"cd {REPO}\nexport PYTHONPATH={xen_guest.python_path(REPO)} "
                  "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:"
                  "/host/usr/lib/x86_64-linux-gnu:/host/lib/x86_64-linux-gnu\n"
                  f"{python} -S -m tests.xen.check_in_dom0 {which} {guests}\n")
        started = time.monotonic()
        lines = boot(image, script, host_paths=[REPO, python, Path(os.path.realpath(python)),
                                                *python_dirs, guests],
                     timeout=timeout, on_line=print)
        print(f"== Xen under QEMU: {which} checks done in {time.monotonic() - started:.1f}s")
    finally:
        shutil.rmtree(guests, ignore_errors=True)
    checks = {line.split()[1]: line for line in lines if line.startswith("HWCHECK ")}
    expected = FULL if which == "full" else SMOKE
    failed = sorted(name for name, line in checks.items() if " PASS" not in line)
    assert not failed, [checks[n] for n in failed]
    assert set(checks) >= expected, f"missing {expected - set(checks)}; last lines: " \
        + " | ".join(lines[-30:])
    return checks
