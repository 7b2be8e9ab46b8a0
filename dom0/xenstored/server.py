"""The xenstored server core, sans-IO: frames from connections in; replies, watch events,
journal records and commands for the shell out.

Connections are opened by the shell as privileged (dom0's socket) or as a domain (that
domain's socket). `handle(conn, frame)` answers one request: replies and events are
appended to the target connections' `out` lists, and the shell sends them after it has
written the journal records this request produced. INTRODUCE and RELEASE also leave
`Listen`/`Unlisten` commands for the shell (create or remove the domain's socket).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dom0.xenstore import perms as P
from dom0.xenstore import wire
from dom0.xenstore.paths import SPECIAL, canonical, domain_path, parent, relative_to
from dom0.xenstore.wire import Frame, Op, XsError
from dom0.xenstored.tree import (
    Caller,
    Transaction,
    Tree,
    TxOp,
    apply_op,
    check_read,
    do_rm,
    fired_path,
)

OK = b"OK\0"


@dataclass
class Quotas:
    nodes: int = 1000          # nodes owned per domain
    value_size: int = 2048     # bytes per value
    watches: int = 100         # per connection
    transactions: int = 10     # open per connection
    outstanding: int = 1024    # requests a connection may have in flight (enforced by the shell)


@dataclass(frozen=True)
class Listen:
    domid: int


@dataclass(frozen=True)
class Unlisten:
    domid: int


@dataclass
class Watch:
    path: str          # absolute, or a special `@...` name
    token: bytes
    relative: bool


@dataclass(eq=False)
class Conn:
    id: int
    caller: Caller
    watches: dict[tuple[str, bytes], Watch] = field(default_factory=dict)
    txs: dict[int, Transaction] = field(default_factory=dict)
    out: list[bytes] = field(default_factory=list)


@dataclass
class DomainRecord:
    domid: int
    gfn: int
    evtchn: int
    target: int | None = None


def _one(payload: bytes) -> bytes:
    """The single NUL-terminated argument of a request."""
    if not payload.endswith(b"\0") or b"\0" in payload[:-1]:
        raise XsError("EINVAL", detail="expected one NUL-terminated argument")
    return payload[:-1]


def _domid(raw: bytes) -> int:
    text = raw.decode("ascii", "replace")
    if not text.isdigit() or int(text) > P.DOMID_MAX:
        raise XsError("EINVAL", detail=f"bad domid {text[:16]!r}")
    return int(text)


class Server:
    def __init__(self, quotas: Quotas | None = None, tree: Tree | None = None) -> None:
        self.quotas = quotas or Quotas()
        self.tree = tree or Tree()
        self.conns: dict[int, Conn] = {}
        self.domains: dict[int, DomainRecord] = {}
        self.special_perms: dict[str, P.Perms] = {s: P.DOM0_ONLY for s in SPECIAL}
        self.watch_index: dict[str, list[tuple[Conn, Watch]]] = {}
        self.commands: list[Listen | Unlisten] = []
        # For the shell: connections with output queued, and connections the core closed
        # itself (a released domain's), so it never scans every connection per request.
        self.outgoing: dict[int, Conn] = {}
        self.dropped: list[int] = []
        self.on_domains_changed: Callable[[], None] | None = None
        self._next_conn = 1
        self._next_tx = 1
        # A handler returns the reply's payload, or None when it queued its reply itself.
        self._handlers: dict[int, Callable[[Conn, Frame], bytes | None]] = {
            Op.READ: self._read, Op.WRITE: self._write, Op.MKDIR: self._mkdir, Op.RM: self._rm,
            Op.DIRECTORY: self._directory, Op.DIRECTORY_PART: self._directory_part,
            Op.GET_PERMS: self._get_perms, Op.SET_PERMS: self._set_perms,
            Op.WATCH: self._watch, Op.UNWATCH: self._unwatch,
            Op.TRANSACTION_START: self._tx_start, Op.TRANSACTION_END: self._tx_end,
            Op.INTRODUCE: self._introduce, Op.RELEASE: self._release,
            Op.IS_DOMAIN_INTRODUCED: self._is_introduced, Op.GET_DOMAIN_PATH: self._domain_path,
            Op.RESUME: self._resume, Op.SET_TARGET: self._set_target,
            Op.RESET_WATCHES: self._reset_watches, Op.CONTROL: self._control,
        }

    # -- connections ----------------------------------------------------------------------

    def open(self, domid: int, privileged: bool) -> Conn:
        target = self.domains[domid].target if domid in self.domains else None
        conn = Conn(self._next_conn, Caller(domid, privileged, target))
        self._next_conn += 1
        self.conns[conn.id] = conn
        return conn

    def close(self, conn: Conn) -> None:
        self._drop_watches(conn)
        for tx in conn.txs.values():
            tx.close()
        conn.txs.clear()
        self.conns.pop(conn.id, None)
        self.outgoing.pop(conn.id, None)

    # -- requests -------------------------------------------------------------------------

    def _queue(self, conn: Conn, data: bytes) -> None:
        conn.out.append(data)
        self.outgoing[conn.id] = conn

    def handle(self, conn: Conn, frame: Frame) -> None:
        handler = self._handlers.get(frame.op)
        if handler is None:
            self._queue(conn, wire.error_frame(frame, "ENOSYS"))
            return
        try:
            reply = handler(conn, frame)
        except XsError as e:   # malformed paths and permissions are EINVAL ones
            self._queue(conn, wire.error_frame(frame, e.name))
            return
        if reply is None:
            return
        if len(reply) > wire.PAYLOAD_MAX:
            # C xenstored's answer; DIRECTORY_PART reads such a directory in pieces.
            # (oxenstored sends the oversized frame, which libxenstore then rejects.)
            self._queue(conn, wire.error_frame(frame, "E2BIG"))
            return
        self._queue(conn, wire.encode(frame.op, frame.req_id, frame.tx_id, reply))

    def _path(self, conn: Conn, raw: bytes) -> str:
        path = canonical(raw, conn.caller.domid)
        if path.startswith("@"):
            # No node has such a name; oxenstored answers reads of one with ENOENT.
            raise XsError("ENOENT", detail="special paths name watches, not nodes")
        return path

    def _view(self, conn: Conn, frame: Frame) -> Tree | Transaction:
        if frame.tx_id == 0:
            return self.tree
        tx = conn.txs.get(frame.tx_id)
        if tx is None:
            raise XsError("EIO", detail=f"no transaction {frame.tx_id}")   # as oxenstored answers
        return tx

    def _mutate(self, conn: Conn, frame: Frame, op: TxOp) -> bytes:
        view = self._view(conn, frame)
        if isinstance(view, Transaction):
            apply_op(view, conn.caller, op, self.quotas.nodes)
            view.ops.append(op)
            return OK
        removed_perms: dict[str, P.Perms] = {}
        if op[0] == "rm":
            removed = do_rm(self.tree, conn.caller, op[1])
            removed_perms = dict(removed)
            changed = [op[1]] if removed else []
        else:
            changed = apply_op(self.tree, conn.caller, op, self.quotas.nodes)
        for path in changed:
            self._fire(path, removed_perms)
        return OK

    def _read(self, conn: Conn, frame: Frame) -> bytes:
        path = self._path(conn, _one(frame.payload))
        return check_read(self._view(conn, frame), conn.caller, path)[0]

    def _write(self, conn: Conn, frame: Frame) -> bytes:
        raw_path, sep, value = frame.payload.partition(b"\0")
        if not sep:
            raise XsError("EINVAL", detail="WRITE without a value")
        if len(value) > self.quotas.value_size:
            raise XsError("E2BIG", detail=f"value of {len(value)} bytes")
        return self._mutate(conn, frame, ("write", self._path(conn, raw_path), value, False))

    def _mkdir(self, conn: Conn, frame: Frame) -> bytes:
        return self._mutate(conn, frame, ("write", self._path(conn, _one(frame.payload)), b"",
                                          True))

    def _rm(self, conn: Conn, frame: Frame) -> bytes:
        return self._mutate(conn, frame, ("rm", self._path(conn, _one(frame.payload))))

    def _directory(self, conn: Conn, frame: Frame) -> bytes:
        path = self._path(conn, _one(frame.payload))
        children = sorted(check_read(self._view(conn, frame), conn.caller, path)[2])
        return b"".join(c.encode() + b"\0" for c in children)

    def _directory_part(self, conn: Conn, frame: Frame) -> bytes:
        # C xenstored's format (oxenstored 4.17 lacks the operation): the node's generation,
        # then as many children as fit from the byte offset, then an empty string once the
        # list is complete.
        args = wire.split_args(frame.payload)
        if len(args) != 2 or not args[1].isdigit():
            raise XsError("EINVAL", detail="DIRECTORY_PART takes a path and an offset")
        path = self._path(conn, args[0])
        snap = check_read(self._view(conn, frame), conn.caller, path)
        blob = b"".join(c.encode() + b"\0" for c in sorted(snap[2]))
        offset = int(args[1])
        if offset > len(blob):
            raise XsError("EINVAL", detail="offset past the end")
        head = str(snap[3]).encode() + b"\0"
        room = wire.PAYLOAD_MAX - len(head) - 1
        rest = blob[offset:]
        if len(rest) <= room:
            return head + rest + b"\0"
        cut = rest.rfind(b"\0", 0, room) + 1
        return head + rest[:cut]

    def _get_perms(self, conn: Conn, frame: Frame) -> bytes:
        raw = _one(frame.payload)
        path = canonical(raw, conn.caller.domid)
        if path.startswith("@"):
            if path not in self.special_perms:
                raise XsError("ENOENT")
            return P.format_perms(self.special_perms[path])
        return P.format_perms(check_read(self._view(conn, frame), conn.caller, path)[1])

    def _set_perms(self, conn: Conn, frame: Frame) -> bytes:
        args = wire.split_args(frame.payload)
        if len(args) < 2:
            raise XsError("EINVAL", detail="SET_PERMS needs a path and at least one entry")
        path = canonical(args[0], conn.caller.domid)
        perms = P.parse(args[1:])
        if path.startswith("@"):
            if path not in self.special_perms:
                raise XsError("ENOENT")
            if not conn.caller.privileged:
                raise XsError("EACCES")
            self.special_perms[path] = perms
            return OK
        return self._mutate(conn, frame, ("perms", path, perms))

    # -- watches --------------------------------------------------------------------------

    def _watch(self, conn: Conn, frame: Frame) -> None:
        args = wire.split_args(frame.payload)
        if len(args) != 2:
            raise XsError("EINVAL", detail="WATCH takes a path and a token")
        raw, token = args
        path = canonical(raw, conn.caller.domid)
        key = (path, token)
        if key in conn.watches:
            raise XsError("EEXIST")
        if not conn.caller.privileged and len(conn.watches) >= self.quotas.watches:
            raise XsError("E2BIG", detail="too many watches")
        w = Watch(path, token, relative=not raw.startswith((b"/", b"@")))
        conn.watches[key] = w
        self.watch_index.setdefault(path, []).append((conn, w))
        # The reply first, then the initial event, as xenstored orders them.
        self._queue(conn, wire.encode(frame.op, frame.req_id, frame.tx_id, OK))
        self._queue(conn, wire.watch_event(self._event_path(conn, w, path), token))
        return None

    def _unwatch(self, conn: Conn, frame: Frame) -> bytes:
        args = wire.split_args(frame.payload)
        if len(args) != 2:
            raise XsError("EINVAL", detail="UNWATCH takes a path and a token")
        path = canonical(args[0], conn.caller.domid)
        w = conn.watches.pop((path, args[1]), None)
        if w is None:
            raise XsError("ENOENT")
        self._unindex(conn, w)
        return OK

    def _reset_watches(self, conn: Conn, frame: Frame) -> bytes:
        self._drop_watches(conn)
        for tx in conn.txs.values():
            tx.close()
        conn.txs.clear()
        return OK

    def _drop_watches(self, conn: Conn) -> None:
        for w in conn.watches.values():
            self._unindex(conn, w)
        conn.watches.clear()

    def _unindex(self, conn: Conn, w: Watch) -> None:
        entries = self.watch_index.get(w.path)
        if entries is not None:
            entries[:] = [e for e in entries if not (e[0] is conn and e[1] is w)]
            if not entries:
                del self.watch_index[w.path]

    def _event_path(self, conn: Conn, w: Watch, path: str) -> str:
        return relative_to(path, conn.caller.domid) if w.relative else path

    def _fire(self, changed: str, removed_perms: dict[str, P.Perms]) -> None:
        """Queue events for every watch a change at `changed` concerns."""
        removal = bool(removed_perms)
        node = self.tree.node(changed)
        perms_now = node.perms if node is not None else removed_perms.get(changed)
        candidates: list[str] = []
        p = changed
        while True:
            if p in self.watch_index:
                candidates.append(p)
            if p == "/":
                break
            p = parent(p)
        if removal:
            prefix = changed + "/"
            candidates += [w for w in self.watch_index if w.startswith(prefix)]
        for wpath in candidates:
            event = fired_path(changed, wpath, removal)
            if event is None:
                continue
            for conn, w in list(self.watch_index.get(wpath, ())):
                perms = removed_perms.get(event, perms_now)
                if perms is not None and not conn.caller.may(perms, P.READ):
                    continue
                self._queue(conn, wire.watch_event(self._event_path(conn, w, event), w.token))

    def _fire_special(self, name: str) -> None:
        perms = self.special_perms[name]
        for conn, w in list(self.watch_index.get(name, ())):
            if conn.caller.may(perms, P.READ):
                self._queue(conn, wire.watch_event(name, w.token))

    # -- transactions ---------------------------------------------------------------------

    def _tx_start(self, conn: Conn, frame: Frame) -> bytes:
        if frame.tx_id != 0:
            raise XsError("EIO" if frame.tx_id not in conn.txs else "EBUSY")
        if not conn.caller.privileged and len(conn.txs) >= self.quotas.transactions:
            raise XsError("ENOSPC", detail="too many open transactions")
        tx_id = self._next_tx
        self._next_tx = self._next_tx % 0xFFFFFFFF + 1
        conn.txs[tx_id] = Transaction(self.tree, conn.caller, tx_id)
        return str(tx_id).encode() + b"\0"

    def _tx_end(self, conn: Conn, frame: Frame) -> bytes:
        arg = _one(frame.payload)
        if frame.tx_id == 0:
            raise XsError("ENOENT")
        tx = conn.txs.get(frame.tx_id)
        if tx is None:
            raise XsError("EIO")
        if arg not in (b"T", b"F"):
            raise XsError("EINVAL")
        del conn.txs[frame.tx_id]
        try:
            if arg == b"F":
                return OK
            if tx.conflicts():
                raise XsError("EAGAIN")
            if tx.over_quota(self.quotas.nodes):
                raise XsError("ENOSPC")
            changed: list[tuple[str, dict[str, P.Perms]]] = []
            for op in tx.ops:
                if op[0] == "rm":
                    removed = do_rm(self.tree, conn.caller, op[1])
                    if removed:
                        changed.append((op[1], dict(removed)))
                else:
                    changed += [(p, {}) for p in apply_op(self.tree, conn.caller, op, None)]
            for path, removed_perms in changed:
                self._fire(path, removed_perms)
            return OK
        finally:
            tx.close()

    # -- domains --------------------------------------------------------------------------

    def _privileged(self, conn: Conn) -> None:
        if not conn.caller.privileged:
            raise XsError("EACCES")

    def _introduce(self, conn: Conn, frame: Frame) -> bytes:
        self._privileged(conn)
        args = wire.split_args(frame.payload)
        if len(args) < 3 or not all(a.isdigit() for a in args[1:3]):
            raise XsError("EINVAL", detail="INTRODUCE takes domid, gfn and event channel")
        domid = _domid(args[0])
        if domid == 0:
            raise XsError("EINVAL", detail="dom0 is not introduced")
        if domid not in self.domains:
            self.domains[domid] = DomainRecord(domid, int(args[1]), int(args[2]))
            self.commands.append(Listen(domid))
            self._domains_changed()
        self._fire_special("@introduceDomain")
        return OK

    def _release(self, conn: Conn, frame: Frame) -> bytes:
        self._privileged(conn)
        domid = _domid(_one(frame.payload))
        if domid not in self.domains:
            raise XsError("EINVAL", detail=f"domain {domid} is not introduced")
        self.release_domain(domid)
        return OK

    def release_domain(self, domid: int) -> None:
        """Forget a domain as Xen 4.17 does (XSA-322, XSA-419): its connections close, the
        nodes it owns are removed, and no permission entry names it any more, so a later
        domain given the same id inherits nothing."""
        del self.domains[domid]
        for conn in [c for c in self.conns.values() if c.caller.domid == domid
                     and not c.caller.privileged]:
            self.close(conn)
            self.dropped.append(conn.id)
        self.commands.append(Unlisten(domid))
        owned = [p for p, n in self.tree.walk() if p != "/" and n.perms[0][0] == domid]
        for path in owned:
            if self.tree.node(path) is not None:
                removed = self.tree.delete(path)
                for _, perms in removed:
                    self.tree.owner_delta(perms[0][0], -1)
                self._fire(path, dict(removed))
        for path, node in list(self.tree.walk()):
            if any(d == domid for d, _ in node.perms[1:]):
                self.tree.put(path, node.value, P.without_domain(node.perms, domid))
        for name, perms in self.special_perms.items():
            self.special_perms[name] = P.without_domain(perms, domid)
        for rec in self.domains.values():
            if rec.target == domid:
                rec.target = None
        self.tree.counts.pop(domid, None)
        self._domains_changed()
        self._fire_special("@releaseDomain")

    def _is_introduced(self, conn: Conn, frame: Frame) -> bytes:
        domid = _domid(_one(frame.payload))
        return b"T\0" if domid in self.domains else b"F\0"

    def _domain_path(self, conn: Conn, frame: Frame) -> bytes:
        return domain_path(_domid(_one(frame.payload))).encode() + b"\0"

    def _resume(self, conn: Conn, frame: Frame) -> bytes:
        self._privileged(conn)
        domid = _domid(_one(frame.payload))
        if domid not in self.domains:
            raise XsError("EINVAL")
        return OK

    def _set_target(self, conn: Conn, frame: Frame) -> bytes:
        self._privileged(conn)
        args = wire.split_args(frame.payload)
        if len(args) != 2:
            raise XsError("EINVAL", detail="SET_TARGET takes two domids")
        domid, target = _domid(args[0]), _domid(args[1])
        if domid not in self.domains or target not in self.domains:
            raise XsError("ENOENT")
        self.domains[domid].target = target
        for c in self.conns.values():
            if c.caller.domid == domid and not c.caller.privileged:
                c.caller.target = target
        self._domains_changed()
        return OK

    def _control(self, conn: Conn, frame: Frame) -> bytes:
        self._privileged(conn)
        args = wire.split_args(frame.payload)
        if args and args[0] == b"quota":
            q = self.quotas
            text = (f"nodes {q.nodes}\nvalue-size {q.value_size}\nwatches {q.watches}\n"
                    f"transactions {q.transactions}\noutstanding {q.outstanding}\n")
            return text.encode() + b"\0"
        return OK

    def _domains_changed(self) -> None:
        if self.on_domains_changed:
            self.on_domains_changed()
