"""dom0's quarantine: infected files moved out of a domain's tree into a store only root
reads, each with its hash, where it came from and what was found in it.

The store is a 0700 folder owned by root: the files themselves (0600, named by entry id,
never overwritten) and `index.jsonl`, one JSON line per entry, appended and synced before
the source is removed, so a crash leaves a file either still in the domain or in the
store with its line, never lost.

A file is moved by copying it through a descriptor opened without following links and
then unlinking the source only if the path still names the inode that was copied: the
domain may be running while its file is taken, and a link or a swapped file it plants
must not make dom0 read or delete anything else. The copy (not a rename) is also what
works across filesystems (a domain's layer and dom0's state dir need not share one).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from netsec.filescan import Finding

INDEX = "index.jsonl"
CHUNK = 1 << 20


class QuarantineError(Exception):
    """The store cannot be used, or a file cannot be taken into it: says which and why."""


@dataclass(frozen=True)
class Entry:
    id: str
    domain: str
    origin: str             # the file's path inside the domain's tree
    sha256: str
    size: int
    findings: tuple[Finding, ...]
    time: float

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["findings"] = [asdict(f) for f in self.findings]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Entry:
        return cls(id=str(d["id"]), domain=str(d["domain"]), origin=str(d["origin"]),
                   sha256=str(d["sha256"]), size=int(d["size"]),
                   findings=tuple(Finding(str(f["scanner"]), str(f["signature"]))
                                  for f in d["findings"]),
                   time=float(d["time"]))


class Quarantine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._ensure()

    def _ensure(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.lstat(self.root)
        except OSError as e:
            raise QuarantineError(f"quarantine {self.root}: cannot create: {e}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise QuarantineError(f"quarantine {self.root}: not a folder")
        if st.st_uid != os.geteuid():
            # someone else's folder could be read (or replaced) by them
            raise QuarantineError(f"quarantine {self.root}: owned by uid {st.st_uid}, "
                                  f"not {os.geteuid()}")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(self.root, 0o700)

    @property
    def index_path(self) -> Path:
        return self.root / INDEX

    def entries(self) -> list[Entry]:
        try:
            lines = self.index_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.append(Entry.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as e:
                raise QuarantineError(f"{self.index_path}:{n}: not an entry: {e}") from None
        return out

    def path_of(self, entry: Entry) -> Path:
        return self.root / entry.id

    def put(self, source: Path, *, domain: str, origin: str,
            findings: Sequence[Finding]) -> Entry:
        """Move `source` (a regular file, not a link) into the store; the entry says
        what it was. QuarantineError, with the source left in place, if it cannot be."""
        try:
            src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise QuarantineError(f"cannot quarantine {origin} of {domain!r}: "
                                  f"{e.strerror or e}") from None
        try:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode):
                raise QuarantineError(f"cannot quarantine {origin} of {domain!r}: "
                                      "not a regular file")
            entry_id = uuid.uuid4().hex
            dest = self.root / entry_id
            digest, size = self._copy(src, dest)
        finally:
            os.close(src)
        entry = Entry(entry_id, domain, origin, digest, size, tuple(findings), time.time())
        self._append(entry)
        self._unlink_if_same(source, st)
        return entry

    def _copy(self, src: int, dest: Path) -> tuple[str, int]:
        # O_EXCL: an entry is never overwritten, even by a colliding id
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        h = hashlib.sha256()
        size = 0
        try:
            while chunk := os.read(src, CHUNK):
                h.update(chunk)
                size += len(chunk)
                os.write(out, chunk)
            os.fsync(out)
        except BaseException:
            os.close(out)
            dest.unlink(missing_ok=True)
            raise
        os.close(out)
        return h.hexdigest(), size

    def _append(self, entry: Entry) -> None:
        line = json.dumps(entry.to_json(), sort_keys=True) + "\n"
        fd = os.open(self.index_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _unlink_if_same(source: Path, copied: os.stat_result) -> None:
        try:
            now = os.lstat(source)
        except FileNotFoundError:
            return
        if (now.st_dev, now.st_ino) == (copied.st_dev, copied.st_ino):
            source.unlink()
        else:
            # the domain swapped the path after the copy: what is there now was not scanned,
            # and deleting it would delete something nobody reported
            raise QuarantineError(f"{source}: replaced while being quarantined; the copy is "
                                  "kept, the new file left in place")

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())
