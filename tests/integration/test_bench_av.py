"""bench/av.py --quick, so the benchmark cannot rot: every scanner measured at every size
(each passed its positive control first, or the run fails), and the in-flight row saying
what it waits for rather than a figure it did not measure."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_quick_run_measures_every_scanner_at_every_size(tmp_path: Path) -> None:
    out = tmp_path / "av.json"
    run = subprocess.run([sys.executable, "bench/av.py", "--quick", "--json", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(out.read_text())
    assert sorted(r["scanners"]) == ["clamav", "yara", "yara+clamav"]
    for name, by_size in r["scanners"].items():
        assert sorted(by_size) == sorted(["4 KiB", "64 KiB", "1 MiB"])
        for m in by_size.values():
            assert m["files"] >= 5 and m["files_s"] > 0 and m["mb_s"] > 0, (name, m)
            assert 0 < m["median_ms"] <= m["p99_ms"], (name, m)
        assert name in run.stdout
    assert r["inflight_hold"].startswith("pending") and "in-flight hold" in run.stdout
