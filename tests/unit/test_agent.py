"""The agent's logic: a guest and sys-sec walk a vif to Connected and back over a shared tree.

The tree here is an in-memory stand-in with xenstore's watch semantics (initial firing,
subtree changes); the same agents run against the real daemon in the integration tests.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dom0.config import DomainSpec
from dom0.layout import (
    domain_nodes,
    vif_addressing,
    vif_hyperwall_nodes,
    vif_libxl_nodes,
    vif_nodes,
)
from dom0.xenstore.client import XsError
from domains.agent import Agent, AgentFailed, appeared, existing

GUEST, SYS = 5, 1


class Tree:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.watchers: list[tuple[str, asyncio.Queue[str]]] = []
        self.log: list[tuple[str, str]] = []   # every change, in order

    def set(self, path: str, value: str) -> None:
        self.data[path] = value.encode()
        self.log.append((path, value))
        self._fire(path)

    def rm(self, path: str) -> None:
        self.log.append((path, "<rm>"))
        for p in [p for p in self.data if p == path or p.startswith(path + "/")]:
            del self.data[p]
        self._fire(path)

    def _fire(self, path: str) -> None:
        for prefix, q in self.watchers:
            if path == prefix or path.startswith(prefix + "/") or prefix.startswith(path + "/"):
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

    async def write_if_exists(self, parent: str, path: str, value: str) -> bool:
        prefix = self.abs(parent)
        if not any(p == prefix or p.startswith(prefix + "/") for p in self.tree.data):
            return False
        await self.write(path, value)
        return True

    async def rm(self, path: str) -> None:
        self.writes.append((self.abs(path), "<rm>"))
        self.tree.rm(self.abs(path))

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


def put(tree: Tree, nodes) -> None:  # type: ignore[no-untyped-def]
    for n in nodes:
        if n.value is not None:
            tree.set(n.path, n.value)


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


BE = f"/local/domain/{SYS}/backend/vif/{GUEST}/0"
FE = f"/local/domain/{GUEST}/device/vif/0"


async def test_on_xen_sys_sec_does_the_hotplug_and_leaves_the_handshake_to_netback() -> None:
    tree = build_tree()
    net = RecordingNet()
    view = View(tree, SYS)
    task = asyncio.ensure_future(Agent(view, net, kernel_drivers=True).run())
    put(tree, vif_libxl_nodes(GUEST, SYS, 0))          # xl network-attach
    tree.set(f"{BE}/state", "2")                         # netback made vif5.0: InitWait
    await settle()
    # dom0 has not written its keys yet: nothing to address the link with.
    assert not any(c[0] == "backend_up" for c in net.calls)
    put(tree, vif_hyperwall_nodes(GUEST, SYS, 0, "internet", name="work"))
    await wait_for(lambda: tree.data.get(f"{BE}/hotplug-status") == b"connected")
    addr = vif_addressing(GUEST, 0)
    assert ("backend_up", GUEST, 0, addr.ip, addr.gateway) in net.calls
    tree.set(f"{BE}/state", "4")                          # netback: Connected
    await settle()
    assert net.calls.count(("backend_up", GUEST, 0, addr.ip, addr.gateway)) == 1
    # libxl takes the device away: the link goes down and the directory, as xl devd does.
    tree.set(f"{BE}/online", "0")
    tree.set(f"{BE}/state", "6")
    await wait_for(lambda: not any(p.startswith(BE) for p in tree.data))
    assert ("backend_down", GUEST, 0) in net.calls
    assert not [p for p, _ in view.writes if p.endswith("/state")]   # netback's, never ours
    task.cancel()


class FlakyView(View):
    """A view whose first read of one key fails, as one over a xenbus device once did."""

    def __init__(self, tree: Tree, domid: int, flaky: str) -> None:
        super().__init__(tree, domid)
        self.flaky = flaky

    async def read(self, path: str) -> bytes | None:
        if self.abs(path) == self.flaky:
            self.flaky = ""
            raise XsError("EINVAL", path)
        return await super().read(path)


async def test_on_xen_a_failed_read_is_tried_again_and_the_device_still_plugged() -> None:
    tree = build_tree()
    net = RecordingNet()
    view = FlakyView(tree, SYS, f"{BE}/hyperwall/gateway")
    task = asyncio.ensure_future(Agent(view, net, kernel_drivers=True).run())
    put(tree, vif_libxl_nodes(GUEST, SYS, 0))
    put(tree, vif_hyperwall_nodes(GUEST, SYS, 0, "internet", name="work"))
    tree.set(f"{BE}/state", "2")
    await wait_for(lambda: tree.data.get(f"{BE}/hotplug-status") == b"connected")
    assert view.flaky == ""     # the failure happened, and was got over
    task.cancel()


class BrokenListView(View):
    """A view whose listing of the guest's devices fails, as a read over a xenbus device
    once did while several guests came up."""

    async def ls(self, path: str) -> list[str]:
        if path == "device/vif":
            raise XsError("EINVAL", path)
        return await super().ls(path)


async def test_a_watcher_that_dies_ends_the_agent_for_init_to_restart() -> None:
    # The watcher of the guest's vifs once died on such an error and nothing said so: the
    # guest's vif was never configured and its agent went on looking healthy.
    tree = build_tree()
    agent = Agent(BrokenListView(tree, GUEST), RecordingNet(), kernel_drivers=True)
    with pytest.raises(AgentFailed, match="EINVAL"):
        await asyncio.wait_for(agent.run(), 5)


async def test_on_xen_a_bad_gateway_is_a_hotplug_error_and_nothing_is_plugged() -> None:
    tree = build_tree()
    net = RecordingNet()
    task = asyncio.ensure_future(Agent(View(tree, SYS), net, kernel_drivers=True).run())
    put(tree, vif_libxl_nodes(GUEST, SYS, 0))
    tree.set(f"{BE}/hyperwall/gateway", "10.137.255.300")
    tree.set(f"{BE}/state", "2")
    await wait_for(lambda: tree.data.get(f"{BE}/hotplug-status") == b"error")
    assert b"10.137.255.300" in tree.data[f"{BE}/hotplug-error"]
    assert not any(c[0] == "backend_up" for c in net.calls)
    task.cancel()


async def test_on_xen_a_guest_configures_netfronts_link_once_connected() -> None:
    tree = build_tree()
    put(tree, vif_nodes(GUEST, SYS, 0, "internet", name="work"))
    net = RecordingNet()
    view = View(tree, GUEST)
    task = asyncio.ensure_future(Agent(view, net, kernel_drivers=True).run())
    await settle()
    assert not any(c[0] == "frontend_up" for c in net.calls)
    tree.set(f"{FE}/state", "4")                          # netfront: Connected
    addr = vif_addressing(GUEST, 0)
    report = f"/local/domain/{GUEST}/data/hyperwall/vif/0"
    await wait_for(lambda: tree.data.get(report) == f"up {addr.ip}".encode())
    assert ("frontend_up", 0, addr.ip, addr.gateway, addr.mac) in net.calls
    tree.set(f"{FE}/state", "5")
    await wait_for(lambda: tree.data.get(report) == b"down")
    assert ("frontend_down", 0) in net.calls
    assert not [p for p, _ in view.writes if p.endswith("/state")]   # netfront's, never ours
    task.cancel()


async def test_on_xen_a_frontend_connected_before_dom0s_keys_waits_for_them() -> None:
    """libxl writes the device and netfront connects it; dom0 writes the gateway after
    `xl network-attach` returns (sys-sec's uplink, a guest's vif): the link is configured
    once that is there, not given up on."""
    tree = build_tree()
    put(tree, [n for n in vif_nodes(GUEST, SYS, 0, "internet", name="work")
               if "/hyperwall/" not in n.path])
    net = RecordingNet()
    task = asyncio.ensure_future(Agent(View(tree, GUEST), net, kernel_drivers=True).run())
    tree.set(f"{FE}/state", "4")                          # netfront: Connected
    await settle()
    assert not any(c[0] == "frontend_up" for c in net.calls)
    put(tree, vif_hyperwall_nodes(GUEST, SYS, 0, "internet", name="work"))
    addr = vif_addressing(GUEST, 0)
    report = f"/local/domain/{GUEST}/data/hyperwall/vif/0"
    await wait_for(lambda: tree.data.get(report) == f"up {addr.ip}".encode())
    assert ("frontend_up", 0, addr.ip, addr.gateway, addr.mac) in net.calls
    task.cancel()


async def test_a_drivers_interface_is_waited_for_until_it_appears(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def make_it_later() -> None:
        await settle()
        (tmp_path / "vif5.0").mkdir()
    later = asyncio.ensure_future(make_it_later())
    assert await appeared(lambda: existing("vif5.0", str(tmp_path)), timeout=5) == "vif5.0"
    await later
    assert await appeared(lambda: existing("vif6.0", str(tmp_path)), timeout=0.2) is None


async def test_stop_ends_the_agent_like_a_shutdown_request() -> None:
    tree = build_tree()
    agent = Agent(View(tree, GUEST), RecordingNet())
    task = asyncio.ensure_future(agent.run())
    await settle()
    agent.stop("SIGTERM")
    assert await asyncio.wait_for(task, 5) == "SIGTERM"
    assert tree.data[f"/local/domain/{GUEST}/data/hyperwall/agent"] == b"stopped (SIGTERM)"
    assert tree.data[f"/local/domain/{GUEST}/control/shutdown"] == b""   # never asked


def test_the_interface_netfront_made_is_found_by_its_mac(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from domains.agent import interface_with_mac
    for name, mac in (("lo", "00:00:00:00:00:00"), ("eth0", "00:16:3e:00:05:00")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "address").write_text(mac + "\n")
    assert interface_with_mac("00:16:3e:00:05:00", str(tmp_path)) == "eth0"
    assert interface_with_mac("00:16:3e:00:05:01", str(tmp_path)) is None


class BackToBackView(View):
    """sys-sec's view where its `device/vif` watch first fires right behind `backend/vif`'s
    first event: the order a real daemon may deliver the two initial events in when sys-sec's
    agent starts with a guest's vif already written."""

    def __init__(self, tree: Tree, domid: int) -> None:
        super().__init__(tree, domid)
        self.backends_fired = asyncio.Event()

    async def watch(self, path: str) -> AsyncIterator[str]:
        if path == "device/vif":
            await self.backends_fired.wait()
        async for event in super().watch(path):
            if path == "backend/vif":
                self.backends_fired.set()   # wakes the other watcher before what this starts
            yield event


async def test_sys_sec_serves_a_vif_written_before_its_agent_whichever_watch_fires_first() -> None:
    """The lost wakeup behind a domain start stuck at Initialising: sys-sec's frontend
    watcher, finding no `device/vif` of its own, took the backend device its other watcher
    had started for one no longer present and cancelled it; no later event restarts it."""
    tree = build_tree()
    put(tree, vif_nodes(GUEST, SYS, 0, "internet", name="guest"))
    be_net = RecordingNet()
    sys_sec = asyncio.ensure_future(Agent(BackToBackView(tree, SYS), be_net).run())
    guest = asyncio.ensure_future(Agent(View(tree, GUEST), RecordingNet()).run())
    await wait_for(lambda: tree.data.get(f"{FE}/state") == tree.data.get(f"{BE}/state") == b"4")
    addr = vif_addressing(GUEST, 0)
    assert ("backend_up", GUEST, 0, addr.ip, addr.gateway) in be_net.calls
    sys_sec.cancel()
    guest.cancel()


def states(tree: Tree) -> list[tuple[str, str]]:
    """The vif's state changes in order, each named by its side."""
    return [("fe" if path == f"{FE}/state" else "be", value) for path, value in tree.log
            if path in (f"{FE}/state", f"{BE}/state")]


async def connected_pair(tree: Tree) -> tuple[asyncio.Task[str], asyncio.Task[str],
                                              RecordingNet, RecordingNet]:
    put(tree, vif_nodes(GUEST, SYS, 0, "internet", name="guest"))
    fe_net, be_net = RecordingNet(), RecordingNet()
    guest = asyncio.ensure_future(Agent(View(tree, GUEST), fe_net).run())
    sys_sec = asyncio.ensure_future(Agent(View(tree, SYS), be_net).run())
    await wait_for(lambda: tree.data.get(f"{FE}/state") == tree.data.get(f"{BE}/state") == b"4")
    return guest, sys_sec, fe_net, be_net


async def test_online_0_closes_the_backend_then_the_frontend_through_closing() -> None:
    tree = build_tree()
    guest, sys_sec, fe_net, be_net = await connected_pair(tree)
    del tree.log[:]
    tree.set(f"{BE}/online", "0")     # what dom0 writes to take the device away
    await wait_for(lambda: tree.data.get(f"{FE}/state") == tree.data.get(f"{BE}/state") == b"6")
    await settle()
    assert states(tree) == [("be", "5"), ("fe", "5"), ("be", "6"), ("fe", "6")]
    assert ("backend_down", GUEST, 0) in be_net.calls and ("frontend_down", 0) in fe_net.calls
    guest.cancel()
    sys_sec.cancel()


async def test_a_guest_shutting_down_closes_its_vif_through_closing() -> None:
    tree = build_tree()
    guest, sys_sec, _, be_net = await connected_pair(tree)
    del tree.log[:]
    tree.set(f"/local/domain/{GUEST}/control/shutdown", "poweroff")
    assert await asyncio.wait_for(guest, 5) == "poweroff"
    await wait_for(lambda: tree.data.get(f"{BE}/state") == b"6")
    assert states(tree) == [("fe", "5"), ("be", "5"), ("fe", "6"), ("be", "6")]
    assert ("backend_down", GUEST, 0) in be_net.calls
    sys_sec.cancel()


class SlowListView(View):
    """A view whose directory listings lag, as a real daemon's replies can: a device task
    then still runs for a moment after its directory went."""

    async def ls(self, path: str) -> list[str]:
        await settle()
        return await super().ls(path)


async def test_a_removed_device_directory_is_not_written_back() -> None:
    tree = build_tree()
    put(tree, vif_nodes(GUEST, SYS, 0, "internet", name="guest"))
    guest = asyncio.ensure_future(Agent(View(tree, GUEST), RecordingNet()).run())
    sys_sec = asyncio.ensure_future(Agent(SlowListView(tree, SYS), RecordingNet()).run())
    await wait_for(lambda: tree.data.get(f"{FE}/state") == tree.data.get(f"{BE}/state") == b"4")
    # dom0 removes both directories without a handshake (the domain was destroyed): the
    # backend's Closed, on seeing the frontend go, must not bring its directory back.
    tree.rm(BE)
    tree.rm(FE)
    for _ in range(5):
        await settle()
    assert not [p for p in tree.data if p.startswith((FE, BE))], sorted(tree.data)
    guest.cancel()
    sys_sec.cancel()


class CountingView(View):
    """A view that counts its directory listings (what rescanning the devices costs)."""

    def __init__(self, tree: Tree, domid: int) -> None:
        super().__init__(tree, domid)
        self.listed = 0

    async def ls(self, path: str) -> list[str]:
        self.listed += 1
        return await super().ls(path)


async def test_keys_changing_inside_a_served_device_do_not_rescan_the_devices() -> None:
    tree = build_tree()
    put(tree, vif_nodes(GUEST, SYS, 0, "internet", name="guest"))
    view = CountingView(tree, SYS)
    guest = asyncio.ensure_future(Agent(View(tree, GUEST), RecordingNet()).run())
    sys_sec = asyncio.ensure_future(Agent(view, RecordingNet()).run())
    await wait_for(lambda: tree.data.get(f"{FE}/state") == tree.data.get(f"{BE}/state") == b"4")
    await settle()
    listed = view.listed
    for i in range(20):
        tree.set(f"{BE}/hyperwall/note", str(i))
    await settle()
    assert view.listed == listed
    # A device that appears is still found, and served.
    put(tree, vif_nodes(GUEST, SYS, 1, "internet", name="guest"))
    await wait_for(lambda: tree.data.get(f"{BE[:-1]}1/state") == b"4")
    assert view.listed > listed
    guest.cancel()
    sys_sec.cancel()
