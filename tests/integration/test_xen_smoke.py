"""The smoke subset of `make test-xen`, in `make test`: boot real Xen under QEMU, start one
guest (defined by TOML) through the xen backend, see it boot, shut it down. Outside CI it is
skipped, with the reason, where qemu-system-x86_64 or the Debian packages cannot be had;
under CI=true that is a failure, not a skip: CI must boot Xen. The image is built on first
use (cached under /var/cache/hyperwall/xen, ~10 s with a near apt mirror)."""
from __future__ import annotations

import os

import pytest

from tests.xen.harness import run_checks

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_one_guest_starts_and_stops_under_real_xen() -> None:
    try:
        # sys-sec counts as started once its security services serve, not when its agent
        # first reports: under TCG some 45 s more (the whole boot took ~130 s here).
        run_checks("smoke", timeout=210)
        return
    except pytest.skip.Exception as e:
        if os.environ.get("CI") != "true":
            raise
        reason = e.msg
    pytest.fail(f"CI=true, and real Xen cannot be booted: {reason}", pytrace=False)
