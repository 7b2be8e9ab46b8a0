"""The project's one xenstore client layer, over pyxs.

`XenStore` is the blocking client (tools, tests); `AsyncXenStore` runs it for asyncio
programs (dom0d, the agents) and delivers watch events into the event loop.

Where to connect, chosen automatically: `$XENSTORED_PATH`; else `$XENSTORED_RUNDIR/socket`
(default `/var/run/xenstored/socket`) when that socket exists; else, on a Xen host, the
xenbus device. pyxs 0.4.1 is extended here, in one place:
- its operation table stops at SET_TARGET and numbers RESTRICT 128; it is given the codec's
  (`wire.Op`, xs_wire.h's numbers, with RESET_WATCHES and DIRECTORY_PART);
- it turns an ERROR reply's errno name into a number and back, which loses the names that
  have none (oxenstored's EQUOTA became a local EINVAL); the name is kept here;
- it decides whether it may send privileged operations by reading /proc/xen/capabilities,
  which only exists on Xen; here the privilege is the socket's, so we let the daemon judge;
- it strips every trailing NUL from replies, which corrupts values ending in NUL; READ
  replies are returned whole;
- it refuses watches (a `Monitor`) over the xenbus device, after a 2016 kernel bug in the
  device's replies to WATCH; Linux fixed that long ago (a guest's agent on Xen watches
  through /dev/xen/xenbus), so monitors are allowed on both transports;
- its request ids come from `_rq_id += 1` on a global, which two threads can read at once:
  two requests with one id, and the caller whose reply went to the other waits for ever
  (seen in Xen guests, whose agents call from several threads). Ids here come from an
  `itertools.count`, whose `next` the GIL makes atomic;
- it keeps several requests in flight on one connection, matched to their replies by id.
  Over a Xen guest's xenbus device, under load, a reply was seen given to another request
  (a read of one vif's `frontend` answered with another's, and EINVAL replies to requests
  on well-formed paths), so there one request is in flight at a time per connection (each
  watch has its own);
- its `Monitor.wait` climbs an event's path towards a watched one with `dirname`, which
  never leaves `/` for an absolute path: an event still in flight when its watch is
  removed spins that thread for ever (sys-sec's agent was seen with one at half a core and
  200 more parked, one per device it had served). Watch events are taken from the
  monitor's queue here (the router gives it only its own token's), and a closed
  connection ends every watch on it.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyxs
import pyxs._internal as pyxs_internal
import pyxs.client as pyxs_client
from pyxs.connection import UnixSocketConnection, XenBusConnection
from pyxs.exceptions import PyXSError

from dom0.xenstore import perms as P
from dom0.xenstore.wire import Op
from dom0.xenstore.wire import XsError as XsError  # the client's callers catch it from here

log = logging.getLogger("hyperwall.xenstore.client")

NUL = b"\0"
XENBUS_PATHS = ("/dev/xen/xenbus", "/proc/xen/xenbus")
# write_if_exists transactions one connection keeps open at once: with write_nodes' one,
# well under xenstored's (and Xen's) quota of 10 per connection.
WRITES_IF_EXIST_AT_ONCE = 4

# pyxs.Packet refuses an op that is not `in` its module-level table, looked up at call
# time. The table is a set of numbers, not the enum: in Python 3.11, `int in IntEnum` raises.
pyxs_internal.Op = pyxs_internal.Operations = frozenset(Op)


class NoXenStore(XsError):
    def __init__(self, tried: list[str]) -> None:
        super().__init__("ENOENT", detail="no xenstore to connect to (tried: "
                         + ", ".join(tried) + "); is hyperwall-xenstored running?")


@dataclass(frozen=True)
class Perm:
    domid: int
    access: str        # n, r, w or b

    def __str__(self) -> str:
        return f"{self.access}{self.domid}"


def locate() -> tuple[str, str]:
    """("unix", socket path) or ("xenbus", device path), or NoXenStore."""
    tried = []
    explicit = os.environ.get("XENSTORED_PATH")
    if explicit:
        return ("unix", explicit)
    sock = os.path.join(os.environ.get("XENSTORED_RUNDIR", "/var/run/xenstored"), "socket")
    tried.append(sock)
    if os.path.exists(sock):
        return ("unix", sock)
    for dev in XENBUS_PATHS:
        tried.append(dev)
        if os.path.exists(dev):
            return ("xenbus", dev)
    raise NoXenStore(tried)


_ERRNO_NUMBERS = {name: number for number, name in errno.errorcode.items()}


class _ErrorReply(PyXSError):  # type: ignore[misc]  # pyxs has no types: a subclass of Any
    """An ERROR reply, shaped as pyxs expects (errno number first: its commit looks for
    EAGAIN), carrying the name the daemon sent."""

    def __init__(self, name: str) -> None:
        super().__init__(_ERRNO_NUMBERS.get(name, 0), name)
        self.name = name


def _wrap(e: PyXSError, path: str | None) -> XsError:
    if isinstance(e, _ErrorReply):
        return XsError(e.name, path)
    code = e.args[0] if e.args and isinstance(e.args[0], int) else None
    if code is not None and code in errno.errorcode:
        return XsError(errno.errorcode[code], path)
    # pyxs refused the request itself (e.g. a payload over 4096 bytes): its message may
    # carry the whole payload, so only its kind is kept.
    return XsError("EINVAL", path, f"refused by the client: {type(e).__name__}")


class _Router(pyxs.Router):  # type: ignore[misc]  # pyxs has no types: a subclass of Any
    """pyxs's router, but a request never waits for a connection that is gone.

    pyxs's router thread ends when the daemon closes the connection or the client closes
    it, leaving every caller still waiting for a reply blocked for ever. Here they get
    EIO, and later requests fail at once."""

    dead = False
    # Over the xenbus device, one request at a time (see `_PyxsClient.execute_command`).
    one_at_a_time: threading.Lock | None = None

    def __call__(self) -> None:
        try:
            super().__call__()
        finally:
            with self.send_lock:
                self.dead = True
                pending = list(self.rvars.values())
                self.rvars: dict[int, Any] = {}
            for rvar in pending:
                rvar.set(pyxs_internal.Packet(Op.ERROR, b"EIO\0", 0, 0))
            for monitors in list(self.monitors.values()):
                for monitor in list(monitors):
                    monitor.events.put(_CLOSED)

    def send(self, packet: Any) -> Any:
        with self.send_lock:
            if self.dead:
                raise PyXSError(errno.EIO, "the xenstore connection is closed")
            self.rvars[packet.rq_id] = rvar = pyxs_client.RVar()
            self.connection.send(packet)
            return rvar


_RQ_IDS = itertools.count(1)
# What a watch's pump finds in its queue once the connection under it is gone.
_CLOSED = pyxs_internal.Event(b"", b"closed")
# What wakes a pump whose watch is being removed.
_STOP = pyxs_internal.Event(b"", b"stop")


class _PyxsClient(pyxs.Client):  # type: ignore[misc]  # pyxs has no types, as above
    SU = True   # the daemon checks privilege by socket; see the module docstring

    def execute_command(self, op: int, *args: bytes, **kwargs: Any) -> bytes:
        kwargs.update(tx_id=self.tx_id, rq_id=next(_RQ_IDS) & 0xFFFFFFFF)
        request = pyxs_internal.Packet(op, b"".join(args), **kwargs)
        serial = self.router.one_at_a_time
        if serial is None:
            packet = self.router.send(request).get()
        else:
            with serial:
                packet = self.router.send(request).get()
        if packet.op == Op.ERROR:
            raise _ErrorReply(packet.payload[:-1].decode("ascii", "replace"))
        if packet.op != op or packet.tx_id != self.tx_id:
            raise pyxs_client.UnexpectedPacket(packet)
        payload: bytes = packet.payload
        if op == Op.READ:
            return payload
        return payload[:-1] if payload.endswith(NUL) else payload

    def monitor(self) -> Any:
        return pyxs_client.Monitor(copy.copy(self))


def _b(s: str | bytes) -> bytes:
    return s.encode() if isinstance(s, str) else s


T = TypeVar("T")


class XenStore:
    """A blocking xenstore client. Paths are absolute, or relative to the caller's domain."""

    def __init__(self, where: tuple[str, str] | None = None, *,
                 _client: _PyxsClient | None = None) -> None:
        self._c: _PyxsClient
        if _client is not None:
            self._c = _client
            self.where = where
            return
        self.where = where or locate()
        kind, path = self.where
        connection = UnixSocketConnection(path) if kind == "unix" else XenBusConnection(path)
        router = _Router(connection)
        if kind != "unix":
            router.one_at_a_time = threading.Lock()
        self._c = _PyxsClient(router=router)

    # lifecycle
    def connect(self) -> XenStore:
        try:
            self._c.connect()
        except PyXSError as e:
            raise XsError("ECONNREFUSED", self.where[1] if self.where else None,
                          str(e)) from None
        return self

    def close(self) -> None:
        self._c.close()

    def __enter__(self) -> XenStore:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, path: str | None, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except PyXSError as e:
            raise _wrap(e, path) from None

    def _cmd(self, path: str | None, op: int, *args: bytes) -> bytes:
        return self._call(path, self._c.execute_command, op, *args)

    # nodes
    def read(self, path: str) -> bytes:
        return self._cmd(path, Op.READ, _b(path) + NUL)

    def read_or(self, path: str, default: bytes | None = None) -> bytes | None:
        try:
            return self.read(path)
        except XsError as e:
            if e.name == "ENOENT":
                return default
            raise

    def write(self, path: str, value: bytes | str) -> None:
        self._cmd(path, Op.WRITE, _b(path) + NUL, _b(value))

    def mkdir(self, path: str) -> None:
        self._cmd(path, Op.MKDIR, _b(path) + NUL)

    def rm(self, path: str, missing_ok: bool = True) -> None:
        try:
            self._cmd(path, Op.RM, _b(path) + NUL)
        except XsError as e:
            if not (missing_ok and e.name == "ENOENT"):
                raise

    def ls(self, path: str) -> list[str]:
        payload = self._cmd(path, Op.DIRECTORY, _b(path) + NUL)
        return [c.decode() for c in payload.split(NUL)] if payload else []

    def exists(self, path: str) -> bool:
        try:
            self.ls(path)
            return True
        except XsError as e:
            if e.name == "ENOENT":
                return False
            raise

    def directory_part(self, path: str, offset: int) -> tuple[int, list[str], bool]:
        """(generation, children from byte `offset`, whether the list is complete)."""
        payload = self._cmd(path, Op.DIRECTORY_PART, _b(path) + NUL, str(offset).encode() + NUL)
        # _PyxsClient drops one trailing NUL: a complete list then still ends with one.
        complete = payload.endswith(NUL)
        parts = payload.split(NUL)
        return int(parts[0]), [p.decode() for p in parts[1:] if p], complete

    def get_perms(self, path: str) -> list[Perm]:
        payload = self._cmd(path, Op.GET_PERMS, _b(path) + NUL)
        entries = P.parse([p for p in payload.split(NUL) if p])
        return [Perm(domid, P.letter(access)) for domid, access in entries]

    def set_perms(self, path: str, perms: Iterable[Perm | str]) -> None:
        entries = [str(p).encode() + NUL for p in perms]
        self._cmd(path, Op.SET_PERMS, _b(path) + NUL, *entries)

    # domains
    def introduce(self, domid: int, gfn: int = 0, evtchn: int = 0) -> None:
        self._cmd(None, Op.INTRODUCE, f"{domid}".encode() + NUL, f"{gfn}".encode() + NUL,
                  f"{evtchn}".encode() + NUL)

    def release(self, domid: int) -> None:
        self._cmd(None, Op.RELEASE, f"{domid}".encode() + NUL)

    def is_domain_introduced(self, domid: int) -> bool:
        return self._cmd(None, Op.IS_DOMAIN_INTRODUCED, f"{domid}".encode() + NUL) == b"T"

    def get_domain_path(self, domid: int) -> str:
        return self._cmd(None, Op.GET_DOMAIN_PATH, f"{domid}".encode() + NUL).decode()

    def set_target(self, domid: int, target: int) -> None:
        self._cmd(None, Op.SET_TARGET, f"{domid}".encode() + NUL, f"{target}".encode() + NUL)

    def reset_watches(self) -> None:
        self._cmd(None, Op.RESET_WATCHES, NUL)

    # transactions
    def transaction(self, fn: Callable[[XenStore], T], *, attempts: int = 8) -> T:
        """Run `fn` in a transaction, again on EAGAIN, at most `attempts` times."""
        for attempt in range(attempts):
            tx_client = copy.copy(self._c)
            self._call(None, tx_client.transaction)
            try:
                result = fn(XenStore(self.where, _client=tx_client))
            except BaseException:
                with contextlib.suppress(PyXSError):
                    tx_client.rollback()
                raise
            if self._call(None, tx_client.commit):
                return result
            # Another writer got there first; back off a little, with jitter.
            time.sleep(min(0.05, 0.001 * 2 ** attempt) * random.random())
        raise XsError("EAGAIN", detail=f"transaction kept conflicting after {attempts} attempts")

    # watches
    def monitor(self) -> Any:
        return self._c.monitor()


class AsyncXenStore:
    """The client for asyncio programs: calls run on a worker thread, watch events arrive
    on the event loop."""

    def __init__(self, xs: XenStore) -> None:
        self.xs = xs
        # One transaction at a time from this connection: dom0 starting twenty domains at
        # once would otherwise mostly conflict with itself (each create adds a child to
        # /local/domain) and run out of retries.
        self._tx_lock = asyncio.Lock()
        self._tx_slots = asyncio.Semaphore(WRITES_IF_EXIST_AT_ONCE)

    @classmethod
    async def connect(cls, where: tuple[str, str] | None = None) -> AsyncXenStore:
        xs = await asyncio.to_thread(lambda: XenStore(where).connect())
        return cls(xs)

    async def close(self) -> None:
        await asyncio.to_thread(self.xs.close)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def read(self, path: str) -> bytes | None:
        return await self._run(self.xs.read_or, path)

    async def write(self, path: str, value: bytes | str) -> None:
        await self._run(self.xs.write, path, value)

    async def write_if_exists(self, parent: str, path: str, value: bytes | str) -> bool:
        """Write `path` only while `parent` exists, in one transaction; False if it is gone.

        A plain WRITE creates missing parents: a state written just after the toolstack
        removed a device's directory would bring a stray piece of it back. In a transaction
        that has read the parent, a removal that came in between is a conflict, and the
        retry finds the parent gone. Not behind `_tx_lock`: it reads and writes inside one
        device's directory, so it conflicts only with a change there (the removal it guards
        against); sys-sec closing many devices at once need not queue them one behind the
        other, nor dom0 a device's `online` behind other domains' creations. A few at once,
        though: xenstored refuses a connection's eleventh open transaction."""
        def body(tx: XenStore) -> bool:
            if not tx.exists(parent):
                return False
            tx.write(path, value)
            return True
        async with self._tx_slots:
            return await self._run(self.xs.transaction, body)

    async def ls(self, path: str) -> list[str]:
        def ls_or_empty() -> list[str]:
            try:
                return self.xs.ls(path)
            except XsError as e:
                if e.name in ("ENOENT", "EACCES"):
                    return []
                raise
        return await self._run(ls_or_empty)

    async def rm(self, path: str) -> None:
        await self._run(self.xs.rm, path)

    async def introduce(self, domid: int) -> None:
        await self._run(self.xs.introduce, domid, 0, 0)

    async def release(self, domid: int) -> None:
        try:
            await self._run(self.xs.release, domid)
        except XsError as e:
            if e.name != "EINVAL":   # not introduced (any more): nothing to release
                raise

    async def write_nodes(self, nodes: Iterable[Any]) -> None:
        """Create nodes (objects with path, value, perms) in one transaction."""
        nodes = list(nodes)

        def body(tx: XenStore) -> None:
            for n in nodes:
                if n.value is None:
                    tx.mkdir(n.path)
                else:
                    tx.write(n.path, n.value)
                if n.perms is not None:
                    tx.set_perms(n.path, n.perms)
        async with self._tx_lock:
            await self._run(self.xs.transaction, body)

    async def watch(self, path: str) -> AsyncGenerator[str, None]:
        """Yield the path of every event for a watch on `path` (the first one at once)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException] = asyncio.Queue()
        token = f"hw{id(queue):x}".encode()
        # Over the xenbus device a watch gets a file of its own: a Xen guest's kernel was
        # seen to stop talking to xenstore for good when one file carried a WATCH being
        # registered alongside other requests and events.
        own = await self._run(lambda: XenStore(self.xs.where).connect()) \
            if self.xs.where is not None and self.xs.where[0] == "xenbus" else None
        monitor = await self._run((own or self.xs).monitor)
        stop = threading.Event()

        def pump() -> None:
            try:
                while True:
                    event = monitor.events.get()
                    if stop.is_set():
                        return
                    if event is _CLOSED:
                        raise ConnectionError("the xenstore connection is closed")
                    loop.call_soon_threadsafe(queue.put_nowait, event.path.decode())
            except BaseException as e:  # the connection closed under us
                if not stop.is_set():
                    with contextlib.suppress(RuntimeError):   # the loop is gone too
                        loop.call_soon_threadsafe(queue.put_nowait, e)

        await self._run(monitor.watch, _b(path), token)
        thread = threading.Thread(target=pump, daemon=True, name=f"xs-watch {path}")
        thread.start()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise XsError("EIO", path, f"watch ended: {item}")
                yield item
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await self._run(monitor.unwatch, _b(path), token)
            # Wake the pump so it sees `stop`: it ends only on an event.
            monitor.events.put(_STOP)
            if own is not None:
                await self._run(own.close)

    async def wait_value(self, path: str, pred: Callable[[bytes | None], bool],
                         timeout: float) -> bytes | None:
        """Wait until `pred(value of path)` holds; returns the last value seen."""
        value: bytes | None = None
        try:
            async with asyncio.timeout(timeout):
                async for _ in self.watch(path):
                    value = await self.read(path)
                    if pred(value):
                        return value
        except TimeoutError:
            pass
        return value


async def connect_agent_store() -> AsyncXenStore:
    """The in-domain agent's connection: the only socket its domain can see."""
    return await AsyncXenStore.connect()


def rundir_socket(rundir: Path) -> tuple[str, str]:
    return ("unix", str(rundir / "socket"))
