"""Real Xen, booted under QEMU (`make test-xen`): Hyperwall's dom0 code against Xen itself,
in one boot. A guest defined by TOML through the xen backend (created paused, libxl's
xenstore layout and permissions against dom0/layout.py, pause/unpause, boot, polite
shutdown, nothing left behind), `xl list` read independently agreeing with the backend and
with the toolstack's view, and the client layer against Xen's own oxenstored."""
from __future__ import annotations

import pytest

from tests.xen.harness import run_checks

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.mark.timeout(660)
def test_hyperwall_dom0_against_real_xen() -> None:
    run_checks("full", timeout=600)
