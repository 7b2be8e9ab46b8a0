"""`make demo` itself: it must run through with every check passing and leave nothing; and
a claim it makes must be a check that fails when what it claims is broken."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from dom0.backends.ns import NETNS_DIR
from dom0.sim import demo
from dom0.sim.embedded import Platform
from tests.leftovers import leftovers
from tests.wall_probes import run

pytestmark = [pytest.mark.root, pytest.mark.slow]


# The demo's own domids and namespace prefix, so that what it leaves can be told from what
# other platforms on this host (other tests, other checkouts) make and remove meanwhile:
# well above the other tests' domid ranges (tests/integration/test_domain_stress.py's ends
# at 30000).
FIRST_DOMID = 30000 + (os.getpid() % 130) * 20
DOMIDS = range(FIRST_DOMID, FIRST_DOMID + 20)
PREFIX = f"hwdt{os.getpid() % 10000}"


def left_by_the_demo() -> list[str]:
    """Every trace of the demo's domains, and its simulated internet's namespaces."""
    found = [trace for domid in DOMIDS for trace in leftovers(domid)]
    return found + [f"netns {p.name}" for p in NETNS_DIR.glob(f"{PREFIX}-*")]


def test_the_demo_passes_every_check_and_cleans_up() -> None:
    assert not left_by_the_demo()
    done = subprocess.run([sys.executable, "-m", "dom0.sim.demo", "--first-domid",
                           str(FIRST_DOMID), "--prefix", PREFIX], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
    assert "✗" not in done.stdout
    # It used the domids it was given (work's shows in its xenstore check): the check below
    # looks at those.
    work = re.search(r"xenstore-read /local/domain/(\d+)/name", done.stdout)
    assert work is not None and int(work.group(1)) in DOMIDS, done.stdout
    assert not left_by_the_demo()


async def test_the_demo_fails_when_the_lan_wall_is_gone(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    async def open_the_lan(p: Platform, show: demo.Show) -> None:
        # Not a demo part: the fault, made before untrusted's LAN check runs.
        untrusted = p.domid("untrusted")
        run(f"hw-{p.domid('sys-sec')}", "iptables", "-D", "HW-FORWARD", "-i",
            f"vif{untrusted}.0", "-o", "uplink0", "-d", "192.168.0.0/16", "-j", "DROP")

    monkeypatch.setattr(demo, "STORIES", [open_the_lan, *demo.STORIES])
    assert await demo.run(FIRST_DOMID, PREFIX) == 1
    assert not left_by_the_demo()
    out = capsys.readouterr().out
    assert f"✗ untrusted: http://{demo.LAN_HOST}/ (the local network) is refused" in out, out
    assert "1 check(s) failed" in out, out
