"""A domain's cgroup on either cgroup v2 or v1 (one directory per controller hierarchy).

v2 is detected by `/sys/fs/cgroup/cgroup.controllers`; otherwise each v1 controller the
backend uses (memory, cpu, pids, freezer) gets its own `hyperwall/dom-<domid>` directory.
Limits: memory (`memory.max` | `memory.limit_in_bytes`), CPU share (`cpu.weight` |
`cpu.shares`, scaled so weight 100 is the default 1024 shares), pids. Pause is the freezer
(`cgroup.freeze` | `freezer.state`).
"""
from __future__ import annotations

import os
import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "hyperwall"
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
DEFAULT_PIDS_MAX = 1024


class CgroupError(RuntimeError):
    pass


def cpu_shares(weight: int) -> int:
    """v1 `cpu.shares` for a v2-scale `cpu.weight` (100 -> the kernel's default 1024)."""
    return max(2, weight * 1024 // 100)


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    cpu_weight: int
    pids_max: int = DEFAULT_PIDS_MAX


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        raise CgroupError(f"cannot write {value!r} to {path}: {e.strerror}") from None


@dataclass(frozen=True)
class DomainCgroup:
    """The directories of one domain's cgroup; `root` is injectable for tests."""

    domid: int
    root: Path = ROOT

    @property
    def v2(self) -> bool:
        return (self.root / "cgroup.controllers").exists()

    def _dir(self, controller: str) -> Path:
        base = self.root if self.v2 else self.root / controller
        return base / PARENT / f"dom-{self.domid}"

    def dirs(self) -> list[Path]:
        if self.v2:
            return [self._dir("")]
        return [self._dir(c) for c in V1_CONTROLLERS]

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs())

    def create(self, limits: Limits) -> None:
        if self.v2:
            # Controllers must be enabled on every ancestor for the leaf to get their files.
            for parent in (self.root, self.root / PARENT):
                parent.mkdir(exist_ok=True)
                available = (parent / "cgroup.controllers").read_text().split()
                missing = {"memory", "cpu", "pids"} - set(available)
                if missing:
                    raise CgroupError(f"{parent}: controllers {sorted(missing)} not available")
                _write(parent / "cgroup.subtree_control", "+memory +cpu +pids")
        for d in self.dirs():
            d.mkdir(parents=True, exist_ok=True)
        if self.v2:
            d = self._dir("")
            _write(d / "memory.max", str(limits.memory_bytes))
            _write(d / "cpu.weight", str(limits.cpu_weight))
            _write(d / "pids.max", str(limits.pids_max))
        else:
            _write(self._dir("memory") / "memory.limit_in_bytes", str(limits.memory_bytes))
            _write(self._dir("cpu") / "cpu.shares", str(cpu_shares(limits.cpu_weight)))
            _write(self._dir("pids") / "pids.max", str(limits.pids_max))

    def joined(self, argv: list[str]) -> list[str]:
        """`argv` run from inside the domain's cgroup: a shell moves itself in, then execs
        it (same pid), so the command and all it forks are counted from the start.

        Not a `preexec_fn`: dom0d runs gRPC threads, and running Python between fork and
        exec in a threaded process can deadlock or crash the child."""
        files = " ".join(shlex.quote(str(d / "cgroup.procs")) for d in self.dirs())
        script = f'for f in {files}; do echo $$ > "$f" || exit 125; done; exec "$@"'
        return ["sh", "-c", script, "hw-cgroup-join", *argv]

    def pids(self) -> list[int]:
        # The pids hierarchy (or the v2 group) sees every process of the domain.
        d = self._dir("" if self.v2 else "pids")
        try:
            return [int(p) for p in (d / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def _freezer(self) -> tuple[Path, str, str]:
        if self.v2:
            return self._dir("") / "cgroup.freeze", "1", "0"
        return self._dir("freezer") / "freezer.state", "FROZEN", "THAWED"

    def frozen(self) -> bool:
        path, on, _ = self._freezer()
        try:
            value = path.read_text().strip()
        except FileNotFoundError:
            return False
        if self.v2:
            # cgroup.freeze is the request; cgroup.events says when it took effect.
            events = (self._dir("") / "cgroup.events").read_text()
            return "frozen 1" in events
        return value == on

    def freeze(self, timeout: float = 5.0) -> None:
        path, on, _ = self._freezer()
        _write(path, on)
        self._wait(self.frozen, timeout, "freeze")

    def thaw(self, timeout: float = 5.0) -> None:
        path, _, off = self._freezer()
        _write(path, off)
        self._wait(lambda: not self.frozen(), timeout, "thaw")

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        # The freezer and an emptying cgroup report only through their files: poll, bounded.
        while not done():
            if time.monotonic() > deadline:
                raise CgroupError(f"{what} of cgroup dom-{self.domid} not done after {timeout}s")
            time.sleep(0.002)

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process, frozen first so none can fork away; wait until empty."""
        if not self.exists():
            return
        kill_file = self._dir("") / "cgroup.kill"
        if self.v2 and kill_file.exists():
            _write(kill_file, "1")
        else:
            path, on, off = self._freezer()
            _write(path, on)
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _write(path, off)
        self._wait(lambda: not self.pids(), timeout, "kill")

    def remove(self) -> None:
        for d in self.dirs():
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise CgroupError(f"cannot remove {d}: {e.strerror}") from None
