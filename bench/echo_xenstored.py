"""The ceiling for a xenstored written in Python on this machine: an asyncio server that
only parses the framing and answers plausibly (no tree, no permissions, no journal).

READ answers a fixed value, DIRECTORY a fixed list, TRANSACTION_START a fresh id, WATCH
fires at once and every WRITE fires the watches on its path or above, so that every
benchmark of bench/xenstore.py runs against it unchanged.

Usage: python bench/echo_xenstored.py SOCKET
"""
from __future__ import annotations

import asyncio
import itertools
import sys

from dom0.xenstore import wire
from dom0.xenstore.wire import Op

OK = b"OK\0"
VALUE = b"v" * 16
CHILDREN = b"".join(b"c%d\0" % i for i in range(10))


class Echo(asyncio.Protocol):
    watches: dict[bytes, set[tuple[Echo, bytes]]] = {}
    tx_ids = itertools.count(1)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.decoder = wire.FrameDecoder()
        self.mine: list[tuple[bytes, bytes]] = []

    def connection_lost(self, exc: Exception | None) -> None:
        for path, token in self.mine:
            self.watches.get(path, set()).discard((self, token))

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except wire.ProtocolError:
            self.transport.close()
            return
        out = []
        for f in frames:
            out.append(wire.encode(f.op, f.req_id, f.tx_id, self.answer(f)))
        self.transport.write(b"".join(out))

    def answer(self, f: wire.Frame) -> bytes:
        if f.op == Op.READ:
            return VALUE
        if f.op == Op.DIRECTORY:
            return CHILDREN
        if f.op == Op.TRANSACTION_START:
            return b"%d\0" % next(self.tx_ids)
        if f.op == Op.WATCH:
            path, token = wire.split_args(f.payload)[:2]
            self.watches.setdefault(path, set()).add((self, token))
            self.mine.append((path, token))
            self.transport.write(wire.watch_event(path.decode(), token))
        elif f.op == Op.UNWATCH:
            path, token = wire.split_args(f.payload)[:2]
            self.watches.get(path, set()).discard((self, token))
        elif f.op == Op.WRITE and f.tx_id == 0:
            self.fire(f.payload.split(b"\0", 1)[0])
        return OK

    def fire(self, path: bytes) -> None:
        at = path
        while at:
            for conn, token in self.watches.get(at, ()):
                conn.transport.write(wire.watch_event(path.decode(), token))
            at = at.rpartition(b"/")[0]


async def main(path: str) -> None:
    server = await asyncio.get_running_loop().create_unix_server(Echo, path)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
