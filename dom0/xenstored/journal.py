"""Durability for the xenstore tree: a snapshot plus a journal of changes since it.

Every change to the live tree (and to the domain table) becomes a record appended to
`journal` with `os.write` before the daemon sends the reply that acknowledges it, so an
acknowledged write survives the daemon being killed: it is in the kernel's page cache.
The journal is fsync'd at most `sync_interval` seconds after a change, and whenever a
snapshot is taken, so a power loss loses at most that window. When the journal grows past
`compact_bytes`, the whole tree is written to `snapshot.tmp`, fsync'd, renamed over
`snapshot`, and the journal restarts empty.

A record is `u32 length, u32 crc32, body`. Loading replays the snapshot, then the journal,
and stops at the first record that is torn or fails its checksum (a crash mid-write),
truncating the journal there.
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from dom0.xenstore import perms as P
from dom0.xenstored.server import DomainRecord, Server
from dom0.xenstored.tree import Tree

_REC = struct.Struct("<II")


def _record(body: bytes) -> bytes:
    return _REC.pack(len(body), zlib.crc32(body)) + body


def put_body(path: str, value: bytes, perms: P.Perms) -> bytes:
    return b"P" + path.encode() + b"\0" + P.format_perms(perms) + b"\0" + value


def meta_body(server: Server) -> bytes:
    meta = {
        "domains": [[d.domid, d.gfn, d.evtchn, d.target] for d in server.domains.values()],
        "special": {k: [list(e) for e in v] for k, v in server.special_perms.items()},
    }
    return b"M" + json.dumps(meta, separators=(",", ":")).encode()


def _records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(end offset, body) for each intact record."""
    off = 0
    while off + _REC.size <= len(data):
        length, crc = _REC.unpack_from(data, off)
        end = off + _REC.size + length
        if end > len(data):
            return
        body = data[off + _REC.size:end]
        if zlib.crc32(body) != crc:
            return
        yield end, body
        off = end


def _put(body: bytes) -> tuple[str, P.Perms, bytes]:
    path_end = body.index(b"\0", 1)
    perms_end = body.index(b"\0\0", path_end + 1) + 1
    perms = P.parse(body[path_end + 1:perms_end].split(b"\0")[:-1]) \
        if perms_end > path_end + 1 else P.DOM0_ONLY
    return body[1:path_end].decode(), perms, body[perms_end + 1:]


def changes(data: bytes) -> Iterator[tuple[str, bytes | None]]:
    """(path, value) of each node change a journal's `data` records, in order: None for a
    removal. What a test reads to see the order in which a daemon's clients changed nodes."""
    for _, body in _records(data):
        if body[:1] == b"P":
            path, _, value = _put(body)
            yield path, value
        elif body[:1] == b"D":
            yield body[1:].decode(), None


def _apply(tree: Tree, server: Server, body: bytes) -> None:
    kind = body[:1]
    if kind == b"P":
        path, perms, value = _put(body)
        if path == "/":
            tree.root.value, tree.root.perms = value, perms
        else:
            tree.put(path, value, perms)
    elif kind == b"D":
        path = body[1:].decode()
        if tree.node(path) is not None:
            tree.delete(path)
    elif kind == b"M":
        meta = json.loads(body[1:])
        server.domains = {d[0]: DomainRecord(d[0], d[1], d[2], d[3]) for d in meta["domains"]}
        server.special_perms = {k: tuple((e[0], e[1]) for e in v)
                                for k, v in meta["special"].items()}
    else:
        raise ValueError(f"unknown journal record {kind!r}")


class Journal:
    def __init__(self, state_dir: Path, compact_bytes: int = 32 << 20,
                 sync_interval: float = 1.0) -> None:
        self.dir = state_dir
        self.compact_bytes = compact_bytes
        self.sync_interval = sync_interval
        self.snapshot_path = state_dir / "snapshot"
        self.journal_path = state_dir / "journal"
        self.pending: list[bytes] = []
        self.size = 0
        self.unsynced = False
        self.fd = -1

    def load(self, server: Server) -> int:
        """Rebuild the tree and domain table; returns how many records were replayed."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tree = server.tree
        count = 0
        for source in (self.snapshot_path, self.journal_path):
            if not source.exists():
                continue
            data = source.read_bytes()
            good = 0
            for end, body in _records(data):
                _apply(tree, server, body)
                good = end
                count += 1
            if source == self.journal_path and good < len(data):
                # A torn tail: the daemon died mid-append. Keep what was whole.
                with open(source, "r+b") as f:
                    f.truncate(good)
        tree.recount()
        self.fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self.fd).st_size
        return count

    def attach(self, server: Server) -> None:
        """Record every later change of `server`."""
        def on_change(path: str, change: tuple) -> None:
            if change[0] == "put":
                self.pending.append(_record(put_body(path, change[1], change[2])))
            else:
                self.pending.append(_record(b"D" + path.encode()))

        def on_meta() -> None:
            self.pending.append(_record(meta_body(server)))

        server.tree.on_change = on_change
        server.on_domains_changed = on_meta
        self._server = server

    def flush(self) -> None:
        """Write what is pending to the kernel; call before sending acknowledgements."""
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.size += len(data)
        self.unsynced = True
        if self.size > self.compact_bytes:
            self.compact()

    def sync(self) -> None:
        if self.unsynced:
            os.fsync(self.fd)
            self.unsynced = False

    def compact(self) -> None:
        """Write the whole state as the new snapshot and start an empty journal."""
        server = self._server
        tmp = self.dir / "snapshot.tmp"
        with open(tmp, "wb") as f:
            for path, node in server.tree.walk():
                f.write(_record(put_body(path, node.value, node.perms)))
            f.write(_record(meta_body(server)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.snapshot_path)
        os.close(self.fd)
        self.fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                          0o600)
        dirfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        self.size = 0
        self.unsynced = False

    def close(self) -> None:
        if self.fd >= 0:
            self.flush()
            self.compact()
            os.close(self.fd)
            self.fd = -1
