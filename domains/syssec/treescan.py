"""Files at rest: sys-sec scanning the tree of a domain that dom0 showed it read-only.

The core (`TreeScan`) is pure: told what each directory entry is (its name and lstat), it
says whether to descend, scan or skip it and why, and it turns a scanned file's verdict
into EVE-like records (`fileinfo` for every file, `alert` for what a scanner found),
keeping the counts that progress reports. The shell (`scan_tree`) is the only IO: it walks
by directory descriptors opened with O_NOFOLLOW, so a link the domain plants (or swaps in
while the scan runs: the domain may be running) is never followed, and opens each file
the same way, checking on the open descriptor that it is still a regular file.

What is never scanned, and why, is counted and recorded: links, devices, FIFOs and
sockets (not files), another filesystem (a mount inside the tree), a file over the size
bound (an `unscannable` record: nobody vouched for it), and everything past the bound on
files or depth (the scan says it stopped short). Overlay whiteouts (character devices 0:0
in an upper layer) are deletions, not files, and pass silently.
"""
from __future__ import annotations

import enum
import errno
import hashlib
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from netsec.eve import timestamp
from netsec.filescan import FileScanner, Outcome, ScanResult

MAX_FILE = 25 << 20        # clamd's StreamMaxLength by default: a larger file is unscannable
MAX_FILES = 200_000
MAX_DEPTH = 64
PROGRESS_EVERY = 0.5       # seconds between progress reports on a long scan
CATEGORY = "Malware found at rest"


class Skip(enum.Enum):
    SYMLINK = "symlink"
    DEVICE = "device"
    FIFO = "fifo"
    SOCKET = "socket"
    OTHER_FS = "other filesystem"
    TOO_DEEP = "too deep"
    LIMIT = "file limit reached"
    VANISHED = "vanished"         # gone or changed between listing and opening
    UNREADABLE = "unreadable"


class Action(enum.Enum):
    DESCEND = "descend"
    SCAN = "scan"
    SKIP = "skip"
    IGNORE = "ignore"             # an overlay whiteout: a deletion, nothing there


@dataclass(frozen=True)
class Limits:
    max_file: int = MAX_FILE
    max_files: int = MAX_FILES
    max_depth: int = MAX_DEPTH


@dataclass
class Progress:
    domain: str
    scan_id: str
    dirs: int = 0
    files: int = 0                # files scanned
    bytes: int = 0
    infected: int = 0
    errors: int = 0               # files no scanner could vouch for
    skipped: dict[str, int] = field(default_factory=dict)
    truncated: bool = False       # stopped at a bound: not every file was looked at
    done: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "scan_id": self.scan_id, "dirs": self.dirs,
                "files": self.files, "bytes": self.bytes, "infected": self.infected,
                "errors": self.errors, "skipped": dict(self.skipped),
                "truncated": self.truncated, "done": self.done}

    def line(self) -> str:
        skipped = sum(self.skipped.values())
        return (f"{self.domain}: {self.files} files, {self.bytes / 1e6:.1f} MB scanned, "
                f"{self.infected} infected, {self.errors} unscannable, {skipped} skipped"
                + (" (stopped at a bound)" if self.truncated else "")
                + (", done" if self.done else ""))


Record = dict[str, Any]


class TreeScan:
    """The decisions and the records of one scan of one domain's tree (pure)."""

    def __init__(self, domain: str, *, limits: Limits = Limits(), scan_id: str | None = None,
                 root_dev: int | None = None) -> None:
        self.domain = domain
        self.limits = limits
        self.root_dev = root_dev
        self.progress = Progress(domain, scan_id or uuid.uuid4().hex[:12])
        self._admitted = 0

    def _skip(self, why: Skip) -> tuple[Action, Skip]:
        self.progress.skipped[why.value] = self.progress.skipped.get(why.value, 0) + 1
        if why in (Skip.LIMIT, Skip.TOO_DEEP):
            self.progress.truncated = True
        return Action.SKIP, why

    def classify(self, st: os.stat_result, depth: int) -> tuple[Action, Skip | None]:
        """What to do with an entry whose lstat is `st`, `depth` folders below the root."""
        mode = st.st_mode
        if self.root_dev is not None and st.st_dev != self.root_dev:
            return self._skip(Skip.OTHER_FS)
        if stat.S_ISDIR(mode):
            if depth >= self.limits.max_depth:
                return self._skip(Skip.TOO_DEEP)
            self.progress.dirs += 1
            return Action.DESCEND, None
        if stat.S_ISREG(mode):
            if self._admitted >= self.limits.max_files:
                return self._skip(Skip.LIMIT)
            self._admitted += 1
            return Action.SCAN, None
        if stat.S_ISCHR(mode) and st.st_rdev == 0:
            return Action.IGNORE, None
        if stat.S_ISLNK(mode):
            return self._skip(Skip.SYMLINK)
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            return self._skip(Skip.DEVICE)
        if stat.S_ISFIFO(mode):
            return self._skip(Skip.FIFO)
        return self._skip(Skip.SOCKET)

    def skipped(self, why: Skip) -> None:
        """The shell could not go on with an entry the core admitted."""
        if why is Skip.VANISHED or why is Skip.UNREADABLE:
            self._skip(why)

    def _head(self, ts: float, event_type: str, path: str, sha256: str | None
              ) -> Record:
        return {"timestamp": timestamp(ts), "event_type": event_type,
                "hyperwall": {"domain": self.domain, "source": "at-rest",
                              "scan_id": self.progress.scan_id, "path": path,
                              "sha256": sha256}}

    def fileinfo(self, path: str, size: int, sha256: str | None, state: str) -> Record:
        return {"filename": path, "size": size, "sha256": sha256, "state": state,
                "stored": False}

    def too_large(self, path: str, size: int, ts: float) -> list[Record]:
        self.progress.errors += 1
        rec = self._head(ts, "fileinfo", path, None)
        rec["fileinfo"] = self.fileinfo(path, size, None, "TRUNCATED")
        rec["hyperwall"]["error"] = (f"too large to scan ({size} bytes, limit "
                                     f"{self.limits.max_file})")
        return [rec]

    def scanned(self, path: str, size: int, sha256: str, result: ScanResult, ts: float
                ) -> list[Record]:
        """The records of a file scanned, in the order a reader wants them."""
        p = self.progress
        p.files += 1
        p.bytes += size
        info = self._head(ts, "fileinfo", path, sha256)
        info["fileinfo"] = self.fileinfo(path, size, sha256, "CLOSED")
        info["hyperwall"]["verdict"] = result.outcome.value
        out = [info]
        if result.outcome is Outcome.ERROR:
            p.errors += 1
            info["hyperwall"]["error"] = result.error
        elif result.outcome is Outcome.INFECTED:
            p.infected += 1
            for f in result.findings:
                alert = self._head(ts, "alert", path, sha256)
                alert["alert"] = {"action": "allowed", "gid": 1, "signature_id": 0, "rev": 0,
                                  "signature": f"{f.scanner}: {f.signature} in {path}",
                                  "category": CATEGORY, "severity": 1}
                alert["fileinfo"] = info["fileinfo"]
                alert["hyperwall"]["scanner"] = f.scanner
                alert["hyperwall"]["finding"] = f.signature
                out.append(alert)
        return out

    def summary(self, ts: float, error: str = "") -> Record:
        self.progress.done = True
        rec: Record = {"timestamp": timestamp(ts), "event_type": "scan",
                       "scan": self.progress.as_json(),
                       "hyperwall": {"domain": self.domain, "source": "at-rest",
                                     "scan_id": self.progress.scan_id}}
        if error:
            rec["scan"]["error"] = error
        return rec


# --- the shell ---------------------------------------------------------------------------

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CHUNK = 1 << 20


class ScanPathError(ValueError):
    """A PATH given to the scan that is not inside the tree, or not there."""


def _read(fd: int, limit: int) -> bytes:
    parts, got = [], 0
    while got <= limit and (chunk := os.read(fd, min(CHUNK, limit + 1 - got))):
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _open_at(name: str, flags: int, dir_fd: int) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link:
            raise OSError(errno.ELOOP, f"{name} is a symlink, never followed") from e
        raise


def _open_under(root_fd: int, rel: PurePosixPath) -> tuple[int, os.stat_result]:
    """`rel` opened from the root one component at a time without following links."""
    fd = os.dup(root_fd)
    try:
        for part in rel.parts[:-1]:
            nxt = _open_at(part, _DIR, fd)
            os.close(fd)
            fd = nxt
        if not rel.parts:
            return fd, os.fstat(fd)
        last = _open_at(rel.parts[-1], _FILE, fd)
    finally:
        if rel.parts:
            os.close(fd)
    return last, os.fstat(last)


def _clean_path(text: str) -> PurePosixPath:
    p = PurePosixPath(text.lstrip("/")) if text not in ("", "/") else PurePosixPath(".")
    if ".." in p.parts:
        raise ScanPathError(f"{text!r} leaves the domain's tree ('..')")
    return PurePosixPath(*[x for x in p.parts if x != "."])


def scan_tree(root: Path, scanner: FileScanner, domain: str,
              paths: Sequence[str] = (), *, limits: Limits = Limits(),
              scan_id: str | None = None, clock: Callable[[], float] = time.time,
              progress_every: float = PROGRESS_EVERY) -> Iterator[Progress | Record]:
    """Scan the tree at `root` (or only `paths` inside it), yielding records as files are
    scanned and a Progress now and then, then the summary record and the final Progress.
    ScanPathError before anything is scanned if a path is not in the tree."""
    root_fd = os.open(root, _DIR)
    try:
        core = TreeScan(domain, limits=limits, scan_id=scan_id,
                        root_dev=os.fstat(root_fd).st_dev)
        starts = [_clean_path(p) for p in paths] or [PurePosixPath()]
        opened: list[tuple[PurePosixPath, int, os.stat_result]] = []
        try:
            for rel in starts:
                try:
                    fd, st = _open_under(root_fd, rel)
                except OSError as e:
                    raise ScanPathError(f"{rel or '/'} in {domain!r}: {e.strerror or e}"
                                       ) from None
                opened.append((rel, fd, st))
            last = clock()
            for rel, fd, st in opened:
                for item in _walk(core, scanner, rel, fd, st, len(rel.parts), clock):
                    yield item
                    now = clock()
                    if now - last >= progress_every:
                        last = now
                        yield core.progress
        finally:
            for _, fd, _ in opened:
                try:
                    os.close(fd)
                except OSError:
                    pass
    finally:
        os.close(root_fd)
    yield core.summary(clock())
    yield core.progress


def _walk(core: TreeScan, scanner: FileScanner, rel: PurePosixPath, fd: int,
          st: os.stat_result, depth: int, clock: Callable[[], float]) -> Iterator[Record]:
    """Everything under the open `fd` (a directory or a file; closed by the caller)."""
    action, _ = core.classify(st, depth)
    if action is Action.SCAN:
        yield from _scan_fd(core, scanner, str(rel), fd, st, clock)
        return
    if action is not Action.DESCEND:
        return
    stack: list[tuple[int, PurePosixPath, int, bool]] = [(fd, rel, depth, False)]
    while stack:
        dfd, drel, ddepth, owned = stack.pop()
        try:
            try:
                entries = sorted(os.scandir(dfd), key=lambda e: e.name)
            except OSError:
                core.skipped(Skip.UNREADABLE)
                continue
            subdirs = []
            for entry in entries:
                erel = drel / entry.name
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError:
                    core.skipped(Skip.VANISHED)
                    continue
                action, _ = core.classify(est, ddepth + 1)
                if action is Action.DESCEND:
                    try:
                        subdirs.append((os.open(entry.name, _DIR, dir_fd=dfd), erel))
                    except OSError:
                        core.skipped(Skip.VANISHED)
                elif action is Action.SCAN:
                    try:
                        ffd = os.open(entry.name, _FILE, dir_fd=dfd)
                    except OSError:
                        core.skipped(Skip.VANISHED)
                        continue
                    try:
                        yield from _scan_fd(core, scanner, str(erel), ffd, os.fstat(ffd),
                                            clock)
                    finally:
                        os.close(ffd)
            # reversed: the stack pops them back in name order
            stack.extend((sfd, srel, ddepth + 1, True) for sfd, srel in reversed(subdirs))
        finally:
            if owned:
                os.close(dfd)


def _scan_fd(core: TreeScan, scanner: FileScanner, path: str, fd: int, st: os.stat_result,
             clock: Callable[[], float]) -> Iterator[Record]:
    if not stat.S_ISREG(st.st_mode):
        # swapped for something else after it was listed
        core.skipped(Skip.VANISHED)
        return
    if st.st_size > core.limits.max_file:
        yield from core.too_large(path, st.st_size, clock())
        return
    try:
        data = _read(fd, core.limits.max_file)
    except OSError:
        core.skipped(Skip.UNREADABLE)
        return
    if len(data) > core.limits.max_file:     # it grew while read
        yield from core.too_large(path, len(data), clock())
        return
    result = scanner.scan(data, PurePosixPath(path).name)
    yield from core.scanned(path, len(data), hashlib.sha256(data).hexdigest(), result,
                            clock())


# --- the command sys-sec runs for dom0 ---------------------------------------------------

SCAN_LOG = "scan.json"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m domains.syssec.treescan ROOT --domain D --log-dir DIR [--clamd SOCK]
    [--yara DIR] [PATH...]`: records appended to DIR/scan.json; on stdout one JSON line
    per record (`{"record": ...}`) and per progress report (`{"progress": ...}`)."""
    import argparse
    import json
    import sys

    from domains.syssec.antivirus import YaraRulesError, scanner_from

    p = argparse.ArgumentParser(prog="python -m domains.syssec.treescan")
    p.add_argument("root", type=Path)
    p.add_argument("paths", nargs="*")
    p.add_argument("--domain", required=True)
    p.add_argument("--log-dir", type=Path, required=True)
    p.add_argument("--clamd", type=Path)
    p.add_argument("--yara", type=Path)
    p.add_argument("--scan-id")
    p.add_argument("--max-file", type=int, default=MAX_FILE)
    args = p.parse_args(argv)
    try:
        scanner = scanner_from(args.clamd, args.yara, stream_max=args.max_file)
    except (ValueError, YaraRulesError) as e:
        print(f"treescan: {e}", file=sys.stderr)
        return 2
    args.log_dir.mkdir(parents=True, exist_ok=True)
    with open(args.log_dir / SCAN_LOG, "a", encoding="utf-8") as log:
        try:
            for item in scan_tree(args.root, scanner, args.domain, args.paths,
                                  limits=Limits(max_file=args.max_file), scan_id=args.scan_id):
                if isinstance(item, Progress):
                    out = {"progress": item.as_json()}
                else:
                    # one write per line: readers follow the file as it grows
                    log.write(json.dumps(item, separators=(",", ":")) + "\n")
                    log.flush()
                    out = {"record": item}
                sys.stdout.write(json.dumps(out, separators=(",", ":")) + "\n")
                sys.stdout.flush()
        except ScanPathError as e:
            print(f"treescan: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"treescan: {args.root}: {e.strerror or e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
