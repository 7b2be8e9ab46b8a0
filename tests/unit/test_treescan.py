"""The at-rest walk: what it scans, what it skips and why, the records it writes, with real
YARA rules as the scanner (in process, so no daemon is needed here; clamd is in the
integration test)."""
from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domains.syssec.antivirus import YaraScanner
from domains.syssec.treescan import Limits, Progress, ScanPathError, TreeScan, scan_tree
from netsec.filescan import Finding, Outcome, ScanResult
from tests.clamd_lab import YARA_RULE, write_yara, yara_file


@pytest.fixture(scope="module")
def yara(tmp_path_factory: pytest.TempPathFactory) -> YaraScanner:
    return YaraScanner.from_dir(write_yara(tmp_path_factory.mktemp("yara")))


def run(root: Path, scanner: YaraScanner, *paths: str, **kw: Any
        ) -> tuple[list[dict[str, Any]], Progress]:
    items = list(scan_tree(root, scanner, "family", paths, **kw))
    final = items[-1]
    assert isinstance(final, Progress) and final.done
    return [i for i in items if isinstance(i, dict)], final


def alerts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["event_type"] == "alert"]


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "upper"
    (root / "home/user/Documents").mkdir(parents=True)
    (root / "home/user/Documents/letter.txt").write_text("dear grandma\n")
    (root / "home/user/Downloads").mkdir()
    (root / "home/user/Downloads/game.exe").write_bytes(yara_file())
    (root / "tmp").mkdir()
    (root / "tmp/notes").write_text("nothing\n")
    yield root


def test_finds_the_marked_file_and_records_every_file(tree: Path, yara: YaraScanner) -> None:
    records, final = run(tree, yara)
    infos = {r["hyperwall"]["path"]: r for r in records if r["event_type"] == "fileinfo"}
    assert set(infos) == {"home/user/Documents/letter.txt", "home/user/Downloads/game.exe",
                          "tmp/notes"}
    [a] = alerts(records)
    sha = hashlib.sha256(yara_file()).hexdigest()
    assert a["hyperwall"] | {"scan_id": None} == {
        "domain": "family", "source": "at-rest", "scan_id": None,
        "path": "home/user/Downloads/game.exe", "sha256": sha,
        "scanner": "yara", "finding": f"hyperwall-test:{YARA_RULE}"}
    assert a["alert"]["signature"].endswith("in home/user/Downloads/game.exe")
    assert infos["home/user/Downloads/game.exe"]["hyperwall"]["verdict"] == "infected"
    assert infos["tmp/notes"]["hyperwall"]["verdict"] == "clean"
    assert infos["tmp/notes"]["fileinfo"]["size"] == len("nothing\n")
    assert (final.files, final.infected, final.errors, final.truncated) == (3, 1, 0, False)
    summary = records[-1]
    assert summary["event_type"] == "scan" and summary["scan"]["infected"] == 1


def test_skips_what_is_not_a_regular_file(tree: Path, yara: YaraScanner,
                                          tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.bin").write_bytes(yara_file())
    (tree / "home/user/link-dir").symlink_to(outside)
    (tree / "home/user/link-file").symlink_to(outside / "evil.bin")
    os.mkfifo(tree / "tmp/fifo")
    os.mknod(tree / "tmp/whiteout", 0o600 | 0o020000, 0)            # overlay whiteout
    os.mknod(tree / "tmp/null", 0o600 | 0o020000, os.makedev(1, 3))  # a real device
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tree / "tmp/sock"))
    s.close()
    records, final = run(tree, yara)
    assert {r["hyperwall"]["path"] for r in alerts(records)} == {"home/user/Downloads/game.exe"}
    assert final.skipped == {"symlink": 2, "fifo": 1, "device": 1, "socket": 1}
    assert final.files == 3


def test_only_the_given_paths(tree: Path, yara: YaraScanner) -> None:
    records, final = run(tree, yara, "home/user/Documents", "/tmp/notes")
    assert final.files == 2 and not alerts(records)
    records, final = run(tree, yara, "home/user/Downloads/game.exe")
    assert final.files == 1 and len(alerts(records)) == 1


@pytest.mark.parametrize(("path", "reason"), [("../etc", "leaves"), ("nope", "No such"),
                                              ("home/user/link/x", "symlink")])
def test_bad_paths_are_refused_before_scanning(tree: Path, yara: YaraScanner, path: str,
                                               reason: str) -> None:
    (tree / "home/user/link").symlink_to("/etc")
    with pytest.raises(ScanPathError, match=reason):
        list(scan_tree(tree, yara, "family", [path]))


def test_bounds(tree: Path, yara: YaraScanner) -> None:
    (tree / "big").write_bytes(b"x" * 5000)
    records, final = run(tree, yara, limits=Limits(max_file=4096))
    [big] = [r for r in records if r["hyperwall"].get("path") == "big"]
    assert "too large" in big["hyperwall"]["error"] and final.errors == 1

    _, final = run(tree, yara, limits=Limits(max_files=2))
    assert final.files == 2 and final.truncated and final.skipped["file limit reached"] == 2

    _, final = run(tree, yara, limits=Limits(max_depth=2))
    # home/user is two folders down: not entered; big and tmp/notes are scanned
    assert final.truncated and final.skipped["too deep"] == 1 and final.files == 2


def test_progress_comes_on_long_scans(tree: Path, yara: YaraScanner) -> None:
    ticks = iter(range(1000))
    items = list(scan_tree(tree, yara, "family", clock=lambda: float(next(ticks)),
                           progress_every=1.0))
    assert sum(isinstance(i, Progress) for i in items) >= 3


def test_unscannable_is_not_clean() -> None:
    core = TreeScan("family", scan_id="s1")
    [info] = core.scanned("a", 3, "00", ScanResult(Outcome.ERROR, error="clamav: scanner down"),
                          0.0)
    assert info["hyperwall"]["verdict"] == "error"
    assert info["hyperwall"]["error"] == "clamav: scanner down"
    records = core.scanned("b", 3, "11", ScanResult(Outcome.INFECTED, (
        Finding("clamav", "A"), Finding("yara", "r:B"))), 0.0)
    assert [r["hyperwall"].get("finding") for r in records] == [None, "A", "r:B"]
    assert (core.progress.errors, core.progress.infected) == (1, 1)
