"""Drive the sans-IO xenstore server in memory: one helper per connection."""
from __future__ import annotations

from dom0.xenstore.wire import Frame, FrameDecoder, Op
from dom0.xenstored.server import Conn, Server


class Client:
    def __init__(self, server: Server, domid: int = 0, privileged: bool | None = None) -> None:
        self.server = server
        self.conn: Conn = server.open(domid, domid == 0 if privileged is None else privileged)
        self.events: list[tuple[str, bytes]] = []
        self._req = 0

    def raw(self, op: int, payload: bytes, tx: int = 0) -> Frame:
        self._req += 1
        self.server.handle(self.conn, Frame(op, self._req, tx, payload))
        reply = None
        for data in self.drain():
            for f in FrameDecoder().feed(data):
                if f.op == Op.WATCH_EVENT and f.req_id == 0:
                    path, token = f.payload[:-1].split(b"\0", 1)
                    self.events.append((path.decode(), token))
                else:
                    reply = f
        assert reply is not None and reply.req_id == self._req
        return reply

    def drain(self) -> list[bytes]:
        out = self.conn.out[:]
        self.conn.out.clear()
        return out

    def take_events(self) -> list[tuple[str, bytes]]:
        for data in self.drain():
            for f in FrameDecoder().feed(data):
                path, token = f.payload[:-1].split(b"\0", 1)
                self.events.append((path.decode(), token))
        ev, self.events = self.events, []
        return ev

    def ok(self, op: int, *args: str | bytes, tx: int = 0, value: bytes | None = None) -> bytes:
        f = self.raw(op, _payload(args, value), tx)
        assert f.op != Op.ERROR, f"{Op(op).name} {args}: {f.payload!r}"
        return f.payload

    def err(self, op: int, *args: str | bytes, tx: int = 0, value: bytes | None = None) -> str:
        f = self.raw(op, _payload(args, value), tx)
        assert f.op == Op.ERROR, f"{Op(op).name} {args} succeeded: {f.payload!r}"
        return f.payload[:-1].decode()

    # conveniences
    def write(self, path: str, value: bytes | str = b"", tx: int = 0) -> None:
        self.ok(Op.WRITE, path, tx=tx, value=value.encode() if isinstance(value, str) else value)

    def read(self, path: str, tx: int = 0) -> bytes:
        return self.ok(Op.READ, path, tx=tx)

    def ls(self, path: str, tx: int = 0) -> list[str]:
        return [c.decode() for c in self.ok(Op.DIRECTORY, path, tx=tx).split(b"\0") if c]

    def set_perms(self, path: str, *perms: str) -> None:
        self.ok(Op.SET_PERMS, path, *perms)

    def start(self) -> int:
        return int(self.ok(Op.TRANSACTION_START, "")[:-1])

    def end(self, tx: int, commit: bool = True) -> str | None:
        f = self.raw(Op.TRANSACTION_END, b"T\0" if commit else b"F\0", tx)
        return f.payload[:-1].decode() if f.op == Op.ERROR else None


def _payload(args: tuple[str | bytes, ...], value: bytes | None) -> bytes:
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    if value is not None:
        return b"\0".join(parts) + b"\0" + value
    return b"".join(p + b"\0" for p in parts)
