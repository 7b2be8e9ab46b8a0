"""A whole embedded platform in a scratch folder, torn down to nothing: `make demo` and
the end-to-end tests run Hyperwall this way.

`Platform` runs `hyperwall-dom0d` (which starts its own xenstored) on a config dir in a
short temporary folder, with its own domid range so it cannot collide with another
platform on the host. `close()` stops every domain, dom0d and its xenstored, and destroys
any domain the backend still holds, even after a failure half-way.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dom0.backends.base import DomainHandle
from dom0.backends.ns import NsBackend
from dom0.config import STANDARD_DIR, DomainSpec
from dom0.xenstore.client import XenStore, rundir_socket

TIMEOUT = 30.0


class Platform:
    def __init__(self, config: dict[str, str] | None = None, *, first_domid: int = 1,
                 sys_sec_files: dict[str, str] | None = None,
                 dom0d_args: tuple[str, ...] = ()) -> None:
        # Unix socket paths must stay under 108 bytes: a short folder in /tmp.
        self.dir = Path(tempfile.mkdtemp(prefix="hwd-", dir="/tmp"))
        # Other users reach the control socket in it (the API decides what they may do).
        self.dir.chmod(0o755)
        self.config_dir = self.dir / "domains"
        if config is None:
            shutil.copytree(STANDARD_DIR, self.config_dir)
        else:
            self.config_dir.mkdir()
            for name, text in config.items():
                (self.config_dir / name).write_text(text)
        self.state_dir = self.dir / "state"
        # What sys-sec starts with (its settings, rules, block lists), as dom0 provides it.
        for rel, text in (sys_sec_files or {}).items():
            path = self.sys_sec_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.rundir = self.dir / "run"
        self.socket = self.dir / "control.sock"
        self.log = self.dir / "dom0d.log"
        self.first_domid = first_domid
        self.dom0d_args = dom0d_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def sys_sec_dir(self) -> Path:
        return self.state_dir / "sys-sec"

    @property
    def xs_rundir(self) -> Path:
        return self.rundir / "xenstored"

    def xenstore(self) -> XenStore:
        return XenStore(rundir_socket(self.xs_rundir)).connect()

    def env(self) -> dict[str, str]:
        return {**os.environ, "HYPERWALL_SOCKET": str(self.socket),
                "HYPERWALL_STATE_DIR": str(self.state_dir)}

    def start(self) -> Platform:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dom0.dom0d", "--config-dir", str(self.config_dir),
                 "--state-dir", str(self.state_dir), "--rundir", str(self.rundir),
                 "--socket", str(self.socket), "--first-domid", str(self.first_domid),
                 "--uplink", "none", *self.dom0d_args],
                stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + TIMEOUT
        while not self.socket.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"hyperwall-dom0d exited with {self.proc.returncode}:\n"
                                   + self.log_text()[-2000:])
            if time.monotonic() > deadline:
                raise TimeoutError(f"hyperwall-dom0d did not serve {self.socket} in {TIMEOUT}s")
            # dom0d gives no other signal that it serves; the deadline bounds the wait.
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL dom0d, as a crash would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(TIMEOUT)
        self.socket.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)

    async def cli(self, *args: str, timeout: float = 60.0) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dom0.cli", *args, env=self.env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode or 0, out.decode(), err.decode()

    async def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                await self.cli("down")
            self.stop()
        finally:
            backend = NsBackend(self.state_dir / "ns")
            for domid in await backend.list_domids():
                orphan = DomainSpec(name=f"orphan-{domid}", kind="app")
                await backend.destroy(DomainHandle(domid, orphan, self.xs_rundir))
            pidfile = self.xs_rundir / "xenstored.pid"
            if pidfile.exists():
                try:
                    os.kill(int(pidfile.read_text()), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            shutil.rmtree(self.dir, ignore_errors=True)

    def domid(self, name: str) -> int:
        """A running domain's id, as dom0d wrote it into xenstore."""
        with self.xenstore() as xs:
            for entry in xs.ls("/local/domain"):
                if xs.read_or(f"/local/domain/{entry}/name") == name.encode():
                    return int(entry)
        raise LookupError(f"{name} is not running")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
