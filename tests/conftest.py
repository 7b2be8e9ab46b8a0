"""Shared fixtures: real daemons in temporary run dirs, root gating, the shared data folder;
the embedded platform started for a test; the check that a bad config file is refused
naming itself; throw-away Unix accounts and the `hyperwall` CLI run as one of them."""
from __future__ import annotations

import functools
import grp
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
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


def _quiet(*argv: str) -> None:
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


@contextmanager
def unix_accounts(users: Mapping[str, Sequence[str]],
                  groups: Sequence[str] = ()) -> Iterator[None]:
    """The groups `groups` and the users `users` (name: the groups it is also in, each with
    its own group), removed afterwards whatever happens, and first as leftovers of an
    interrupted run."""
    def remove() -> None:
        for user in users:
            _quiet("userdel", user)
            _quiet("groupdel", user)
        for group in groups:
            _quiet("groupdel", group)
    remove()
    try:
        for group in groups:
            subprocess.run(["groupadd", group], check=True)
        for user, extra in users.items():
            subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell",
                            "/usr/sbin/nologin", *(["-G", ",".join(extra)] if extra else []),
                            user], check=True)
        yield
    finally:
        remove()


HYPERWALL = Path(sys.executable).with_name("hyperwall")
# Where the venv's interpreter sits under a private directory (a venv made before `make
# install` took the system's interpreter, e.g. from pyenv in /root), other users cannot
# execute it: then the CLI is started as root, with every module it needs loaded, and drops
# to the user's uid, gids and groups before it connects. Either way the connection carries
# the user's real credentials.
_DROP_TO_USER = """
import os, pwd, sys
import dom0.cli.main
dom0.cli.main.parser().format_help()  # loads what argparse loads lazily
pw = pwd.getpwnam(sys.argv[1])
os.setgroups(os.getgrouplist(pw.pw_name, pw.pw_gid))
os.setgid(pw.pw_gid)
os.setuid(pw.pw_uid)
sys.exit(dom0.cli.main.run(sys.argv[2:]))
"""


def run_as(user: str, *argv: str) -> list[str]:
    """`argv` run with `user`'s uid, gid and groups. setpriv execs it in its own place
    (runuser would stay its parent and not pass a Ctrl-C on)."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]


@functools.cache
def venv_runs_for(user: str) -> bool:
    """Whether `user` can run the venv's `hyperwall` (README: a non-root user runs it)."""
    return subprocess.run(run_as(user, str(HYPERWALL), "--help"),
                          capture_output=True).returncode == 0


def as_user(user: str | None, *argv: str) -> list[str]:
    """The command line running `hyperwall argv` as `user` (None: as root)."""
    if user is None:
        return [str(HYPERWALL), *argv]
    if venv_runs_for(user):
        return run_as(user, str(HYPERWALL), *argv)
    return [sys.executable, "-c", _DROP_TO_USER, user, *argv]


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
