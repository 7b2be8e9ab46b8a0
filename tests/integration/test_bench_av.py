"""bench/av.py --quick, so the benchmark cannot rot: every scanner measured at every size
(each passed its positive control first, or the run fails), and the 1 MiB download through
ipsd inline timed with scanning and without (the run fails if EICAR arrives whole with
scanning on, or a benign download is cut), leaving no namespace behind."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.root


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
    f = r["inflight"]
    assert f["downloads"] == 5 and f["size"] == 1 << 20
    for name in ("scanning", "no scanning", "tracking only"):
        assert 0 < f[name]["median_ms"] <= f[name]["p99_ms"], (name, f)
    # the file was reassembled where the row says so (the warm-up download too)
    assert f["scanning"]["files_tracked"] == f["tracking only"]["files_tracked"] == 6, f
    assert f["no scanning"]["files_tracked"] == 0, f
    assert f["added_ms"] == round(f["scanning"]["median_ms"] - f["no scanning"]["median_ms"], 1)
    assert "added delay before the file's last packet is released" in run.stdout
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "hwavb" not in left, left
