"""`make demo` itself: it must run through with every check passing and leave nothing."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_the_demo_passes_every_check_and_cleans_up() -> None:
    before = set(Path("/run/netns").glob("hw-*")) if Path("/run/netns").exists() else set()
    done = subprocess.run([sys.executable, "-m", "dom0.demo"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
    assert "✗" not in done.stdout
    after = set(Path("/run/netns").glob("hw-*")) if Path("/run/netns").exists() else set()
    assert after <= before, after - before
