"""dom0's quarantine: files moved in with their hash and origin, the store root's only,
nothing overwritten, links and swapped files never followed or deleted."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from dom0.quarantine import Quarantine, QuarantineError
from netsec.filescan import Finding

FOUND = (Finding("clamav", "Hyperwall.Test.EICAR"),)


def test_store_is_0700(tmp_path: Path) -> None:
    root = tmp_path / "q"
    Quarantine(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    root.chmod(0o755)
    Quarantine(root)           # a loosened store is tightened again
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_store_that_is_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "q").symlink_to(tmp_path)
    with pytest.raises(QuarantineError, match="not a folder"):
        Quarantine(tmp_path / "q")


def test_store_owned_by_someone_else(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    (tmp_path / "q").mkdir()
    os.chown(tmp_path / "q", 65534, 65534)
    with pytest.raises(QuarantineError, match="owned by uid 65534"):
        Quarantine(tmp_path / "q")


def test_put_moves_and_records(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    src = tmp_path / "tree" / "home/user/Downloads/bad.exe"
    src.parent.mkdir(parents=True)
    data = b"infected" * 1000
    src.write_bytes(data)
    e = q.put(src, domain="family", origin="home/user/Downloads/bad.exe", findings=FOUND)
    assert not src.exists()
    assert e.sha256 == hashlib.sha256(data).hexdigest() and e.size == len(data)
    stored = q.path_of(e)
    assert stored.read_bytes() == data
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    [line] = (tmp_path / "q" / "index.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["domain"] == "family" and rec["origin"] == "home/user/Downloads/bad.exe"
    assert rec["findings"] == [{"scanner": "clamav", "signature": "Hyperwall.Test.EICAR"}]
    assert q.entries() == [e]


def test_same_file_twice_is_two_entries(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    src = tmp_path / "bad"
    ids = set()
    for _ in range(2):
        src.write_bytes(b"same bytes")
        ids.add(q.put(src, domain="family", origin="bad", findings=FOUND).id)
    assert len(ids) == 2 and len(q.entries()) == 2
    assert {q.path_of(e).read_bytes() for e in q.entries()} == {b"same bytes"}


def test_symlink_is_refused_and_left(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    secret = tmp_path / "secret"
    secret.write_bytes(b"dom0's own")
    link = tmp_path / "link"
    link.symlink_to(secret)
    with pytest.raises(QuarantineError, match="'family'"):
        q.put(link, domain="family", origin="link", findings=FOUND)
    assert link.is_symlink() and secret.read_bytes() == b"dom0's own"
    assert q.entries() == []


def test_fifo_is_refused(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(QuarantineError, match="not a regular file"):
        q.put(tmp_path / "fifo", domain="family", origin="fifo", findings=FOUND)
    assert q.entries() == []


def test_missing_source(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    with pytest.raises(QuarantineError, match="No such file"):
        q.put(tmp_path / "gone", domain="family", origin="gone", findings=FOUND)


def test_swapped_after_copy_is_not_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    q = Quarantine(tmp_path / "q")
    src = tmp_path / "bad"
    src.write_bytes(b"scanned")
    real_copy = q._copy

    def copy_then_swap(fd: int, dest: Path) -> tuple[str, int]:
        out = real_copy(fd, dest)
        src.unlink()
        src.write_bytes(b"planted after the scan")
        return out
    monkeypatch.setattr(q, "_copy", copy_then_swap)
    with pytest.raises(QuarantineError, match="replaced"):
        q.put(src, domain="family", origin="bad", findings=FOUND)
    assert src.read_bytes() == b"planted after the scan"
    [e] = q.entries()
    assert q.path_of(e).read_bytes() == b"scanned"


def test_corrupt_index_line_is_named(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    (tmp_path / "q" / "index.jsonl").write_text("{}\n")
    with pytest.raises(QuarantineError, match=r"index\.jsonl:1"):
        q.entries()
