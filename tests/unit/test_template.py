from __future__ import annotations

from pathlib import Path

import pytest

from builder.template import build_template, main


def test_skeleton_has_etc_dirs_and_usr_links(tmp_path: Path) -> None:
    said: list[str] = []
    root = build_template(tmp_path / "default", progress=said.append)
    assert (root / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    for f in ("group", "hosts", "hostname", "resolv.conf", "nsswitch.conf"):
        assert (root / "etc" / f).is_file()
    for d in ("tmp", "var", "run", "root", "home", "proc", "sys", "dev", "usr"):
        assert (root / d).is_dir()
    assert (root / "bin").readlink() == Path("usr/bin")
    assert (root / "lib").readlink() == Path("usr/lib")
    assert (root / "var" / "run").readlink() == Path("../run")
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert said[-1] == f"template ready at {root}"
    assert [p.name for p in tmp_path.iterdir()] == ["default"]


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    build_template(tmp_path / "t")
    with pytest.raises(FileExistsError, match="already exists"):
        build_template(tmp_path / "t")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "x")]) == 0
    assert main([str(tmp_path / "x")]) == 1
    assert main([]) == 2
    assert "already exists" in capsys.readouterr().err
