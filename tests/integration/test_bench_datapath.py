"""bench/datapath.py --quick, so the benchmark cannot rot: every set-up measured with every
metric, the engine rows reaching the engine as they claim (bypass hands bulk back to the
kernel, no bypass does not), and not a namespace left behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ET_OPEN, REPO, SHARED

pytestmark = pytest.mark.root


def test_quick_run_measures_every_setup_and_leaves_nothing(tmp_path: Path) -> None:
    if not ET_OPEN.is_dir():
        pytest.skip(f"no ET Open at {ET_OPEN} for the engine's 1,000 rules")
    out = tmp_path / "datapath.json"
    bench = subprocess.Popen([sys.executable, "bench/datapath.py", "--quick", "--json", str(out)],
                             cwd=REPO, env={**os.environ, "HYPERWALL_SHARED": str(SHARED)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = bench.communicate(timeout=300)   # six set-ups, two of them pools
    assert bench.returncode == 0, stderr[-3000:]

    results = json.loads(out.read_text())
    setups = results["setups"]
    assert sorted(setups) == ["a", "b", "c", "d"]
    for key, m in setups.items():
        figures = [m["up"]["gbit_s"], m["down"]["gbit_s"], m["conns"]["per_s"],
                   m["latency"]["p50_us"], m["latency"]["p99_us"]]
        assert all(f > 0 for f in figures), (key, figures)
        assert m["conns"]["failed"] == 0, (key, m["conns"])
        assert m["name"] in stdout
    for key in "bc":
        assert setups[key]["rules_loaded"] == 1000
        assert setups[key]["conns"]["engine"]["packets"] > 0
    # With bypass the bulk flow leaves the queue after the depth; without, all of it stays.
    assert setups["b"]["up"]["engine"]["packets"] * 10 < setups["c"]["up"]["engine"]["packets"]
    assert "PASS" in stdout or "FAIL" in stdout
    # The workers rows: two address pairs at once, and with two workers each gets its share.
    one, two = results["workers"]["1"], results["workers"]["2"]
    for way in ("up", "down"):
        assert one[way]["gbit_s"] > 0 and two[way]["gbit_s"] > 0
        assert len(one[way]["worker_packets"]) == 1 and one[way]["worker_packets"][0] > 0
        assert all(p > 0 for p in two[way]["worker_packets"]), two[way]
    assert "x 1 worker" in stdout

    tag = f"{bench.pid % 100000}-"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in netns.split() if n.startswith("hwdp") and tag in n], netns
