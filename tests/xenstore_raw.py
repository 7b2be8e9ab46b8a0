"""Raw xenstore frames over a socket, for tests that must send what no client would
(malformed frames, unknown operations). Everything else goes through the client layer."""
from __future__ import annotations

import socket
import struct
from pathlib import Path

from dom0.xenstore.wire import Frame, FrameDecoder, Op, encode

WATCH_EVENT = Op.WATCH_EVENT


class RawConn:
    def __init__(self, path: Path | str, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A blocking connect, bounded by SO_SNDTIMEO: a daemon busy enough that its backlog
        # is full is waited for (oxenstored was), where a connect under settimeout() fails
        # at once with EAGAIN.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                             struct.pack("ll", int(timeout), int(timeout % 1 * 1e6)))
        self.sock.connect(str(path))
        self.sock.settimeout(timeout)
        self.decoder = FrameDecoder()
        self.pending: list[Frame] = []   # received, not yet returned
        self.events: list[Frame] = []    # watch events seen while waiting for replies
        self.req_id = 0

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, op: int, payload: bytes, tx: int = 0) -> Frame:
        """Send one request and return its reply (watch events are kept in `events`)."""
        self.req_id += 1
        self.sock.sendall(encode(op, self.req_id, tx, payload))
        while True:
            f = self.next_frame()
            if f.op == WATCH_EVENT:
                self.events.append(f)
            else:
                return f

    def next_frame(self) -> Frame:
        """The next frame from the daemon; raises ConnectionError if it closed."""
        while True:
            if self.pending:
                return self.pending.pop(0)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the daemon")
            self.pending += self.decoder.feed(data)

    def is_closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self) -> None:
        self.sock.close()
