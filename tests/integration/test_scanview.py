"""dom0's read-only view of a domain's layer, attached in another mount namespace only:
readable there, not writable, absent from dom0's own namespace, gone after hiding."""
from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dom0 import scanview

pytestmark = pytest.mark.root


@pytest.fixture
def other_ns(tmp_path: Path) -> Iterator[int]:
    # a process in a mount namespace of its own, with a /run of its own as sys-sec has
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                             "mount -t tmpfs none /run && echo ready && exec sleep 120"],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def inside(pid: int, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["nsenter", "-t", str(pid), "-m", *argv], capture_output=True,
                          timeout=10)


def test_view_is_read_only_and_only_there(other_ns: int, tmp_path: Path) -> None:
    layer = tmp_path / "upper"
    layer.mkdir()
    (layer / "f").write_text("in the layer")
    target = asyncio.run(scanview.show(other_ns, layer, "t1"))
    try:
        assert inside(other_ns, "cat", f"{target}/f").stdout == b"in the layer"
        wrote = inside(other_ns, "sh", "-c", f"echo x > {target}/g")
        assert wrote.returncode != 0 and b"Read-only" in wrote.stderr
        assert not Path(target).exists()          # not in dom0's namespace
        # the layer itself stays writable for its domain, and the view shows its changes
        (layer / "h").write_text("later")
        assert inside(other_ns, "cat", f"{target}/h").stdout == b"later"
    finally:
        asyncio.run(scanview.hide(other_ns, target))
    assert inside(other_ns, "test", "-e", str(target)).returncode == 1


def test_show_a_missing_layer(other_ns: int, tmp_path: Path) -> None:
    with pytest.raises(scanview.ScanViewError, match="no such folder"):
        asyncio.run(scanview.show(other_ns, tmp_path / "nope", "t2"))
