"""The compiled hot path and its fallback: which build a process runs, and a build older
than its sources set aside (netsec/__init__.py, builder/compile_engine.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder import compile_engine
from netsec import _stale

REPO = Path(__file__).resolve().parents[2]


def _touch(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))


def test_a_build_older_than_its_source_or_without_one_is_stale(tmp_path: Path) -> None:
    so = "cpython-311-x86_64-linux-gnu.so"
    _touch(tmp_path / "fresh.py", 100)
    _touch(tmp_path / f"fresh.{so}", 200)
    _touch(tmp_path / "edited.py", 300)
    _touch(tmp_path / f"edited.{so}", 200)
    _touch(tmp_path / f"orphan.{so}", 200)                 # its source deleted
    _touch(tmp_path / f"compiled__mypyc.{so}", 1)           # the runtime has no source
    _touch(tmp_path / "sub" / "mod.py", 300)
    _touch(tmp_path / "sub" / f"mod.{so}", 200)
    _touch(tmp_path / "_htp_build" / f"x.{so}", 1)          # not ours to judge
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in _stale(tmp_path)) == [
        "edited.py", "orphan.py", "sub/mod.py"]


def _which_build(**env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import netsec, netsec.engine as e; "
         "print(netsec.compiled(), e.__spec__.origin)"],
        cwd=REPO, env={k: v for k, v in {**os.environ, **env}.items() if v},
        capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_the_pure_switch_runs_every_engine_module_from_source() -> None:
    compiled, origin = _which_build(HYPERWALL_PURE_PYTHON="1").split()
    assert compiled == "False" and origin.endswith("netsec/engine.py")


def test_a_fresh_build_is_the_one_that_runs() -> None:
    if not compile_engine.built():
        pytest.skip("no compiled engine in this checkout (make install builds it)")
    if _stale(REPO / "netsec"):
        pytest.skip("the build is older than a source (make install rebuilds it)")
    compiled, origin = _which_build(HYPERWALL_PURE_PYTHON="").split()
    assert compiled == "True" and origin.endswith(".so")


def test_every_hot_module_is_built_and_no_package_init() -> None:
    hot = compile_engine.hot_path()
    assert all(p.exists() for p in hot)
    assert not any(p.name == "__init__.py" for p in hot)
    built = {p.name.split(".")[0] for p in compile_engine.built()}
    if built:
        assert {p.stem for p in hot} <= built
