"""The xenstore tree and its transactions, sans-IO.

Live state is a tree of `Node`s. Every change bumps a global generation; a node remembers
the generation of its last change (its own value/perms, or its set of children).

Transactions get snapshot semantics without copying the tree: while at least one
transaction is open, every change to the live tree records the changed node's previous
state (its pre-image) in `history`, keyed by path and stamped with the change's generation.
A transaction reads its own writes first (an overlay), then the pre-image of the earliest
change after its start if there is one, else the live node. At commit, a transaction
conflicts (EAGAIN) if any path it read, listed or wrote has changed since it started — a
history entry newer than its start. Otherwise its recorded operations are replayed on the
live tree; they cannot fail there, because every path they depend on is as it was when
they were checked (node quotas, the one thing that depends on the rest of the tree, are
checked again before the replay starts). History is dropped when no transaction is open and
pruned below the oldest open one, so it holds only what open transactions may still need.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from dom0.xenstore import perms as P
from dom0.xenstore.paths import is_under, parent

Snap = tuple[bytes, P.Perms, frozenset[str], int]   # value, perms, child names, generation


class XsError(Exception):
    """An error reply: carries the errno name xenstored sends."""

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name


class Node:
    __slots__ = ("value", "perms", "children", "gen")

    def __init__(self, value: bytes, perms: P.Perms, gen: int) -> None:
        self.value = value
        self.perms = perms
        self.children: dict[str, Node] | None = None
        self.gen = gen

    def snap(self) -> Snap:
        return (self.value, self.perms,
                frozenset(self.children) if self.children else frozenset(), self.gen)


def _split(path: str) -> list[str]:
    return [] if path == "/" else path[1:].split("/")


def _join(parent_path: str, name: str) -> str:
    return f"/{name}" if parent_path == "/" else f"{parent_path}/{name}"


@dataclass
class Caller:
    """Who asks: privileged dom0 tools, or an unprivileged domain (maybe with a target)."""

    domid: int
    privileged: bool
    target: int | None = None

    def may(self, perms: P.Perms, want: int) -> bool:
        return self.privileged or P.allowed(perms, self.domid, want, self.target)


class View:
    """Read and change nodes by path; the live tree and each transaction are views."""

    def get(self, path: str) -> Snap | None:
        raise NotImplementedError

    def put(self, path: str, value: bytes, perms: P.Perms) -> None:
        """Create or update one node; its parent exists."""
        raise NotImplementedError

    def delete(self, path: str) -> list[tuple[str, P.Perms]]:
        """Remove a node and its subtree; returns the removed (path, perms), top first."""
        raise NotImplementedError

    def owner_delta(self, owner: int, delta: int) -> None:
        raise NotImplementedError

    def owned(self, owner: int) -> int:
        raise NotImplementedError


# -- the operations, written once for every view -------------------------------------------

def nearest(view: View, path: str) -> tuple[str, Snap]:
    """The nearest existing ancestor-or-self (the root always exists)."""
    p = path
    while True:
        snap = view.get(p)
        if snap is not None:
            return p, snap
        p = parent(p)


def check_read(view: View, caller: Caller, path: str) -> Snap:
    snap = view.get(path)
    if snap is None:
        # ENOENT only to a caller who may read the nearest existing ancestor (XSA-115 rule).
        _, anc = nearest(view, path)
        raise XsError("ENOENT" if caller.may(anc[1], P.READ) else "EACCES")
    if not caller.may(snap[1], P.READ):
        raise XsError("EACCES")
    return snap


def do_write(view: View, caller: Caller, path: str, value: bytes,
             quota_nodes: int | None, create_only: bool = False) -> bool:
    """WRITE (and MKDIR with `create_only`); returns whether anything changed."""
    snap = view.get(path)
    if snap is not None:
        if not caller.may(snap[1], P.WRITE):
            raise XsError("EACCES")
        if create_only:
            return False
        view.put(path, value, snap[1])
        return True
    anc_path, anc = nearest(view, path)
    if not caller.may(anc[1], P.WRITE):
        raise XsError("EACCES")
    # A new node takes its parent's perms, owned by an unprivileged creator.
    perms = anc[1] if caller.privileged else ((caller.domid, anc[1][0][1]), *anc[1][1:])
    missing = []
    p = path
    while p != anc_path:
        missing.append(p)
        p = parent(p)
    owner = perms[0][0]
    if quota_nodes is not None and not caller.privileged and \
            view.owned(owner) + len(missing) > quota_nodes:
        raise XsError("ENOSPC", f"domain {owner} owns too many nodes")
    for p in reversed(missing):
        view.put(p, value if p == path else b"", perms)
    view.owner_delta(owner, len(missing))
    return True


def do_rm(view: View, caller: Caller, path: str) -> list[tuple[str, P.Perms]]:
    snap = view.get(path)
    if snap is None:
        # Removing what is already gone succeeds, unless its parent is gone too.
        if view.get(parent(path)) is None:
            raise XsError("ENOENT")
        return []
    if not caller.may(snap[1], P.WRITE):
        raise XsError("EACCES")
    if path == "/":
        raise XsError("EINVAL", "cannot remove the root")
    removed = view.delete(path)
    for _, perms in removed:
        view.owner_delta(perms[0][0], -1)
    return removed


def do_set_perms(view: View, caller: Caller, path: str, new: P.Perms) -> None:
    snap = view.get(path)
    if snap is None:
        raise XsError("ENOENT")
    if not caller.privileged:
        if not P.allowed(snap[1], caller.domid, P.WRITE, caller.target) or \
                snap[1][0][0] not in (caller.domid, caller.target):
            raise XsError("EACCES")
        if new[0][0] != snap[1][0][0]:
            raise XsError("EPERM", "only dom0 changes a node's owner")
    view.put(path, snap[0], new)
    if new[0][0] != snap[1][0][0]:
        view.owner_delta(snap[1][0][0], -1)
        view.owner_delta(new[0][0], 1)


# -- the live tree --------------------------------------------------------------------------

class Tree(View):
    def __init__(self) -> None:
        self.gen = 0
        self.root = Node(b"", P.DOM0_ONLY, 0)
        self.counts: dict[int, int] = {}
        self.history: dict[str, list[tuple[int, Snap | None]]] = {}
        self.open_starts: dict[int, int] = {}      # tx serial -> start generation
        self.on_change: Callable[[str, tuple], None] | None = None   # journal hook

    # reading
    def node(self, path: str) -> Node | None:
        n: Node | None = self.root
        if path == "/":
            return n
        for name in path[1:].split("/"):
            ch = n.children  # type: ignore[union-attr]
            if ch is None:
                return None
            n = ch.get(name)
            if n is None:
                return None
        return n

    def get(self, path: str) -> Snap | None:
        n = self.node(path)
        return n.snap() if n is not None else None

    # changing
    def _remember(self, path: str, before: Snap | None) -> None:
        if self.open_starts:
            self.history.setdefault(path, []).append((self.gen, before))

    def put(self, path: str, value: bytes, perms: P.Perms) -> None:
        self.gen += 1
        n = self.node(path)
        if n is not None:
            self._remember(path, n.snap())
            n.value, n.perms, n.gen = value, perms, self.gen
        else:
            ppath = parent(path)
            par = self.node(ppath)
            assert par is not None, f"parent of {path} missing"
            self._remember(path, None)
            self._remember(ppath, par.snap())
            if par.children is None:
                par.children = {}
            par.children[path.rsplit("/", 1)[1]] = Node(value, perms, self.gen)
            par.gen = self.gen
        if self.on_change:
            self.on_change(path, ("put", value, perms))

    def delete(self, path: str) -> list[tuple[str, P.Perms]]:
        ppath, name = parent(path), path.rsplit("/", 1)[1]
        par = self.node(ppath)
        assert par is not None and par.children and name in par.children
        self.gen += 1
        removed: list[tuple[str, P.Perms]] = []
        for p, n in self._walk(path, par.children[name]):
            self._remember(p, n.snap())
            removed.append((p, n.perms))
        self._remember(ppath, par.snap())
        del par.children[name]
        par.gen = self.gen
        if self.on_change:
            self.on_change(path, ("del",))
        return removed

    def _walk(self, path: str, n: Node) -> Iterator[tuple[str, Node]]:
        yield path, n
        if n.children:
            for name, child in list(n.children.items()):
                yield from self._walk(_join(path, name), child)

    def walk(self) -> Iterator[tuple[str, Node]]:
        return self._walk("/", self.root)

    def owner_delta(self, owner: int, delta: int) -> None:
        self.counts[owner] = self.counts.get(owner, 0) + delta

    def owned(self, owner: int) -> int:
        return self.counts.get(owner, 0)

    def recount(self) -> None:
        self.counts = {}
        for path, n in self.walk():
            if path != "/":
                self.owner_delta(n.perms[0][0], 1)

    # transactions' view of history
    def state_at(self, path: str, start: int) -> Snap | None:
        for gen, before in self.history.get(path, ()):
            if gen > start:
                return before
        return self.get(path)

    def changed_since(self, path: str, start: int) -> bool:
        entries = self.history.get(path, [])
        return bool(entries) and entries[-1][0] > start

    def open_tx(self, serial: int) -> int:
        self.open_starts[serial] = self.gen
        return self.gen

    def close_tx(self, serial: int) -> None:
        self.open_starts.pop(serial, None)
        if not self.open_starts:
            self.history.clear()
        elif len(self.history) > 4096:
            oldest = min(self.open_starts.values())
            for path in list(self.history):
                kept = [e for e in self.history[path] if e[0] > oldest]
                if kept:
                    self.history[path] = kept
                else:
                    del self.history[path]


Op = tuple  # ("write", path, value, create_only) | ("rm", path) | ("perms", path, perms)


@dataclass
class Transaction(View):
    """A transaction's view: its own writes over the tree as it was when it started."""

    tree: Tree
    caller: Caller
    serial: int
    start: int = 0
    overlay: dict[str, Snap | None] = field(default_factory=dict)
    accessed: set[str] = field(default_factory=set)
    ops: list[Op] = field(default_factory=list)
    deltas: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.start = self.tree.open_tx(self.serial)

    def get(self, path: str) -> Snap | None:
        self.accessed.add(path)
        if path in self.overlay:
            return self.overlay[path]
        # The nearest ancestor this transaction changed decides whether `path` still exists.
        p = path
        while p != "/":
            child, p = p, parent(p)
            if p in self.overlay:
                anc = self.overlay[p]
                if anc is None or child.rsplit("/", 1)[1] not in anc[2]:
                    return None
                break
        return self.tree.state_at(path, self.start)

    def put(self, path: str, value: bytes, perms: P.Perms) -> None:
        old = self.get(path)
        if old is None:
            ppath = parent(path)
            par = self.get(ppath)
            assert par is not None
            self.overlay[ppath] = (par[0], par[1], par[2] | {path.rsplit("/", 1)[1]}, par[3])
            self.overlay[path] = (value, perms, frozenset(), 0)
        else:
            self.overlay[path] = (value, perms, old[2], old[3])

    def delete(self, path: str) -> list[tuple[str, P.Perms]]:
        removed: list[tuple[str, P.Perms]] = []
        stack = [path]
        while stack:
            p = stack.pop()
            snap = self.get(p)
            if snap is None:
                continue
            removed.append((p, snap[1]))
            stack.extend(_join(p, c) for c in sorted(snap[2], reverse=True))
        ppath = parent(path)
        par = self.get(ppath)
        assert par is not None
        self.overlay[ppath] = (par[0], par[1], par[2] - {path.rsplit("/", 1)[1]}, par[3])
        self.overlay[path] = None
        return removed

    def owner_delta(self, owner: int, delta: int) -> None:
        self.deltas[owner] = self.deltas.get(owner, 0) + delta

    def owned(self, owner: int) -> int:
        return self.tree.owned(owner) + self.deltas.get(owner, 0)

    def conflicts(self) -> bool:
        return any(self.tree.changed_since(p, self.start) for p in self.accessed)

    def over_quota(self, quota_nodes: int | None) -> bool:
        if quota_nodes is None or self.caller.privileged:
            return False
        return any(d > 0 and self.tree.owned(o) + d > quota_nodes
                   for o, d in self.deltas.items() if o != 0)

    def close(self) -> None:
        self.tree.close_tx(self.serial)


def apply_op(view: View, caller: Caller, op: Op, quota_nodes: int | None) -> list[str]:
    """Run one recorded operation; returns the paths whose watches fire."""
    kind, path = op[0], op[1]
    if kind == "write":
        return [path] if do_write(view, caller, path, op[2], quota_nodes, op[3]) else []
    if kind == "rm":
        removed = do_rm(view, caller, path)
        return [path] if removed else []
    if kind == "perms":
        do_set_perms(view, caller, path, op[2])
        return [path]
    raise AssertionError(kind)


def fired_path(changed: str, watch: str, removal: bool) -> str | None:
    """The path an event for a change at `changed` carries to a watch on `watch`, if any."""
    if is_under(changed, watch):
        return changed
    if removal and is_under(watch, changed):
        return watch   # removing an ancestor fires the watch with its own path
    return None
