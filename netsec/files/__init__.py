"""Files in flight (pure): the files HTTP bodies carry, one per body, tracked per flow.

A parser opens a file when a body starts (`FileTracker.open`: its transaction, direction,
the name from Content-Disposition or else the URI's last path segment, the body's
Content-Encoding and Content-Range), hands it the body's bytes as they arrive, already
dechunked (`feed`), and closes it when the body ends (`close`) or the flow ends first
(`finish`: TRUNCATED). Several files on one connection (keep-alive, pipelining) are
several transactions, each its own file.

gzip/deflate bodies are decompressed here as a stream, bounded: the file keeps at most
`max_size` bytes; a body decoding past it (a zip bomb, or merely a large download) becomes
a TRUNCATED file at the cap, and the rest is never decompressed. A body that does not
decompress is an ERROR file (its hashes are those of what did). Hashes (md5, sha1,
sha256) are incremental; the data is kept too (bounded by `max_size`) when a scanner is to
be handed the complete file (`keep_data`), else only its head, for libmagic. A
Content-Range body is a partial file: its `range` says which part, and `gaps` is true
since the file is not whole.

States are Suricata's: OPEN while bytes arrive, CLOSED when the body ended whole,
TRUNCATED when it ended early or past the cap, ERROR when it could not be decoded.
"""
from __future__ import annotations

import enum
import hashlib
import re
import urllib.parse
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_FILE_SIZE = 64 * 1024 * 1024   # bytes a file keeps by default (a flow's memory bound)
_MAGIC_BYTES = 4096                 # libmagic looks at a file's head only
_CONTENT_RANGE = re.compile(rb"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.I)
_DISPOSITION_EXT = re.compile(rb"filename\*\s*=\s*([^']*)'[^']*'([^;\s]+)", re.I)
_DISPOSITION = re.compile(rb'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.I)


# The buffer every file inspection carries (the file's name, Suricata's `file.name`); a
# rule with a file keyword inspects it, which is how the engine knows rules use files.
FILE_NAME = "file.name"
# A file TRUNCATED at max_size says so in its `error` (a scanner never saw its rest).
CAPPED = "file size cap reached"


def rules_use_files(rules: Iterable[Any]) -> bool:
    """Whether a rule of `rules` matches on files (a file keyword: netsec.rules.keywords.files)."""
    return any(FILE_NAME in getattr(r, "buffers", ()) for r in rules)


class FileState(enum.Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    TRUNCATED = "TRUNCATED"
    ERROR = "ERROR"


@dataclass(frozen=True)
class ContentRange:
    start: int
    end: int             # inclusive, as the header says it
    total: int | None    # None for "*"


def content_range(value: bytes) -> ContentRange | None:
    """A Content-Range header's value; None when absent or malformed."""
    m = _CONTENT_RANGE.search(value)
    if m is None or int(m[2]) < int(m[1]):
        return None
    return ContentRange(int(m[1]), int(m[2]), None if m[3] == b"*" else int(m[3]))


def body_length(headers: dict[bytes, bytes]) -> int | None:
    """The length a body says it has (headers by lower-case name): Content-Length, unless
    the body is chunked (which ends with its last chunk instead); None when it says none."""
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        return None
    value = headers.get(b"content-length", b"").strip()
    return int(value) if value.isdigit() else None


def file_name(disposition: bytes, uri: bytes) -> str:
    """A file's name, as Suricata gives it: Content-Disposition's filename (RFC 6266's
    `filename*` first), else the URI's path (query dropped) — the last segment, decoded."""
    m = _DISPOSITION_EXT.search(disposition)
    if m:
        charset = m[1].decode("ascii", "replace") or "utf-8"
        try:
            return urllib.parse.unquote_to_bytes(m[2]).decode(charset, "replace")
        except LookupError:
            return urllib.parse.unquote_to_bytes(m[2]).decode("utf-8", "replace")
    m = _DISPOSITION.search(disposition)
    if m:
        raw = m[1] if m[1] is not None else m[2]
        return re.sub(rb"\\(.)", rb"\1", raw).decode("utf-8", "replace")
    path = uri.split(b"?", 1)[0].split(b"#", 1)[0]
    if b"://" in path:   # absolute form: drop scheme and authority
        path = b"/" + path.split(b"://", 1)[1].partition(b"/")[2]
    return urllib.parse.unquote_to_bytes(path.rsplit(b"/", 1)[-1]).decode("utf-8", "replace")


def magic_of(head: bytes) -> str:
    """libmagic's description of a file's first bytes (`file`'s wording, as Suricata's)."""
    if not head:
        return "empty"
    # python-magic: libmagic, loaded on first use only
    import magic
    return str(magic.from_buffer(head))


@dataclass(eq=False)
class File:
    """One file: its metadata, incremental hashes and (bounded) data."""
    file_id: int
    tx_id: int
    to_server: bool
    name: str
    range: ContentRange | None = None
    length: int | None = None   # the body's declared length (on the wire), when it has one
    wire: int = 0               # body bytes received (before decompression)
    state: FileState = FileState.OPEN
    size: int = 0
    error: str = ""
    stored: bool = False
    data: bytearray = field(default_factory=bytearray)
    _md5: Any = field(default_factory=hashlib.md5, repr=False)
    _sha1: Any = field(default_factory=hashlib.sha1, repr=False)
    _sha256: Any = field(default_factory=hashlib.sha256, repr=False)
    _decoder: Any = field(default=None, repr=False)
    _zhead: bytes | None = field(default=None, repr=False)
    _magic: str | None = field(default=None, repr=False)

    @property
    def gaps(self) -> bool:
        return self.range is not None or self.state == FileState.TRUNCATED

    @property
    def md5(self) -> str:
        return str(self._md5.hexdigest())

    @property
    def sha1(self) -> str:
        return str(self._sha1.hexdigest())

    @property
    def sha256(self) -> str:
        return str(self._sha256.hexdigest())

    @property
    def magic(self) -> str:
        if self._magic is None:
            self._magic = magic_of(bytes(self.data[:_MAGIC_BYTES]))
        return self._magic

    @property
    def ext(self) -> str:
        """The name's extension, without the dot, lowercase ("" when none)."""
        base = self.name.rsplit("/", 1)[-1]
        return base.rsplit(".", 1)[1].lower() if "." in base.strip(".") else ""

    def eve(self) -> dict[str, Any]:
        """Suricata's EVE `fileinfo` object."""
        rec: dict[str, Any] = {"filename": self.name, "gaps": self.gaps,
                               "state": self.state.value, "stored": self.stored,
                               "size": self.size, "tx_id": self.tx_id}
        if self.state != FileState.OPEN:
            rec.update(md5=self.md5, sha1=self.sha1, sha256=self.sha256, magic=self.magic)
        if self.range is not None:
            rec["start"], rec["end"] = self.range.start, self.range.end
        return rec

    def _append(self, data: bytes, cap: int, keep: bool) -> bool:
        """Take decoded bytes, up to `cap` in all; False once the cap was reached."""
        room = cap - self.size
        over = len(data) > room
        data = data[:room]
        self._md5.update(data)
        self._sha1.update(data)
        self._sha256.update(data)
        if keep:
            self.data += data
        elif self.size < _MAGIC_BYTES:
            self.data += data[:_MAGIC_BYTES - self.size]
        self.size += len(data)
        return not over


class FileTracker:
    """The files of one flow. `completed` collects files as they leave OPEN, in order, for
    the caller (EVE fileinfo, the scanner) to take and empty."""

    def __init__(self, max_size: int = MAX_FILE_SIZE, keep_data: bool = True) -> None:
        self.max_size = max_size
        self.keep_data = keep_data   # the whole file (a scanner's), or its head only
        self.open_files: dict[tuple[int, bool], File] = {}
        self.completed: list[File] = []
        self._next_id = 0

    def open(self, tx_id: int, to_server: bool, name: str, encoding: bytes = b"",
             range_: ContentRange | None = None, length: int | None = None) -> File:
        prior = self.open_files.pop((tx_id, to_server), None)
        if prior is not None:
            self._end(prior, FileState.TRUNCATED)
        f = File(self._next_id, tx_id, to_server, name, range_, length)
        self._next_id += 1
        if encoding.strip().lower() in (b"gzip", b"x-gzip", b"deflate"):
            f._decoder = zlib.decompressobj(47)   # 47: a gzip or a zlib header
            f._zhead = b""
        self.open_files[(tx_id, to_server)] = f
        return f

    def feed(self, tx_id: int, to_server: bool, data: bytes) -> None:
        f = self.open_files.get((tx_id, to_server))
        if f is None or not data:
            return
        f.wire += len(data)
        if f._decoder is not None:
            decoded = self._inflate(f, data)
            if decoded is None:
                return
            data = decoded
        if not f._append(data, self.max_size, self.keep_data):
            self._end(f, FileState.TRUNCATED, CAPPED)

    def close(self, tx_id: int, to_server: bool) -> None:
        """The parser says the body ended. Short of its declared length it did not end
        whole: libhtp completes a transaction when the connection closes mid-body."""
        f = self.open_files.get((tx_id, to_server))
        if f is None:
            return
        if f.length is not None and f.wire < f.length:
            self._end(f, FileState.TRUNCATED, f"body ended at {f.wire} of its {f.length} bytes")
        else:
            self._end(f, FileState.CLOSED)

    def finish(self) -> None:
        """The flow ended: files still open are TRUNCATED."""
        for f in list(self.open_files.values()):
            self._end(f, FileState.TRUNCATED, "flow ended before the body did")

    def take(self) -> list[File]:
        done, self.completed = self.completed, []
        return done

    def _inflate(self, f: File, data: bytes) -> bytes | None:
        """`data` decompressed, at most one byte past the room left (the rest is never
        decompressed: a bomb costs the cap). Deflate without its zlib header is retried as
        raw deflate, as libhtp does; undecodable bytes end the file in ERROR."""
        room = self.max_size - f.size + 1
        try:
            out = bytes(f._decoder.decompress(data, room))
        except zlib.error as e:
            retry = f._zhead
            f._decoder = f._zhead = None
            if retry is not None:
                decoder = zlib.decompressobj(-15)
                try:
                    out = bytes(decoder.decompress(retry + data, room))
                    f._decoder = decoder
                    return out
                except zlib.error:
                    pass
            self._end(f, FileState.ERROR, f"body does not decompress: {e}")
            return None
        if f._zhead is not None:
            f._zhead = None if out or len(f._zhead) > 1024 else f._zhead + data
        return out

    def _end(self, f: File, state: FileState, error: str = "") -> None:
        if self.open_files.get((f.tx_id, f.to_server)) is f:
            del self.open_files[(f.tx_id, f.to_server)]
        f.state = state
        f.error = error
        f._decoder = f._zhead = None
        self.completed.append(f)
