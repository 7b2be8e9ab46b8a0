"""The xenstored wire protocol (xs_wire.h), sans-IO: frames in, frames out.

A frame is a header of four u32 in host byte order — type, req_id, tx_id, len — followed by
`len` payload bytes, at most 4096. `FrameDecoder` is fed bytes as they arrive and yields
whole frames; a header announcing more than the limit is a fatal protocol error for that
connection (xenstored closes it), as is anything else that cannot be a frame.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

HEADER = struct.Struct("=IIII")
PAYLOAD_MAX = 4096


class Op(enum.IntEnum):
    """Every message type of xs_wire.h (`xsd_sockmsg_type`)."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESTRICT = 20          # removed from Xen; answered as unknown
    RESET_WATCHES = 21
    DIRECTORY_PART = 22


# The errno names xenstored sends in ERROR replies (xsd_errors).
ERRNO_NAMES = frozenset({
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
    "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
    "EQUOTA",
})


class XsError(Exception):
    """A xenstore error, named by its errno name as an ERROR reply carries it (`ENOENT`,
    `EACCES`, `EAGAIN`, `EQUOTA`...): the daemon raises it to answer one, the client raises
    it when it receives one, or for a local failure (`ECONNREFUSED`). Only the name goes on
    the wire; `path` and `detail` are for the people reading the message."""

    def __init__(self, name: str, path: str | None = None, detail: str = "") -> None:
        self.name = name
        self.path = path
        msg = name + (f" on {path}" if path else "") + (f": {detail}" if detail else "")
        super().__init__(msg)


class ProtocolError(Exception):
    """The peer sent something that cannot be a frame; the connection must be closed."""


@dataclass(slots=True)
class Frame:
    op: int            # an Op, or an unknown number as received
    req_id: int
    tx_id: int
    payload: bytes

    def encode(self) -> bytes:
        return HEADER.pack(self.op, self.req_id, self.tx_id, len(self.payload)) + self.payload


def encode(op: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    if len(payload) > PAYLOAD_MAX:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {PAYLOAD_MAX}")
    return HEADER.pack(op, req_id, tx_id, len(payload)) + payload


def error_frame(req: Frame, errno_name: str) -> bytes:
    return HEADER.pack(Op.ERROR, req.req_id, req.tx_id, len(errno_name) + 1) + \
        errno_name.encode() + b"\0"


def watch_event(path: str, token: bytes) -> bytes:
    payload = path.encode() + b"\0" + token + b"\0"
    return HEADER.pack(Op.WATCH_EVENT, 0, 0, len(payload)) + payload


class FrameDecoder:
    """Bytes in, frames out; keeps at most one partial frame (bounded by the limit)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        off = 0
        size = len(buf)
        while size - off >= 16:
            op, req_id, tx_id, length = HEADER.unpack_from(buf, off)
            if length > PAYLOAD_MAX:
                raise ProtocolError(f"frame announces {length} payload bytes, "
                                    f"more than {PAYLOAD_MAX}")
            end = off + 16 + length
            if end > size:
                break
            frames.append(Frame(op, req_id, tx_id, bytes(buf[off + 16:end])))
            off = end
        if off:
            del buf[:off]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)


def split_args(payload: bytes) -> list[bytes]:
    """NUL-separated arguments; a trailing NUL ends the last one, as xenstored parses them."""
    if payload.endswith(b"\0"):
        payload = payload[:-1]
    return payload.split(b"\0") if payload else []
