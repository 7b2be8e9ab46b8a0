"""Shared fixtures: real daemons in temporary run dirs, root gating, the shared data folder;
the embedded platform started for a test; the check that a bad config file is refused
naming itself."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dom0.sim.embedded import Platform

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HYPERWALL_SHARED", REPO.parent / "shared"))
ET_OPEN = SHARED / "data" / "et-open"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_root = pytest.mark.skip(reason="needs root (namespaces, veth, iptables)")
    for item in items:
        if "root" in item.keywords and os.geteuid() != 0:
            item.add_marker(skip_root)


@asynccontextmanager
async def started(platform: Platform, log_tail: int | None = None) -> AsyncIterator[Platform]:
    """`platform` started, and closed afterwards whatever happens; then its log (the last
    `log_tail` characters) goes to stdout, which pytest shows for a failed test."""
    try:
        platform.start()
        yield platform
    finally:
        log = platform.log_text()
        await platform.close()
        print(log if log_tail is None else log[-log_tail:])


def refused_naming_the_file(path: Path, text: str, load: Callable[[Path], object],
                            error: type[BaseException], says: str) -> None:
    """`text` as the config file `path`: `load` refuses it with `error`, whose message
    matches `says` and names the file."""
    path.write_text(text)
    with pytest.raises(error, match=says) as e:
        load(path)
    assert str(path) in str(e.value)


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes] | None,
                    timeout: float = 10.0) -> None:
    """Block until a Unix socket at `path` accepts a connection, or fail naming why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode} before {path} appeared")
        if path.exists():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(path))
                return
            except OSError:
                pass
            finally:
                s.close()
        # Polling a filesystem path has no event to wait on; the deadline bounds it.
        time.sleep(0.01)
    raise TimeoutError(f"no socket at {path} after {timeout}s")


class Daemon:
    """A xenstored running in the foreground in its own run dir."""

    def __init__(self, argv: list[str], rundir: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.rundir = rundir
        self.socket = rundir / "socket"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = rundir.parent / f"{rundir.name}.log"

    def start(self) -> Daemon:
        self.rundir.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.argv, stdout=logf, stderr=logf, env=self.env, start_new_session=True
        )
        logf.close()
        wait_for_socket(self.socket, self.proc)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def restart(self) -> Daemon:
        self.stop()
        return self.start()

    @property
    def env_for_clients(self) -> dict[str, str]:
        return {**os.environ, "XENSTORED_PATH": str(self.socket)}


@pytest.fixture
def hw_xenstored(tmp_path: Path) -> Iterator[Daemon]:
    """Hyperwall's own xenstored with a run dir and a state dir under tmp_path."""
    rundir, state = tmp_path / "run", tmp_path / "state"
    d = Daemon(
        [sys.executable, "-m", "dom0.xenstored.daemon", "--rundir", str(rundir),
         "--state-dir", str(state)],
        rundir,
    )
    d.start()
    try:
        yield d
    finally:
        d.kill()


def oxenstored_available() -> bool:
    return (SHARED / "tools" / "oxenstored-run").exists() and shutil.which("unshare") is not None


@pytest.fixture
def oxenstored(tmp_path: Path) -> Iterator[Daemon]:
    """Xen's real oxenstored (the oracle), run without a hypervisor by ../shared/tools."""
    if not oxenstored_available() or os.geteuid() != 0:
        pytest.skip("oxenstored needs ../shared/tools/oxenstored-run and root")
    rundir = tmp_path / "oxs"
    env = {**os.environ, "OXS_WORK": str(tmp_path / "oxs-work")}
    d = Daemon([str(SHARED / "tools" / "oxenstored-run"), str(rundir)], rundir, env=env)
    d.start()
    try:
        yield d
    finally:
        d.kill()
