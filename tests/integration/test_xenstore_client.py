"""The client layer against both daemons: Hyperwall's and Xen's real oxenstored.

Cases that need unprivileged domain sockets run only against Hyperwall's daemon: oxenstored
here serves privileged socket clients only (it has no guest rings without a hypervisor).
"""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from dom0.xenstore.client import AsyncXenStore, NoXenStore, Perm, XenStore, XsError, locate
from tests.conftest import Daemon


@pytest.fixture(params=["hyperwall", "oxenstored"])
def daemon(request: pytest.FixtureRequest) -> Daemon:
    name = "hw_xenstored" if request.param == "hyperwall" else "oxenstored"
    return request.getfixturevalue(name)


@pytest.fixture
def xs(daemon: Daemon) -> XenStore:
    with XenStore(("unix", str(daemon.socket))) as client:
        yield client


def test_locate_prefers_xenstored_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XENSTORED_PATH", "/explicit/socket")
    assert locate() == ("unix", "/explicit/socket")
    monkeypatch.delenv("XENSTORED_PATH")
    (tmp_path / "socket").touch()
    monkeypatch.setenv("XENSTORED_RUNDIR", str(tmp_path))
    assert locate() == ("unix", str(tmp_path / "socket"))
    monkeypatch.setenv("XENSTORED_RUNDIR", str(tmp_path / "none"))
    if not any(Path(p).exists() for p in ("/dev/xen/xenbus", "/proc/xen/xenbus")):
        with pytest.raises(NoXenStore, match="is hyperwall-xenstored running"):
            locate()


def test_connect_failure_names_the_socket(tmp_path: Path) -> None:
    with pytest.raises(XsError, match=str(tmp_path / "nothing")):
        XenStore(("unix", str(tmp_path / "nothing"))).connect()


def test_every_node_operation(xs: XenStore) -> None:
    xs.write("/t/a/b", "v")
    assert xs.read("/t/a/b") == b"v"
    assert xs.read("/t/a") == b""
    xs.write("/t/nul", b"ends with nul\0")
    assert xs.read("/t/nul") == b"ends with nul\0", "values are returned whole"
    xs.mkdir("/t/dir")
    assert sorted(xs.ls("/t")) == ["a", "dir", "nul"]
    assert xs.exists("/t/dir") and not xs.exists("/t/none")
    xs.set_perms("/t/a/b", [Perm(0, "n"), Perm(5, "r"), Perm(6, "b")])
    assert xs.get_perms("/t/a/b") == [Perm(0, "n"), Perm(5, "r"), Perm(6, "b")]
    xs.rm("/t/a")
    assert not xs.exists("/t/a/b")
    xs.rm("/t/a")                      # missing is fine
    with pytest.raises(XsError) as e:
        xs.rm("/t/a/b", missing_ok=False)
    assert e.value.name == "ENOENT" and e.value.path == "/t/a/b"
    assert xs.get_domain_path(7) == "/local/domain/7"
    assert xs.is_domain_introduced(7) is False
    xs.reset_watches()


@pytest.mark.parametrize("path", ["/bad//path", "/trailing/", "/sp ace"])
def test_errors_name_errno_and_path(xs: XenStore, path: str) -> None:
    with pytest.raises(XsError) as e:
        xs.read(path)
    assert e.value.name == "EINVAL" and e.value.path == path


def test_transaction_retries_a_real_conflict(xs: XenStore, daemon: Daemon) -> None:
    xs.write("/counter", "0")
    other = XenStore(("unix", str(daemon.socket))).connect()
    attempts = []

    def bump(tx: XenStore) -> int:
        value = int(tx.read("/counter"))
        attempts.append(value)
        if len(attempts) == 1:
            other.write("/counter", "10")   # a concurrent writer: this attempt must retry
        tx.write("/counter", str(value + 1))
        return value + 1

    try:
        assert xs.transaction(bump) == 11
    finally:
        other.close()
    assert attempts == [0, 10]
    assert xs.read("/counter") == b"11"


def test_transaction_gives_up_after_bounded_attempts(xs: XenStore, daemon: Daemon) -> None:
    xs.write("/hot", "0")
    other = XenStore(("unix", str(daemon.socket))).connect()

    writes = iter(range(100))

    def always_conflict(tx: XenStore) -> None:
        tx.read("/hot")
        # A different value each time: oxenstored ignores a rewrite of the same value.
        other.write("/hot", f"x{next(writes)}")
        tx.write("/hot", "mine")

    try:
        with pytest.raises(XsError, match="kept conflicting after 3 attempts"):
            xs.transaction(always_conflict, attempts=3)
    finally:
        other.close()
    assert xs.read("/hot") == b"x2"


def test_an_exception_aborts_the_transaction(xs: XenStore) -> None:
    def fail(tx: XenStore) -> None:
        tx.write("/aborted", "1")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        xs.transaction(fail)
    assert not xs.exists("/aborted")


async def test_write_if_exists_does_not_bring_back_a_removed_directory(
        daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    axs = await AsyncXenStore.connect(("unix", str(daemon.socket)))
    other = XenStore(("unix", str(daemon.socket))).connect()
    dev = "/d/device/vif/0"
    try:
        await axs.write(f"{dev}/state", "4")
        assert await axs.write_if_exists(dev, f"{dev}/state", "5")
        assert await axs.read(f"{dev}/state") == b"5"
        # Removed between the transaction's look at it and its commit (what a toolstack's
        # removal racing an agent's state write does): the commit conflicts, the retry
        # finds it gone, and nothing is written.
        seen: list[bool] = []
        exists = XenStore.exists

        def removed_after_the_first_look(self: XenStore, path: str) -> bool:
            seen.append(exists(self, path))
            if len(seen) == 1:
                other.rm(dev)
            return seen[-1]

        monkeypatch.setattr(XenStore, "exists", removed_after_the_first_look)
        assert not await axs.write_if_exists(dev, f"{dev}/state", "6")
        assert seen == [True, False]
        assert not other.exists(dev) and other.exists("/d/device/vif")
        assert not await axs.write_if_exists(dev, f"{dev}/state", "6")
        assert not other.exists(dev)
    finally:
        other.close()
        await axs.close()


async def test_watch_events_arrive_in_asyncio(daemon: Daemon) -> None:
    axs = await AsyncXenStore.connect(("unix", str(daemon.socket)))
    writer = XenStore(("unix", str(daemon.socket))).connect()
    try:
        seen: list[str] = []
        async with asyncio.timeout(10):
            async for path in axs.watch("/w"):
                seen.append(path)
                if len(seen) == 1:
                    await asyncio.to_thread(writer.write, "/w/a", "1")
                if path == "/w/a":
                    break
        assert seen[0] == "/w" and seen[-1] == "/w/a"
        threading.Thread(target=writer.write, args=("/w2/x", "1")).start()
        value = await axs.wait_value("/w2/x", lambda v: v == b"1", timeout=10)
        assert value == b"1"
        assert await axs.wait_value("/never", lambda v: v is not None, timeout=0.3) is None
    finally:
        writer.close()
        await axs.close()


async def test_async_helpers(daemon: Daemon) -> None:
    from dom0.layout import Node
    axs = await AsyncXenStore.connect(("unix", str(daemon.socket)))
    try:
        await axs.write_nodes([Node("/n", None, ("n0", "r3")), Node("/n/k", "v"),
                               Node("/n/p", "w", ("n3",))])
        assert await axs.read("/n/k") == b"v"
        assert await axs.read("/n/missing") is None
        assert await axs.ls("/n") == ["k", "p"]
        assert await axs.ls("/missing") == []
        await axs.rm("/n")
        assert await axs.read("/n/k") is None
    finally:
        await axs.close()


def test_domain_socket_acts_as_the_domain(hw_xenstored: Daemon) -> None:
    with XenStore(("unix", str(hw_xenstored.socket))) as dom0:
        dom0.introduce(5)
        dom0.mkdir("/local/domain/5")
        dom0.set_perms("/local/domain/5", ["n5"])
        dom0.write("/local/domain/5/x", "1")   # inherits: owned by 5
        sock = hw_xenstored.rundir / "domain" / "5" / "socket"
        with XenStore(("unix", str(sock))) as guest:
            assert guest.read("x") == b"1"
            guest.write("data/y", "2")
            with pytest.raises(XsError) as e:
                guest.introduce(6)
            assert e.value.name == "EACCES"
            with pytest.raises(XsError) as e:
                guest.read("/local/domain/0")
            assert e.value.name in ("EACCES", "ENOENT")
        assert dom0.get_perms("/local/domain/5/data/y")[0] == Perm(5, "n")


def test_directory_part_pages_a_big_directory(hw_xenstored: Daemon) -> None:
    """Hyperwall only: oxenstored 4.17 lacks DIRECTORY_PART (pyxs lacks it too; the client
    layer adds it)."""
    names = [f"child-{i:04d}-{'x' * 12}" for i in range(300)]   # ~6.3 kB: two parts
    with XenStore(("unix", str(hw_xenstored.socket))) as xs:
        for name in names:
            xs.write(f"/big/{name}", "")
        seen: list[str] = []
        offset, complete, generations = 0, False, set()
        while not complete:
            gen, part, complete = xs.directory_part("/big", offset)
            generations.add(gen)
            seen += part
            offset += sum(len(c) + 1 for c in part)
        assert seen == sorted(names) and len(generations) == 1
        assert xs.directory_part("/big", 0)[2] is False
        with pytest.raises(XsError) as e:
            xs.directory_part("/none", 0)
        assert e.value.name == "ENOENT" and e.value.path == "/none"
