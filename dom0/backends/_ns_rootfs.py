"""Where a domain's files live on the host, its overlay root, and the bubblewrap command line.

Per domain, under `STATE/domains/<name>/`: `upper` and `work` (the overlay's writable
layer), `root` (the merged overlay, mounted while the domain runs), `console.log`, and
`status` (bubblewrap's JSON status: the init's host pid, then its exit code).

Inside, the domain sees the overlay as `/`, the host's `/usr` (and `/lib*` where those are
real directories) read-only, the repository, its venv and the Python installation behind
it read-only at their host paths (the agent runs from them), a fresh `/proc`, a minimal
`/dev`, tmpfs `/tmp` and `/run`, and its xenstore directory at `/var/run/xenstored`. The
directory is bound, not the socket: the daemon recreates the socket when it restarts.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INIT = REPO / "domains" / "init.py"
XENSTORE_DIR_INSIDE = "/var/run/xenstored"
# sys-sec's state that dom0 reads (EVE logs, the SecurityService socket, the provider's
# bundles): one host folder, the same for every start, at this path inside.
SHARED_DIR_INSIDE = "/var/lib/hyperwall"
# Root inside a domain keeps what an agent and sys-sec's datapath need (configure links,
# firewall, raw sockets, low ports, own files) and loses mounts, modules, ptrace, devices.
CAPS = ("CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_CHOWN",
        "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID", "CAP_KILL")


@dataclass(frozen=True)
class DomainDir:
    path: Path

    @property
    def upper(self) -> Path:
        return self.path / "upper"

    @property
    def work(self) -> Path:
        return self.path / "work"

    @property
    def root(self) -> Path:
        return self.path / "root"

    @property
    def console(self) -> Path:
        return self.path / "console.log"

    @property
    def status(self) -> Path:
        return self.path / "status"

    def make(self) -> None:
        for d in (self.upper, self.work, self.root):
            d.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Status:
    """What bubblewrap's `--json-status-fd` said so far."""

    init_pid: int | None = None
    exit_code: int | None = None


def parse_status(text: str) -> Status:
    """bubblewrap writes one JSON document per line: `child-pid` first, `exit-code` last."""
    pid = code = None
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        if isinstance(doc, dict):
            pid = doc.get("child-pid", pid)
            code = doc.get("exit-code", code)
    return Status(pid, code)


def overlay_options(lower: Path, d: DomainDir) -> str:
    return f"lowerdir={lower},upperdir={d.upper},workdir={d.work}"


_libc = ctypes.CDLL(None, use_errno=True)


def mount_overlay(lower: Path, d: DomainDir) -> None:
    """The domain's root, by mount(2) itself: `mount(8)` was a process and a read of the
    mount table on every start's path, four times the syscall's cost."""
    options = overlay_options(lower, d)
    if _libc.mount(b"overlay", os.fsencode(d.root), b"overlay", 0, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount overlay ({options}) on {d.root}: {os.strerror(err)}")


def unmount(path: Path) -> None:
    if _libc.umount2(os.fsencode(path), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {path}: {os.strerror(err)}")


def host_ro_paths() -> list[Path]:
    """Host paths a domain sees read-only at the same place, parents before children."""
    paths = [Path("/usr")]
    paths += [p for p in (Path("/lib"), Path("/lib32"), Path("/lib64"), Path("/libx32"),
                          Path("/bin"), Path("/sbin")) if p.is_dir() and not p.is_symlink()]
    paths += [REPO, Path(sys.prefix), Path(sys.base_prefix)]
    kept: list[Path] = []
    for p in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(p.is_relative_to(k) for k in kept):
            kept.append(p)
    return kept


def bwrap_argv(*, root: Path, hostname: str, xenstore_dir: Path, status_fd: int,
               env: dict[str, str], command: list[str],
               shared_dir: Path | None = None) -> list[str]:
    # The domain's own /tmp and /run come first, so that host paths bound after them stay
    # visible even when they live there (a checkout or venv under /tmp, a rundir in /run).
    argv = ["bwrap", "--bind", str(root), "/", "--tmpfs", "/tmp", "--tmpfs", "/run"]
    for p in host_ro_paths():
        argv += ["--ro-bind", str(p), str(p)]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--bind", str(xenstore_dir), XENSTORE_DIR_INSIDE,
             # sys-sec: its folder dom0 reads, and a tun device for its VPN (wireguard-go).
             *(["--bind", str(shared_dir), SHARED_DIR_INSIDE,
                "--dev-bind", "/dev/net/tun", "/dev/net/tun"] if shared_dir else []),
             "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", hostname,
             "--as-pid-1", "--new-session", "--json-status-fd", str(status_fd),
             "--chdir", "/", "--clearenv", "--cap-drop", "ALL"]
    for cap in CAPS:
        argv += ["--cap-add", cap]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return [*argv, "--", sys.executable, "-I", "-S", str(INIT), *command]
