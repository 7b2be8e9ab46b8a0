"""dom0 writes the bytecode of what domains run, since they see the checkout read-only."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from dom0.backends._ns_bytecode import ensure_bytecode


def _repo(tmp_path: Path) -> Path:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "mod.py").write_text("X = 1\n")
    (tmp_path / "one.py").write_text("Y = 2\n")
    return tmp_path


def test_writes_the_bytecode_python_looks_for(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    assert ensure_bytecode(repo, ("pkg", "one.py", "absent"))
    for source in (repo / "pkg" / "sub" / "mod.py", repo / "one.py"):
        pyc = Path(importlib.util.cache_from_source(str(source)))
        assert pyc.is_file(), f"no bytecode for {source}"


def test_recompiles_a_source_changed_since(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    ensure_bytecode(repo, ("one.py",))
    pyc = Path(importlib.util.cache_from_source(str(repo / "one.py")))
    before = pyc.read_bytes()
    (repo / "one.py").write_text("Y = 'a longer source than before'\n")
    st = (repo / "one.py").stat()
    os.utime(repo / "one.py", (st.st_atime, st.st_mtime + 5))
    ensure_bytecode(repo, ("one.py",))
    assert pyc.read_bytes() != before


def test_a_file_that_does_not_compile_leaves_the_others_compiled(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "pkg" / "broken.py").write_text("def (:\n")
    assert not ensure_bytecode(repo, ("pkg",))
    assert Path(importlib.util.cache_from_source(str(repo / "pkg" / "sub" / "mod.py"))).is_file()
