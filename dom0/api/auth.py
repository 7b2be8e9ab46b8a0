"""Who is calling, and what they may do: authorisation from the caller's Unix credentials.

gRPC Python does not tell a servicer the credentials of a Unix-socket peer, so the public
socket is served by `CredentialProxy`: it reads the connecting process's SO_PEERCRED, then
connects to the internal gRPC socket from a client socket bound to a fresh path naming the
caller (`<internal dir>/peer-<uid>-<n>`) and splices bytes both ways. The servicer sees that
path in `context.peer()` and looks the credentials up in the proxy's table. The internal
directory is root-only (0700), so nobody else can reach gRPC without passing the proxy.

The policy itself is `refusal()`, a pure function of the caller and the operation.
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import grp
import logging
import os
import pwd
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

OWNER_GROUP = "hyperwall"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the terminating NUL
_CHUNK = 64 * 1024


class Operation(enum.Enum):
    LIST = "list"
    GET = "get"
    CREATE = "create"
    START = "start"
    SHUTDOWN = "shutdown"
    DESTROY = "destroy"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    EXEC = "exec"
    EVENTS = "events"
    UP = "up"
    DOWN = "down"
    # sys-sec's records, which dom0d reads from its SecurityService for the caller.
    ALERTS = "alerts"
    REPORT = "report"
    STATS = "stats"
    RELOAD = "reload"
    PROVIDER_STATUS = "provider status"
    # Files at rest: a scan reads all a domain wrote, a recovery changes or resets it.
    SCAN = "scan"
    RECOVER = "recover"


# What changes the set of domains or the whole platform is for owners only; a listed user
# may drive the domains they are listed on, not make or remove them. The engine and the
# provider are the whole platform's too: their counters and trust are no one domain's.
OWNER_ONLY = frozenset({Operation.CREATE, Operation.DESTROY, Operation.UP, Operation.DOWN,
                        Operation.STATS, Operation.RELOAD, Operation.PROVIDER_STATUS,
                        Operation.SCAN, Operation.RECOVER})
# sys-sec's records of what domains did: a listed user reads those of their domains.
SECURITY_READS = frozenset({Operation.ALERTS, Operation.REPORT})


@dataclass(frozen=True)
class PeerCred:
    """SO_PEERCRED of a connection to the public socket."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class Caller:
    uid: int
    user: str | None     # None when the uid has no passwd entry
    owner: bool          # root or a member of the owner group: may do everything
    owner_group: str = OWNER_GROUP

    @property
    def label(self) -> str:
        return repr(self.user) if self.user is not None else f"uid {self.uid}"


def is_owner(uid: int, group_ids: list[int], owner_gid: int | None) -> bool:
    return uid == 0 or (owner_gid is not None and owner_gid in group_ids)


def may_use(caller: Caller, domain_users: tuple[str, ...] | None) -> bool:
    """Whether the caller may see and use a domain; `domain_users` None: no such domain."""
    if caller.owner:
        return True
    return domain_users is not None and caller.user is not None and caller.user in domain_users


def refusal(caller: Caller, op: Operation, domain: str | None,
            domain_users: tuple[str, ...] | None) -> str | None:
    """Why the caller may not do `op` (on `domain`, whose `users` are `domain_users`, None
    when it does not exist), or None when it may.

    A non-owner gets the same answer for a domain that exists without naming them and for
    one that does not exist, so that the API does not tell them which domains exist.
    """
    if caller.owner:
        return None
    if op in OWNER_ONLY:
        target = f" {domain!r}" if domain else ""
        return (f"{op.value}{target} is reserved to the platform's owners (root and the "
                f"{caller.owner_group!r} group); user {caller.label} is not one")
    if domain is None or may_use(caller, domain_users):
        return None
    return (f"user {caller.label} may not use domain {domain!r}: the user is not in its "
            f"`users` (an owner can add it to the domain's definition)")


def readable_domains(caller: Caller,
                     domain_users: Mapping[str, tuple[str, ...]]) -> frozenset[str] | None:
    """The domains whose sys-sec records the caller may read (`domain_users`: every
    domain's `users`); None for an owner, who reads every record, also those of sys-sec
    itself and those that name no domain."""
    if caller.owner:
        return None
    return frozenset(name for name, users in domain_users.items() if may_use(caller, users))


def read_refusal(caller: Caller, op: Operation, domain: str | None,
                 domain_users: Mapping[str, tuple[str, ...]]) -> str | None:
    """Why the caller may not read sys-sec's records for `op` (of `domain`, None: of every
    domain they may read), or None when it may. As `refusal`: a domain that does not
    exist looks like one that does not name the caller."""
    reason = refusal(caller, op, domain, domain_users.get(domain) if domain else None)
    if reason is not None or domain is not None or caller.owner:
        return reason
    if not readable_domains(caller, domain_users):
        return (f"user {caller.label} may read no domain's {op.value}: no domain's `users` "
                "names the user (an owner can add it to a domain's definition)")
    return None


def resolve_caller(cred: PeerCred, owner_group: str = OWNER_GROUP) -> Caller:
    """Look the credentials up in the user and group databases, as they are now."""
    try:
        user: str | None = pwd.getpwuid(cred.uid).pw_name
    except KeyError:
        user = None
    try:
        owner_gid: int | None = grp.getgrnam(owner_group).gr_gid
    except KeyError:
        owner_gid = None
    groups = os.getgrouplist(user, cred.gid) if user is not None else [cred.gid]
    return Caller(uid=cred.uid, user=user, owner=is_owner(cred.uid, groups, owner_gid),
                  owner_group=owner_group)


def peer_cred(sock: socket.socket) -> PeerCred:
    fmt = "3i"
    pid, uid, gid = struct.unpack(
        fmt, sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(fmt)))
    return PeerCred(pid=pid, uid=uid, gid=gid)


def check_socket_path(path: Path) -> None:
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise ValueError(f"socket path {path} is longer than {_SUN_PATH_MAX} bytes; "
                         "choose a shorter directory")


class CredentialProxy:
    """The public socket: forwards each connection to `upstream` from a path naming its caller.

    `lookup(context.peer())` gives the credentials of the connection a call came on.
    """

    def __init__(self, public: Path, upstream: Path, peer_dir: Path, *,
                 max_connections: int = 256) -> None:
        self.public, self.upstream, self.peer_dir = public, upstream, peer_dir
        # Any local user may connect: bound what they can hold open (two fds each here).
        self.max_connections = max_connections
        self._peers: dict[str, PeerCred] = {}
        self._count = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        check_socket_path(self.public)
        check_socket_path(self.peer_dir / f"peer-{2**32}-{2**63}")
        # Bound paths of a previous run whose connections are gone.
        for stale in self.peer_dir.glob("peer-*"):
            stale.unlink(missing_ok=True)
        self.public.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.public))
        # Anyone may connect: every call is authorised from the caller's credentials.
        os.chmod(self.public, 0o666)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        self.public.unlink(missing_ok=True)

    def lookup(self, grpc_peer: str) -> PeerCred | None:
        """Credentials of the connection gRPC names `unix:<bound path>`; None if unknown."""
        return self._peers.get(grpc_peer.removeprefix("unix:"))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        cred = peer_cred(writer.get_extra_info("socket"))
        if len(self._connections) >= self.max_connections:
            log.warning("control socket: refusing pid %d uid %d: %d connections open",
                        cred.pid, cred.uid, len(self._connections))
            writer.close()
            return
        self._connections.add(task)
        self._count += 1
        bound = str(self.peer_dir / f"peer-{cred.uid}-{self._count}")
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            up.setblocking(False)
            up.bind(bound)
            self._peers[bound] = cred
            await asyncio.get_running_loop().sock_connect(up, str(self.upstream))
            up_reader, up_writer = await asyncio.open_unix_connection(sock=up)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        except OSError as e:
            log.warning("control connection from pid %d uid %d: %s", cred.pid, cred.uid, e)
        finally:
            up.close()
            writer.close()
            self._peers.pop(bound, None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(bound)
            self._connections.discard(task)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on; a reset on either side ends both directions."""
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except OSError:
        dst.close()
