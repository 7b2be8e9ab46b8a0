"""Debian's xenstore-utils (libxenstore) and pyxs against Hyperwall's daemon, from dom0's
privileged socket and from a domain's own socket — including the permission matrix.

Only Hyperwall's daemon is driven here: the matrix needs unprivileged domain sockets,
which oxenstored without a hypervisor does not have.
"""
from __future__ import annotations

import os
import select
import shutil
import subprocess
from pathlib import Path

import pytest

from dom0.xenstore.client import Perm, XenStore, XsError
from tests.conftest import Daemon

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("xenstore-write") is None,
                       reason="needs Debian's xenstore-utils (make install-deps)"),
]

TIMEOUT = 10


def tool(sock: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run one xenstore-* tool against the daemon behind `sock`."""
    return subprocess.run(argv, env={**os.environ, "XENSTORED_PATH": str(sock)},
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)


def domain_socket(daemon: Daemon, domid: int) -> Path:
    return daemon.rundir / "domain" / str(domid) / "socket"


@pytest.fixture
def dom0(hw_xenstored: Daemon) -> XenStore:
    with XenStore(("unix", str(hw_xenstored.socket))) as xs:
        yield xs


# ---- dom0 --------------------------------------------------------------------------------

def test_tools_from_dom0(hw_xenstored: Daemon, dom0: XenStore) -> None:
    sock = hw_xenstored.socket
    assert tool(sock, "xenstore-write", "/c/a", "1", "/c/b/x", "two words").returncode == 0
    assert dom0.read("/c/b/x") == b"two words"
    assert tool(sock, "xenstore-read", "/c/a").stdout == "1\n"
    assert tool(sock, "xenstore-list", "/c").stdout.split() == ["a", "b"]
    assert tool(sock, "xenstore-ls", "/c").stdout.splitlines() == \
        ['a = "1"', 'b = ""', ' x = "two words"']
    assert tool(sock, "xenstore-exists", "/c/a").returncode == 0
    assert tool(sock, "xenstore-exists", "/c/none").returncode != 0
    assert tool(sock, "xenstore-chmod", "/c/a", "n0", "r5").returncode == 0
    assert dom0.get_perms("/c/a") == [Perm(0, "n"), Perm(5, "r")]
    assert "(n0,r5)" in tool(sock, "xenstore-ls", "-p", "/c").stdout
    assert tool(sock, "xenstore-chmod", "-r", "/c", "b7").returncode == 0
    assert dom0.get_perms("/c/b/x") == [Perm(7, "b")]
    assert tool(sock, "xenstore-rm", "/c/b").returncode == 0
    assert not dom0.exists("/c/b")
    missing = tool(sock, "xenstore-read", "/c/none")
    assert missing.returncode != 0 and "couldn't read" in missing.stderr


def watch_lines(sock: Path, path: str, count: int, then: list[tuple[str, str]],
                xs: XenStore) -> list[str]:
    """Run `xenstore-watch -n count path`; once its first event (the initial firing) is
    out, make the writes in `then` through `xs`; return every line it printed."""
    proc = subprocess.Popen(["xenstore-watch", "-n", str(count), path],
                            env={**os.environ, "XENSTORED_PATH": str(sock)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        assert ready, "xenstore-watch printed nothing"
        first = proc.stdout.readline().rstrip("\n")
        for p, value in then:
            xs.write(p, value)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    return [first, *out.splitlines()]


def test_watch_from_dom0(hw_xenstored: Daemon, dom0: XenStore) -> None:
    dom0.write("/w/x", "0")
    lines = watch_lines(hw_xenstored.socket, "/w", 3, [("/w/x", "1"), ("/w/y/z", "2")], dom0)
    assert lines == ["/w", "/w/x", "/w/y/z"]


# ---- domains -----------------------------------------------------------------------------

ROLES = {"owner": 1, "reader": 2, "writer": 3, "both": 4, "other": 5}


@pytest.fixture
def domains(hw_xenstored: Daemon, dom0: XenStore) -> Daemon:
    for domid in ROLES.values():
        dom0.introduce(domid)
    return hw_xenstored


def make_node(dom0: XenStore, path: str, default: str) -> None:
    """A node owned by domain 1 that lists 2 as reader, 3 as writer, 4 as both; `default`
    is what everyone else (domain 5) gets."""
    dom0.write(path, "orig")
    dom0.set_perms(path, [Perm(1, default), Perm(2, "r"), Perm(3, "w"), Perm(4, "b")])


def access(role: str, default: str) -> str:
    return {"dom0": "b", "owner": "b", "reader": "r", "writer": "w", "both": "b",
            "other": default}[role]


def caller_socket(daemon: Daemon, role: str) -> Path:
    return daemon.socket if role == "dom0" else domain_socket(daemon, ROLES[role])


@pytest.mark.parametrize("default", ["n", "r", "w"])
@pytest.mark.parametrize("role", ["dom0", *ROLES])
def test_permission_matrix(domains: Daemon, dom0: XenStore, role: str, default: str) -> None:
    sock = caller_socket(domains, role)
    letter = access(role, default)
    may_read, may_write = letter in "rb", letter in "wb"
    may_chmod = role in ("dom0", "owner")

    make_node(dom0, "/m/node", default)
    dom0.write("/m/node/child", "c")          # inherits the node's permissions

    read = tool(sock, "xenstore-read", "/m/node")
    assert (read.returncode == 0) is may_read, read.stderr
    if may_read:
        assert read.stdout == "orig\n"

    listed = tool(sock, "xenstore-list", "/m/node")
    assert (listed.returncode == 0) is may_read, listed.stderr
    if may_read:
        assert listed.stdout.split() == ["child"]

    wrote = tool(sock, "xenstore-write", "/m/node", "new")
    assert (wrote.returncode == 0) is may_write, wrote.stderr
    assert dom0.read("/m/node") == (b"new" if may_write else b"orig")

    chmod = tool(sock, "xenstore-chmod", "/m/node", f"{default}1", "r2", "w3", "b4", "r5")
    assert (chmod.returncode == 0) is may_chmod, chmod.stderr
    assert (Perm(5, "r") in dom0.get_perms("/m/node")) is may_chmod

    removed = tool(sock, "xenstore-rm", "/m/node")
    assert (removed.returncode == 0) is may_write, removed.stderr
    assert dom0.exists("/m/node") is not may_write


def test_only_dom0_may_change_the_owner(domains: Daemon, dom0: XenStore) -> None:
    make_node(dom0, "/m/node", "n")
    owner = domain_socket(domains, 1)
    assert tool(owner, "xenstore-chmod", "/m/node", "n2").returncode != 0
    assert dom0.get_perms("/m/node")[0] == Perm(1, "n")
    assert tool(domains.socket, "xenstore-chmod", "/m/node", "n2").returncode == 0
    assert dom0.get_perms("/m/node")[0] == Perm(2, "n")


def test_relative_paths_and_home_from_a_domain(domains: Daemon, dom0: XenStore) -> None:
    dom0.mkdir("/local/domain/1")
    dom0.set_perms("/local/domain/1", [Perm(1, "n")])
    sock = domain_socket(domains, 1)
    assert tool(sock, "xenstore-write", "data/x", "1").returncode == 0
    assert dom0.read("/local/domain/1/data/x") == b"1"
    assert dom0.get_perms("/local/domain/1/data/x")[0] == Perm(1, "n")
    assert tool(sock, "xenstore-read", "data/x").stdout == "1\n"
    assert tool(sock, "xenstore-ls", "data").stdout.splitlines() == ['x = "1"']
    other = domain_socket(domains, 5)
    denied = tool(other, "xenstore-read", "/local/domain/1/data/x")
    assert denied.returncode != 0 and "couldn't read" in denied.stderr
    # Domain 5 may not even learn whether a node exists under a home it cannot read.
    assert tool(other, "xenstore-exists", "/local/domain/1/data/none").returncode != 0


def test_privileged_operations_are_refused_to_domains(domains: Daemon) -> None:
    with XenStore(("unix", str(domain_socket(domains, 1)))) as guest:
        for call in (lambda: guest.introduce(9), lambda: guest.release(2),
                     lambda: guest.set_target(2, 3)):
            with pytest.raises(XsError) as e:
                call()
            assert e.value.name == "EACCES"


def test_watch_from_a_domain(domains: Daemon, dom0: XenStore) -> None:
    make_node(dom0, "/m/node", "n")
    lines = watch_lines(domain_socket(domains, 2), "/m/node", 2, [("/m/node/k", "1")], dom0)
    assert lines == ["/m/node", "/m/node/k"]


def test_pyxs_client_from_a_domain(domains: Daemon, dom0: XenStore) -> None:
    make_node(dom0, "/m/node", "n")
    with XenStore(("unix", str(domain_socket(domains, 4)))) as both:
        assert both.read("/m/node") == b"orig"
        both.write("/m/node/made", "by 4")
        assert both.ls("/m/node") == ["made"]
        # A node a domain creates is its own, whatever its parent's owner.
        assert both.get_perms("/m/node/made")[0] == Perm(4, "n")
        with pytest.raises(XsError) as e:
            both.set_perms("/m/node", [Perm(4, "b")])
        assert e.value.name == "EACCES"
    with XenStore(("unix", str(domain_socket(domains, 5)))) as other:
        with pytest.raises(XsError) as e:
            other.read("/m/node")
        assert e.value.name == "EACCES" and e.value.path == "/m/node"


def test_released_domain_loses_its_socket(domains: Daemon, dom0: XenStore) -> None:
    make_node(dom0, "/m/node", "n")
    sock = domain_socket(domains, 2)
    assert tool(sock, "xenstore-exists", "/m/node").returncode == 0
    dom0.release(2)
    assert not sock.exists()
    assert tool(sock, "xenstore-exists", "/m/node").returncode != 0
