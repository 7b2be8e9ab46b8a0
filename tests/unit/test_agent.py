"""The agent's logic: a guest and sys-sec walk a vif to Connected and back over a shared tree.

The tree here is an in-memory stand-in with xenstore's watch semantics (initial firing,
subtree changes); the same agents run against the real daemon in the integration tests.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dom0.config import DomainSpec
from dom0.layout import domain_nodes, vif_addressing, vif_nodes
from domains.agent import Agent

GUEST, SYS = 5, 1


class Tree:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.watchers: list[tuple[str, asyncio.Queue[str]]] = []

    def set(self, path: str, value: str) -> None:
        self.data[path] = value.encode()
        for prefix, q in self.watchers:
            if path == prefix or path.startswith(prefix + "/"):
                q.put_nowait(path)


class View:
    """One domain's view: relative paths resolve under its /local/domain/<id>."""

    def __init__(self, tree: Tree, domid: int) -> None:
        self.tree, self.base = tree, f"/local/domain/{domid}"
        self.writes: list[tuple[str, str]] = []

    def abs(self, path: str) -> str:
        return path if path.startswith("/") else f"{self.base}/{path}"

    async def read(self, path: str) -> bytes | None:
        return self.tree.data.get(self.abs(path))

    async def write(self, path: str, value: str) -> None:
        self.writes.append((self.abs(path), value))
        self.tree.set(self.abs(path), value)

    async def ls(self, path: str) -> list[str]:
        prefix = self.abs(path) + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.tree.data
                       if p.startswith(prefix)})

    async def watch(self, path: str) -> AsyncIterator[str]:
        q: asyncio.Queue[str] = asyncio.Queue()
        self.tree.watchers.append((self.abs(path), q))
        q.put_nowait(self.abs(path))  # xenstore fires every watch once at once
        while True:
            yield await q.get()


class RecordingNet:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def frontend_up(self, devid: int, ip: str, gateway: str, mac: str) -> None:
        self.calls.append(("frontend_up", devid, ip, gateway, mac))

    async def frontend_down(self, devid: int) -> None:
        self.calls.append(("frontend_down", devid))

    async def backend_up(self, domid: int, devid: int, ip: str, gateway: str) -> None:
        self.calls.append(("backend_up", domid, devid, ip, gateway))

    async def backend_down(self, domid: int, devid: int) -> None:
        self.calls.append(("backend_down", domid, devid))

    async def enable_forwarding(self) -> None:
        self.calls.append(("forwarding",))


async def wait_for(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0)


def build_tree() -> Tree:
    tree = Tree()
    for domid, name, kind in ((SYS, "sys-sec", "sys-sec"), (GUEST, "work", "app")):
        for node in domain_nodes(domid, f"uuid-{domid}", DomainSpec(name=name, kind=kind)):
            if node.value is not None:
                tree.set(node.path, node.value)
    return tree


@pytest.mark.parametrize("vif_first", [True, False])
async def test_vif_reaches_connected_and_configures_both_ends(vif_first: bool) -> None:
    tree = build_tree()

    def add_vif() -> None:
        for n in vif_nodes(GUEST, SYS, 0, "internet", name="guest"):
            if n.value is not None:
                tree.set(n.path, n.value)

    if vif_first:
        add_vif()
    fe_net, be_net = RecordingNet(), RecordingNet()
    guest, sys_sec = Agent(View(tree, GUEST), fe_net), Agent(View(tree, SYS), be_net)
    tasks = [asyncio.ensure_future(guest.run()), asyncio.ensure_future(sys_sec.run())]
    if not vif_first:
        await asyncio.sleep(0)
        add_vif()
    fe_state = f"/local/domain/{GUEST}/device/vif/0/state"
    be_state = f"/local/domain/{SYS}/backend/vif/{GUEST}/0/state"
    await wait_for(lambda: tree.data.get(fe_state) == b"4" and tree.data.get(be_state) == b"4")
    addr = vif_addressing(GUEST, 0)
    assert ("frontend_up", 0, addr.ip, addr.gateway, addr.mac) in fe_net.calls
    assert ("backend_up", GUEST, 0, addr.ip, addr.gateway) in be_net.calls
    assert ("forwarding",) in be_net.calls

    tree.set(f"/local/domain/{GUEST}/control/shutdown", "poweroff")
    assert await asyncio.wait_for(tasks[0], 5) == "poweroff"
    assert tree.data[f"/local/domain/{GUEST}/control/shutdown"] == b""
    assert tree.data[fe_state] == b"6"
    await wait_for(lambda: ("backend_down", GUEST, 0) in be_net.calls)
    tasks[1].cancel()


async def test_garbage_from_the_guest_does_not_connect_sys_sec() -> None:
    tree = build_tree()
    for n in vif_nodes(GUEST, SYS, 0, "internet", name="guest"):
        if n.value is not None:
            tree.set(n.path, n.value)
    be_net = RecordingNet()
    task = asyncio.ensure_future(Agent(View(tree, SYS), be_net).run())
    be_state = f"/local/domain/{SYS}/backend/vif/{GUEST}/0/state"
    await wait_for(lambda: tree.data.get(be_state) == b"2")
    tree.set(f"/local/domain/{GUEST}/device/vif/0/state", "connected; rm -rf /")
    tree.set(f"/local/domain/{GUEST}/device/vif/0/state", "99")
    for _ in range(50):
        await asyncio.sleep(0)
    assert tree.data[be_state] == b"2"
    assert not any(c[0] == "backend_up" for c in be_net.calls)
    task.cancel()


async def test_unknown_shutdown_request_is_ignored() -> None:
    tree = build_tree()
    agent = Agent(View(tree, GUEST), RecordingNet())
    task = asyncio.ensure_future(agent.run())
    tree.set(f"/local/domain/{GUEST}/control/shutdown", "explode")
    for _ in range(50):
        await asyncio.sleep(0)
    assert not task.done()
    tree.set(f"/local/domain/{GUEST}/control/shutdown", "reboot")
    assert await asyncio.wait_for(task, 5) == "reboot"
