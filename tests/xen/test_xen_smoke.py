"""Real Xen, booted under QEMU: one guest started and stopped through the xen backend, and
the client layer against Xen's own oxenstored (root; skipped without QEMU)."""
from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.root, pytest.mark.slow]

if shutil.which("qemu-system-x86_64") is None:
    pytest.skip("no qemu-system-x86_64 here: real Xen cannot be booted (make install "
                "installs qemu-system-x86)", allow_module_level=True)


def test_a_guest_runs_under_real_xen_through_the_xen_backend() -> None:
    from builder.xen_image import ImageUnavailable, boot, build
    try:
        image = build(progress=print)
    except ImageUnavailable as e:
        pytest.skip(f"cannot build the Xen image here: {e}")
    python = Path(sys.executable)
    site = sysconfig.get_paths()["purelib"]
    script = (f"cd {REPO}\nexport PYTHONPATH={REPO}:{site} "
              "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:"
              "/host/usr/lib/x86_64-linux-gnu:/host/lib/x86_64-linux-gnu\n"
              f"{python} -S -m tests.xen.check_in_dom0\n")
    lines = boot(image, script,
                 host_paths=[REPO, python, Path(os.path.realpath(python)), Path(site)],
                 timeout=240, on_line=print)
    checks = {line.split()[1]: line for line in lines if line.startswith("HWCHECK ")}
    assert set(checks) >= {"client-layer-vs-oxenstored", "xl-create-paused", "libxl-layout",
                           "xl-list-agrees", "guest-boots", "destroyed",
                           "hyperwall-list-agrees-with-xl-list", "toolstack-destroy"}, \
        lines[-30:]
    failed = [line for line in checks.values() if " PASS" not in line]
    assert not failed, failed
