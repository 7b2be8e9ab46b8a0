"""A read-only view of a domain's writable layer inside sys-sec's mount namespace, for the
duration of one scan.

dom0 clones the layer as a detached bind mount (open_tree(2) with OPEN_TREE_CLONE), makes
it read-only, nosuid, nodev and noexec (mount_setattr(2)), enters sys-sec's mount
namespace and attaches it there (move_mount(2)): the view exists only in sys-sec's
namespace, never in dom0's and never in the domain's, so the domain can neither see the
scan nor reach its view, and no mount propagation between namespaces is needed (the host's
mounts may be private). Detaching is a lazy unmount in the same namespace; the view also
dies with sys-sec's namespace if sys-sec stops first.

setns(2) into a mount namespace refuses a process with threads, and dom0d has them, so
the two steps run in a fresh single-threaded interpreter (`python -m dom0.scanview`).
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import sys
from pathlib import Path, PurePosixPath

# where views appear inside sys-sec (its /run is its own tmpfs)
VIEWS_INSIDE = PurePosixPath("/run/hyperwall-scan")

_NR = {"x86_64": {"open_tree": 428, "move_mount": 429, "mount_setattr": 442},
       "aarch64": {"open_tree": 428, "move_mount": 429, "mount_setattr": 442}}
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 1, 2, 4, 8
CLONE_NEWNS = 0x00020000
MNT_DETACH = 2


class ScanViewError(RuntimeError):
    pass


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)


def _sys(name: str, *args: object) -> int:
    nr = _NR.get(os.uname().machine, {}).get(name)
    if nr is None:
        raise ScanViewError(f"{name}(2): no syscall number known for {os.uname().machine}")
    ret = _libc.syscall(nr, *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return int(ret)


def _enter(pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into the mount namespace of pid {pid}: "
                          f"{os.strerror(err)}")
    finally:
        os.close(fd)


def attach(pid: int, source: Path, target: PurePosixPath) -> None:
    """Attach `source` (a dom0 path) read-only at `target` in the mount namespace of
    `pid`. Runs in this process: call it only from a single-threaded one."""
    tree = _sys("open_tree", AT_FDCWD, os.fsencode(source),
                OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
    try:
        attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                          | MOUNT_ATTR_NOEXEC, 0, 0, 0)
        _sys("mount_setattr", tree, b"", AT_EMPTY_PATH | AT_RECURSIVE,
             ctypes.byref(attr), ctypes.sizeof(attr))
        _enter(pid)
        os.makedirs(target, mode=0o700, exist_ok=True)
        _sys("move_mount", tree, b"", AT_FDCWD, os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(tree)


def detach(pid: int, target: PurePosixPath) -> None:
    _enter(pid)
    if _libc.umount2(os.fsencode(target), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err != 22:   # EINVAL: not mounted (sys-sec restarted, or attach failed)
            raise OSError(err, f"umount {target}: {os.strerror(err)}")
    try:
        os.rmdir(target)
    except FileNotFoundError:
        pass


async def _helper(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dom0.scanview", *argv,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise ScanViewError(err.decode(errors="replace").strip().splitlines()[-1]
                            if err.strip() else f"scanview {argv[0]} exited {proc.returncode}")


async def show(pid: int, source: Path, view_id: str) -> PurePosixPath:
    """Attach `source` read-only in the mount namespace of `pid` (sys-sec's init); returns
    where sys-sec sees it."""
    if not source.is_dir():
        raise ScanViewError(f"{source}: no such folder to show")
    target = VIEWS_INSIDE / view_id
    await _helper("attach", str(pid), str(source), str(target))
    return target


async def hide(pid: int, target: PurePosixPath) -> None:
    await _helper("detach", str(pid), str(target))


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["attach"] and len(argv) == 4:
            attach(int(argv[1]), Path(argv[2]), PurePosixPath(argv[3]))
        elif argv[:1] == ["detach"] and len(argv) == 3:
            detach(int(argv[1]), PurePosixPath(argv[2]))
        else:
            print("usage: python -m dom0.scanview attach PID SOURCE TARGET | "
                  "detach PID TARGET", file=sys.stderr)
            return 2
    except (OSError, ScanViewError) as e:
        print(f"scanview: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
