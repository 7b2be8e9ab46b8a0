"""`make demo` itself: it must run through with every check passing and leave nothing; and
a claim it makes must be a check that fails when what it claims is broken."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dom0.sim import demo
from dom0.sim.embedded import Platform
from tests.wall_probes import run

pytestmark = [pytest.mark.root, pytest.mark.slow]


def netns_left() -> set[Path]:
    return set(Path("/run/netns").glob("hw-*")) if Path("/run/netns").exists() else set()


def test_the_demo_passes_every_check_and_cleans_up() -> None:
    before = netns_left()
    done = subprocess.run([sys.executable, "-m", "dom0.sim.demo"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
    assert "✗" not in done.stdout
    assert netns_left() <= before, netns_left() - before


async def test_the_demo_fails_when_the_lan_wall_is_gone(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    async def open_the_lan(p: Platform, show: demo.Show) -> None:
        # Not a demo part: the fault, made before untrusted's LAN check runs.
        untrusted = p.domid("untrusted")
        run(f"hw-{p.domid('sys-sec')}", "iptables", "-D", "HW-FORWARD", "-i",
            f"vif{untrusted}.0", "-o", "uplink0", "-d", "192.168.0.0/16", "-j", "DROP")

    monkeypatch.setattr(demo, "STORIES", [open_the_lan, *demo.STORIES])
    assert await demo.run() == 1
    out = capsys.readouterr().out
    assert f"✗ untrusted: http://{demo.LAN_HOST}/ (the local network) is refused" in out, out
    assert "1 check(s) failed" in out, out
