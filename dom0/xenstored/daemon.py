"""`hyperwall-xenstored`: the xenstore daemon for hosts without Xen (the asyncio shell).

One privileged socket (`RUNDIR/socket`) for dom0's tools, and one socket per introduced
domain (`RUNDIR/domain/<domid>/socket`) on which every request acts as that domain — the
only xenstore socket that domain can see. Requests are answered by the sans-IO core in
`server`; this module moves bytes, writes the journal before any reply leaves, and turns
the core's Listen/Unlisten commands into sockets.

One daemon per state dir and per run dir: each is locked (`lock`, flock'd for the
daemon's life, holding its pid) before the journal is read or a socket is bound, so a
second instance stops at once instead of appending to the same journal or unlinking the
first one's socket.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from dom0.xenstore import wire
from dom0.xenstored.journal import Journal
from dom0.xenstored.server import Conn, Listen, Quotas, Server, Unlisten
from domains.logsetup import setup_logging

log = logging.getLogger("hyperwall.xenstored")

# A connection whose peer stops reading is cut off once this much output waits for it,
# rather than letting its watch events grow the daemon without bound.
OUTPUT_LIMIT = 8 << 20
PAUSE_ABOVE = 1 << 20
LOCK_NAME = "lock"


class DirInUse(Exception):
    """Another hyperwall-xenstored holds the lock of a state dir or run dir."""


def lock_dir(path: Path, what: str) -> int:
    """Take `path`/lock for this process's life and write our pid into it; the returned fd
    is the lock (flock goes with the process, so a killed daemon leaves nothing held).

    The file stays after a stop: unlinking it would let a starter lock a file a waiter no
    longer sees."""
    path.mkdir(parents=True, exist_ok=True)
    lock = path / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        raise DirInUse(f"{what} {path} is in use by hyperwall-xenstored pid "
                       f"{holder or '(unknown: still starting)'} (it holds {lock}); "
                       "stop that one first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Daemon:
    def __init__(self, rundir: Path, journal: Journal, server: Server) -> None:
        self.rundir = rundir
        self.journal = journal
        self.server = server
        self.transports: dict[int, XsProtocol] = {}
        self.listeners: dict[int, asyncio.AbstractServer] = {}
        self._sync_handle: asyncio.TimerHandle | None = None

    def socket_path(self, domid: int | None) -> Path:
        return self.rundir / "socket" if domid is None else \
            self.rundir / "domain" / str(domid) / "socket"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        path = self.socket_path(None)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self.privileged = await loop.create_unix_server(
            lambda: XsProtocol(self, 0, True), str(path))
        os.chmod(path, 0o600)
        for domid in sorted(self.server.domains):
            await self._serve(domid, self._bind(domid))
        log.info("listening on %s (%d domains)", path, len(self.server.domains))

    async def _serve(self, domid: int, sock: socket.socket) -> None:
        server = await asyncio.get_running_loop().create_unix_server(
            lambda: XsProtocol(self, domid, False), sock=sock)
        if domid in self.server.domains:
            self.listeners[domid] = server
        else:   # released while the server was being set up
            server.close()

    def _bind(self, domid: int) -> socket.socket:
        """Bind and listen at once, so the socket accepts connections by the time the
        INTRODUCE that asked for it is acknowledged."""
        path = self.socket_path(domid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
        return sock

    def unlisten(self, domid: int, released: bool = True) -> None:
        """Close a domain's socket. Only a release removes its directory: across a
        restart the directory stays, because a domain's namespace has it bind-mounted
        and would not see a new directory made in its place."""
        listener = self.listeners.pop(domid, None)
        if listener is not None:
            listener.close()
        path = self.socket_path(domid)
        path.unlink(missing_ok=True)
        if released:
            with contextlib.suppress(OSError):
                path.parent.rmdir()

    def after_requests(self) -> None:
        """Journal first, then the sockets the requests asked for, then every reply and
        event the requests produced."""
        self.journal.flush()
        loop = asyncio.get_running_loop()
        if self.journal.unsynced and self._sync_handle is None:
            self._sync_handle = loop.call_later(self.journal.sync_interval, self._sync)
        commands, self.server.commands = self.server.commands, []
        for cmd in commands:
            if isinstance(cmd, Listen):
                try:
                    sock = self._bind(cmd.domid)
                except OSError as e:
                    log.error("cannot listen for domain %d: %s", cmd.domid, e)
                    continue
                loop.create_task(self._serve(cmd.domid, sock))
            elif isinstance(cmd, Unlisten):
                self.unlisten(cmd.domid)
        server = self.server
        for cid in server.dropped:
            proto = self.transports.get(cid)
            if proto is not None:
                proto.abort()
        server.dropped.clear()
        for conn in server.outgoing.values():
            data = b"".join(conn.out)
            conn.out.clear()
            proto = self.transports.get(conn.id)
            if proto is not None:
                proto.send(data)
        server.outgoing.clear()

    def _sync(self) -> None:
        self._sync_handle = None
        self.journal.sync()

    def stop(self) -> None:
        self.privileged.close()
        for domid in list(self.listeners):
            self.unlisten(domid, released=False)
        for proto in list(self.transports.values()):
            proto.abort()
        self.journal.close()
        self.socket_path(None).unlink(missing_ok=True)


class XsProtocol(asyncio.Protocol):
    def __init__(self, daemon: Daemon, domid: int, privileged: bool) -> None:
        self.daemon = daemon
        self.domid = domid
        self.privileged = privileged
        self.decoder = wire.FrameDecoder()
        self.conn: Conn | None = None
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)   # a stream socket's
        self.transport = transport
        self.conn = self.daemon.server.open(self.domid, self.privileged)
        self.daemon.transports[self.conn.id] = self

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.id not in self.daemon.server.conns:
            return
        try:
            frames = self.decoder.feed(data)
        except wire.ProtocolError as e:
            log.warning("closing connection %d (domain %d): %s", conn.id, self.domid, e)
            self.abort()
            return
        handle = self.daemon.server.handle
        for frame in frames:
            handle(conn, frame)
        self.daemon.after_requests()

    def send(self, data: bytes) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(data)
        size = t.get_write_buffer_size()
        if size > OUTPUT_LIMIT:
            log.warning("connection %d (domain %d) does not read its replies; closing it",
                        self.conn.id if self.conn else -1, self.domid)
            self.abort()
        elif size > PAUSE_ABOVE and not self.paused:
            # Stop taking requests from a peer that does not read the answers.
            self.paused = True
            t.pause_reading()

    def resume_writing(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.daemon.transports.pop(self.conn.id, None)
            if self.conn.id in self.daemon.server.conns:
                self.daemon.server.close(self.conn)
            self.conn = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    q = Quotas()
    p = argparse.ArgumentParser(prog="hyperwall-xenstored",
                                description="xenstore daemon for hosts without Xen")
    p.add_argument("--rundir", type=Path, default=Path("/var/run/xenstored"),
                   help="where the privileged socket and domain sockets live")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/hyperwall/xenstore"),
                   help="where the tree is kept on disk")
    p.add_argument("--quota-nodes", type=int, default=q.nodes, help="nodes owned per domain")
    p.add_argument("--quota-value-size", type=int, default=q.value_size, help="bytes per value")
    p.add_argument("--quota-watches", type=int, default=q.watches, help="watches per connection")
    p.add_argument("--quota-transactions", type=int, default=q.transactions,
                   help="open transactions per connection")
    p.add_argument("--quota-outstanding", type=int, default=q.outstanding,
                   help="requests in flight per connection")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (env HYPERWALL_LOG)")
    return p.parse_args(argv)


def lock_dirs(args: argparse.Namespace) -> list[int]:
    """Both locks, before anything of either dir is touched."""
    held = [lock_dir(args.state_dir, "state dir")]
    try:
        held.append(lock_dir(args.rundir, "run dir"))
    except BaseException:
        os.close(held[0])
        raise
    return held


async def run(args: argparse.Namespace) -> None:
    quotas = Quotas(args.quota_nodes, args.quota_value_size, args.quota_watches,
                    args.quota_transactions, args.quota_outstanding)
    server = Server(quotas)
    journal = Journal(args.state_dir)
    replayed = journal.load(server)
    journal.attach(server)
    log.info("state from %s: %d records, %d domains", args.state_dir, replayed,
             len(server.domains))
    daemon = Daemon(args.rundir, journal, server)
    await daemon.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    daemon.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging("hyperwall-xenstored", args.log_level)
    try:
        locks = lock_dirs(args)
    except DirInUse as e:
        sys.exit(f"hyperwall-xenstored: {e}")
    try:
        asyncio.run(run(args))
    finally:
        for fd in locks:
            os.close(fd)


if __name__ == "__main__":
    main()
