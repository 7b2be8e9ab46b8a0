"""The xenstore server core: operations, permissions, transactions, watches, domains, quotas."""
from __future__ import annotations

import pytest

from dom0.xenstore.wire import Op
from dom0.xenstored.server import Listen, Quotas, Server, Unlisten
from tests.xenstore_core import Client


@pytest.fixture
def srv() -> Server:
    return Server(Quotas(nodes=20, watches=5, transactions=3))


def introduce(dom0: Client, domid: int) -> Client:
    dom0.ok(Op.INTRODUCE, str(domid), "1", "1")
    dom0.write(f"/local/domain/{domid}")
    dom0.set_perms(f"/local/domain/{domid}", f"n{domid}")
    return Client(dom0.server, domid)


# -- basic operations ------------------------------------------------------------------------

def test_write_creates_parents_with_empty_values(srv: Server) -> None:
    c = Client(srv)
    c.write("/a/b/c", "v")
    assert c.read("/a/b") == b"" and c.read("/a/b/c") == b"v"
    assert c.ls("/a") == ["b"] and c.ls("/") == ["a"]


def test_rm_is_recursive_and_enoent_only_without_parent(srv: Server) -> None:
    c = Client(srv)
    c.write("/a/b/c", "v")
    c.ok(Op.RM, "/a/b")
    assert c.err(Op.READ, "/a/b/c") == "ENOENT"
    c.ok(Op.RM, "/a/missing")
    assert c.err(Op.RM, "/x/y") == "ENOENT"
    assert c.err(Op.RM, "/") == "EINVAL"


def test_relative_paths_resolve_under_the_domain(srv: Server) -> None:
    dom0 = Client(srv)
    guest = introduce(dom0, 3)
    guest.write("data/x", "1")
    assert dom0.read("/local/domain/3/data/x") == b"1"
    assert guest.read("/local/domain/3/data/x") == b"1"


@pytest.mark.parametrize("path", ["/a//b", "/a/", "/a b", "", "/é",
                                  "/" + "x" * 3071, "r" * 2049])
def test_invalid_paths_are_einval(srv: Server, path: str) -> None:
    assert Client(srv).err(Op.READ, path) == "EINVAL"


@pytest.mark.parametrize("path", ["/a/@b", "/a@b/c", "r" * 2048, "/" + "x" * 3070])
def test_valid_edge_paths(srv: Server, path: str) -> None:
    c = Client(srv)
    c.write(path, "v")
    assert c.read(path) == b"v"


def test_value_size_limit_applies_to_everyone(srv: Server) -> None:
    c = Client(srv)
    c.write("/v", b"x" * 2048)
    assert c.err(Op.WRITE, "/v2", value=b"x" * 2049) == "E2BIG"
    assert c.err(Op.READ, "/v2") == "ENOENT"


def test_unknown_ops_and_malformed_payloads(srv: Server) -> None:
    c = Client(srv)
    for op in (99, 20, 15, 16, 65535):
        assert c.raw(op, b"x\0").payload == b"ENOSYS\0"
    assert c.raw(Op.READ, b"/a").payload == b"EINVAL\0"          # no NUL
    assert c.raw(Op.WRITE, b"/a").payload == b"EINVAL\0"         # no value
    assert c.raw(Op.READ, b"").payload == b"EINVAL\0"


def test_directory_part(srv: Server) -> None:
    c = Client(srv)
    for i in range(5):
        c.write(f"/d/c{i}")
    gen, *rest = c.ok(Op.DIRECTORY_PART, "/d", "0").split(b"\0")
    assert gen.isdigit() and rest == [b"c0", b"c1", b"c2", b"c3", b"c4", b"", b""]
    assert c.ok(Op.DIRECTORY_PART, "/d", "6").split(b"\0")[1:] == [b"c2", b"c3", b"c4", b"", b""]
    assert c.err(Op.DIRECTORY_PART, "/d", "999") == "EINVAL"
    for i in range(600):
        c.write(f"/big/child-number-{i:04d}")
    names: list[bytes] = []
    offset = 0
    while True:
        part = c.ok(Op.DIRECTORY_PART, "/big", str(offset))
        assert len(part) <= 4096
        items = part.split(b"\0")[1:]
        done = part.endswith(b"\0\0")
        chunk = [i for i in items if i]
        names += chunk
        offset += sum(len(i) + 1 for i in chunk)
        if done:
            break
    assert len(names) == 600 and names == sorted(names)
    assert c.err(Op.DIRECTORY, "/big") == "E2BIG", "a reply never exceeds 4096 bytes"


# -- permissions -----------------------------------------------------------------------------

@pytest.mark.parametrize(("perms", "who", "can_read", "can_write"), [
    (("n5",), 5, True, True),              # owner
    (("n5",), 6, False, False),            # unlisted, owner's letter n
    (("r5",), 6, True, False),             # unlisted, letter r applies to everyone
    (("n5", "r6"), 6, True, False),        # listed reader
    (("n5", "w6"), 6, False, True),        # listed writer
    (("n5", "b6"), 6, True, True),         # listed both
    (("b5", "n6"), 6, False, False),       # listed none beats the owner's letter
    (("n5", "r6", "w6"), 6, True, False),  # the first entry naming the caller applies
])
def test_permission_matrix(srv: Server, perms: tuple[str, ...], who: int, can_read: bool,
                           can_write: bool) -> None:
    dom0 = Client(srv)
    introduce(dom0, 5)
    other = introduce(dom0, 6) if who == 6 else Client(srv, 5)
    dom0.write("/node", "v")
    dom0.set_perms("/node", *perms)
    f = other.raw(Op.READ, b"/node\0")
    assert (f.op != Op.ERROR) == can_read, f.payload
    f = other.raw(Op.WRITE, b"/node\0w")
    assert (f.op != Op.ERROR) == can_write, f.payload
    assert dom0.read("/node") in (b"v", b"w")   # dom0 may always read


def test_enoent_vs_eacces_for_missing_nodes(srv: Server) -> None:
    dom0 = Client(srv)
    guest = introduce(dom0, 5)
    dom0.write("/secret/x", "1")
    dom0.set_perms("/secret", "n0")
    assert guest.err(Op.READ, "/secret/missing") == "EACCES"
    dom0.write("/open/x", "1")
    dom0.set_perms("/open", "r0")
    assert guest.err(Op.READ, "/open/missing") == "ENOENT"


def test_new_nodes_inherit_perms_owned_by_creator(srv: Server) -> None:
    dom0 = Client(srv)
    guest = introduce(dom0, 5)
    dom0.set_perms("/local/domain/5", "n5", "r7")
    guest.write("data/x", "1")
    assert dom0.ok(Op.GET_PERMS, "/local/domain/5/data/x") == b"n5\0r7\0"
    dom0.write("/local/domain/5/by-dom0", "1")
    assert dom0.ok(Op.GET_PERMS, "/local/domain/5/by-dom0") == b"n5\0r7\0"


def test_only_owner_sets_perms_only_dom0_changes_owner(srv: Server) -> None:
    dom0 = Client(srv)
    guest = introduce(dom0, 5)
    other = introduce(dom0, 6)
    guest.write("data/x", "1")
    guest.set_perms("data/x", "n5", "r6")
    assert other.err(Op.SET_PERMS, "/local/domain/5/data/x", "n6") == "EACCES"
    assert guest.err(Op.SET_PERMS, "data/x", "n6") == "EPERM"
    dom0.set_perms("/local/domain/5/data/x", "n6")
    assert guest.err(Op.READ, "data/x") == "EACCES"


def test_set_target_gives_owner_rights(srv: Server) -> None:
    dom0 = Client(srv)
    introduce(dom0, 5)
    stub = introduce(dom0, 6)
    dom0.write("/local/domain/5/x", "1")
    dom0.set_perms("/local/domain/5/x", "n5")
    assert stub.err(Op.READ, "/local/domain/5/x") == "EACCES"
    dom0.ok(Op.SET_TARGET, "6", "5")
    assert stub.read("/local/domain/5/x") == b"1"


def test_domain_ops_are_privileged(srv: Server) -> None:
    guest = introduce(Client(srv), 5)
    for op, args in ((Op.INTRODUCE, ("7", "1", "1")), (Op.RELEASE, ("5",)),
                     (Op.SET_TARGET, ("5", "5")), (Op.RESUME, ("5",))):
        assert guest.err(op, *args) == "EACCES"


# -- watches ---------------------------------------------------------------------------------

def test_watch_fires_at_once_then_on_changes_below(srv: Server) -> None:
    a, b = Client(srv), Client(srv)
    a.ok(Op.WATCH, "/w", "tok")
    assert a.take_events() == [("/w", b"tok")]
    b.write("/w/x/y", "1")
    b.write("/other", "1")
    assert a.take_events() == [("/w/x/y", b"tok")]
    assert a.err(Op.WATCH, "/w", "tok") == "EEXIST"
    a.ok(Op.UNWATCH, "/w", "tok")
    b.write("/w/z", "1")
    assert a.take_events() == []
    assert a.err(Op.UNWATCH, "/w", "tok") == "ENOENT"


def test_removing_an_ancestor_fires_the_watch_path(srv: Server) -> None:
    a = Client(srv)
    a.write("/p/q/r", "1")
    a.ok(Op.WATCH, "/p/q/r", "t")
    a.take_events()
    a.write("/p", "new")          # a write to an ancestor does not concern /p/q/r
    assert a.take_events() == []
    a.ok(Op.RM, "/p")
    assert a.take_events() == [("/p/q/r", b"t")]


def test_relative_watch_reports_relative_paths(srv: Server) -> None:
    dom0 = Client(srv)
    guest = introduce(dom0, 5)
    guest.ok(Op.WATCH, "device", "d")
    assert guest.take_events() == [("device", b"d")]
    dom0.write("/local/domain/5/device/vif/0", "1")
    assert guest.take_events() == [("device/vif/0", b"d")]


def test_watch_events_respect_read_permission(srv: Server) -> None:
    dom0 = Client(srv)
    guest = introduce(dom0, 5)
    dom0.write("/shared", "")
    dom0.set_perms("/shared", "r0")
    guest.ok(Op.WATCH, "/shared", "t")
    guest.take_events()
    dom0.write("/shared/public", "1")
    assert guest.take_events() == [("/shared/public", b"t")]
    dom0.write("/shared/hidden", "1")
    dom0.set_perms("/shared/hidden", "n0")
    guest.take_events()
    dom0.write("/shared/hidden", "2")
    assert guest.take_events() == [], "no event about a node the watcher may not read"


def test_special_watches(srv: Server) -> None:
    dom0 = Client(srv)
    guest = introduce(dom0, 5)
    dom0.ok(Op.WATCH, "@releaseDomain", "r")
    dom0.ok(Op.WATCH, "@introduceDomain", "i")
    guest.ok(Op.WATCH, "@introduceDomain", "gi")
    dom0.take_events()
    guest.take_events()
    dom0.ok(Op.INTRODUCE, "7", "1", "1")
    assert dom0.take_events() == [("@introduceDomain", b"i")]
    assert guest.take_events() == [], "a domain without read on the special node sees nothing"
    dom0.set_perms("@introduceDomain", "n0", "r5")
    dom0.ok(Op.INTRODUCE, "8", "1", "1")
    assert guest.take_events() == [("@introduceDomain", b"gi")]
    dom0.ok(Op.RELEASE, "7")
    assert ("@releaseDomain", b"r") in dom0.take_events()


def test_watch_quota_for_domains_not_dom0(srv: Server) -> None:
    dom0 = Client(srv)
    guest = introduce(dom0, 5)
    for i in range(5):
        guest.ok(Op.WATCH, f"w{i}", "t")
    assert guest.err(Op.WATCH, "w9", "t") == "E2BIG"
    for i in range(10):
        dom0.ok(Op.WATCH, f"/w{i}", "t")
    guest.ok(Op.RESET_WATCHES)
    guest.ok(Op.WATCH, "w9", "t")


# -- transactions ----------------------------------------------------------------------------

def test_transaction_sees_its_snapshot_and_own_writes(srv: Server) -> None:
    a, b = Client(srv), Client(srv)
    a.write("/t/x", "old")
    tx = a.start()
    b.write("/t/x", "new")
    b.write("/t/y", "1")
    assert a.read("/t/x", tx) == b"old"
    assert a.ls("/t", tx) == ["x"]
    a.write("/t/z", "mine", tx)
    assert a.ls("/t", tx) == ["x", "z"] and a.read("/t/z", tx) == b"mine"
    assert a.err(Op.READ, "/t/z") == "ENOENT"
    assert a.end(tx) == "EAGAIN"
    assert a.err(Op.READ, "/t/z") == "ENOENT", "a conflicting commit changes nothing"


def test_unrelated_writes_do_not_conflict_and_events_fire_at_commit(srv: Server) -> None:
    a, b, w = Client(srv), Client(srv), Client(srv)
    a.write("/t")   # creating /t inside the transaction would touch the root, as /elsewhere does
    w.ok(Op.WATCH, "/t", "t")
    w.take_events()
    tx = a.start()
    a.write("/t/a", "1", tx)
    b.write("/elsewhere", "1")
    assert w.take_events() == []
    assert a.end(tx) is None
    assert w.take_events() == [("/t/a", b"t")]
    assert a.read("/t/a") == b"1"


def test_listing_conflicts_with_a_new_child(srv: Server) -> None:
    a, b = Client(srv), Client(srv)
    a.write("/d/x")
    tx = a.start()
    a.ls("/d", tx)
    b.write("/d/y")
    a.write("/other", "1", tx)
    assert a.end(tx) == "EAGAIN"


def test_read_of_missing_conflicts_with_its_creation(srv: Server) -> None:
    a, b = Client(srv), Client(srv)
    tx = a.start()
    assert a.err(Op.READ, "/later", tx=tx) == "ENOENT"
    b.write("/later", "1")
    a.write("/z", "1", tx)
    assert a.end(tx) == "EAGAIN"


def test_rm_inside_a_transaction(srv: Server) -> None:
    a = Client(srv)
    a.write("/r/x/y", "1")
    tx = a.start()
    a.ok(Op.RM, "/r/x", tx=tx)
    assert a.err(Op.READ, "/r/x/y", tx=tx) == "ENOENT"
    a.write("/r/x/z", "2", tx)
    assert a.ls("/r/x", tx) == ["z"]
    assert a.read("/r/x/y") == b"1"
    assert a.end(tx) is None
    assert a.ls("/r/x") == ["z"]


def test_abort_and_bad_transaction_ids(srv: Server) -> None:
    a = Client(srv)
    tx = a.start()
    a.write("/ab", "1", tx)
    assert a.end(tx, commit=False) is None
    assert a.err(Op.READ, "/ab") == "ENOENT"
    assert a.end(tx) == "EIO"
    assert a.raw(Op.TRANSACTION_END, b"T\0", 0).payload == b"ENOENT\0"
    assert a.raw(Op.READ, b"/x\0", 4242).payload == b"EIO\0"
    tx = a.start()
    assert a.raw(Op.TRANSACTION_END, b"X\0", tx).payload == b"EINVAL\0"


def test_transaction_quota_for_domains(srv: Server) -> None:
    guest = introduce(Client(srv), 5)
    for _ in range(3):
        guest.start()
    assert guest.err(Op.TRANSACTION_START, "") == "ENOSPC"


def test_history_is_dropped_when_no_transaction_is_open(srv: Server) -> None:
    a = Client(srv)
    tx = a.start()
    for i in range(50):
        a.write(f"/h/{i}", "x")
    assert srv.tree.history
    a.end(tx, commit=False)
    assert not srv.tree.history


# -- domains and quotas ----------------------------------------------------------------------

def test_introduce_release_commands_and_queries(srv: Server) -> None:
    dom0 = Client(srv)
    dom0.ok(Op.INTRODUCE, "5", "100", "3")
    assert srv.commands == [Listen(5)]
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, "5") == b"T\0"
    assert dom0.ok(Op.GET_DOMAIN_PATH, "5") == b"/local/domain/5\0"
    assert dom0.err(Op.GET_DOMAIN_PATH, "x") == "EINVAL"
    assert dom0.err(Op.INTRODUCE, "0", "1", "1") == "EINVAL"
    dom0.ok(Op.RELEASE, "5")
    assert srv.commands[-1] == Unlisten(5)
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, "5") == b"F\0"
    assert dom0.err(Op.RELEASE, "5") == "EINVAL"


def test_release_removes_owned_nodes_and_revokes_entries(srv: Server) -> None:
    dom0 = Client(srv)
    guest = introduce(dom0, 5)
    guest.write("data/x", "1")
    dom0.write("/shared/y", "1")
    dom0.set_perms("/shared/y", "n0", "r5")
    conn = guest.conn
    dom0.ok(Op.RELEASE, "5")
    assert conn.id not in srv.conns, "the domain's connections are closed"
    assert srv.dropped == [conn.id], "and the shell is told to hang them up"
    assert dom0.err(Op.READ, "/local/domain/5") == "ENOENT"
    assert dom0.ok(Op.GET_PERMS, "/shared/y") == b"n0\0"
    assert srv.tree.owned(5) == 0
    # A new domain with the same id inherits nothing.
    newcomer = introduce(dom0, 5)
    assert newcomer.err(Op.READ, "/shared/y") == "EACCES"


def test_node_quota_for_domains(srv: Server) -> None:
    dom0 = Client(srv)
    guest = introduce(dom0, 5)
    guest.write("data")
    for i in range(18):   # with its home and data/, the domain now owns 20 nodes
        guest.write(f"data/n{i}")
    assert srv.tree.owned(5) == 20
    assert guest.err(Op.WRITE, "data/one-too-many", value=b"") == "ENOSPC"
    assert guest.err(Op.WRITE, "data/a/b/c", value=b"") == "ENOSPC", "no partial write"
    assert guest.err(Op.READ, "data/a") == "ENOENT"
    guest.ok(Op.RM, "data/n0")
    guest.write("data/fits")
    for i in range(50):
        dom0.write(f"/dom0/{i}")


def test_node_quota_is_checked_at_commit(srv: Server) -> None:
    dom0 = Client(srv)
    guest = introduce(dom0, 5)
    guest.write("data")
    tx = guest.start()
    for i in range(10):
        guest.write(f"data/t{i}", "", tx)
    for i in range(8):
        guest.write(f"other/d{i}")   # outside what the transaction touched: no conflict
    assert guest.end(tx) == "ENOSPC"
    assert guest.ls("data") == []
