"""A domain's tree scanned at rest by a real clamd, through a read-only bind mount of it
(what dom0 shows sys-sec): EICAR and the custom hash found with their paths and hashes,
a benign file clean, the view itself not writable, nothing followed out of it."""
from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from domains.syssec.treescan import Progress, scan_tree
from tests.clamd_lab import CUSTOM_SIG, EICAR, EICAR_SIG, Clamd, custom_file, running_clamd

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    with running_clamd(tmp_path_factory.mktemp("clamd")) as c:
        yield c


@pytest.fixture
def ro_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    upper, view = tmp_path / "upper", tmp_path / "view"
    upper.mkdir()
    view.mkdir()
    subprocess.run(["mount", "--bind", str(upper), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro,nosuid,nodev,noexec", str(view)],
                       check=True)
        yield upper, view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_clamd_scans_a_read_only_view(clamd: Clamd, ro_view: tuple[Path, Path],
                                      tmp_path: Path) -> None:
    upper, view = ro_view
    (upper / "home/user/Downloads").mkdir(parents=True)
    (upper / "home/user/Documents").mkdir(parents=True)
    (upper / "home/user/Downloads/eicar.com").write_bytes(EICAR)
    (upper / "home/user/Documents/invoice.pdf").write_bytes(custom_file())
    (upper / "home/user/Documents/letter.txt").write_text("dear grandma\n" * 100)
    outside = tmp_path / "outside.com"
    outside.write_bytes(EICAR)
    (upper / "home/user/escape").symlink_to(outside)

    with pytest.raises(OSError, match="Read-only"):
        (view / "tamper").write_text("x")

    items = list(scan_tree(view, clamd.scanner(), "family"))
    final = items[-1]
    assert isinstance(final, Progress) and final.done
    records = [i for i in items if isinstance(i, dict)]
    found = {r["hyperwall"]["path"]: r for r in records if r["event_type"] == "alert"}
    assert set(found) == {"home/user/Downloads/eicar.com", "home/user/Documents/invoice.pdf"}
    eicar = found["home/user/Downloads/eicar.com"]["hyperwall"]
    assert eicar["finding"].removesuffix(".UNOFFICIAL") == EICAR_SIG
    assert eicar["sha256"] == hashlib.sha256(EICAR).hexdigest()
    assert eicar["domain"] == "family" and eicar["scanner"] == "clamav"
    custom = found["home/user/Documents/invoice.pdf"]["hyperwall"]
    assert custom["finding"].removesuffix(".UNOFFICIAL") == CUSTOM_SIG
    # the positive control's twin: a benign file went through clamd and came back clean
    [letter] = [r for r in records if r["event_type"] == "fileinfo"
                and r["hyperwall"]["path"] == "home/user/Documents/letter.txt"]
    assert letter["hyperwall"]["verdict"] == "clean"
    assert final.skipped == {"symlink": 1} and final.infected == 2 and final.errors == 0
    assert outside.exists()
