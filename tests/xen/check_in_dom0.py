"""Run inside Xen's dom0 (by tests/xen/harness.py): Hyperwall's dom0 code against Xen
itself. Prints one `HWCHECK <name> PASS|FAIL <detail>` line per check; the host reads them
from the serial console. `smoke` starts and stops one guest through the xen backend;
`full` adds the client layer against the real oxenstored, libxl's layout, pause/unpause
and the toolstack's view against `xl list`."""
from __future__ import annotations

import asyncio
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from dom0.backends.base import DomainHandle, RunState
from dom0.backends.xen import GuestImage, XenBackend, parse_xl_list
from dom0.config import DomainSpec, load_config_dir
from dom0.layout import domain_nodes, hyperwall_nodes
from dom0.runner import run
from dom0.toolstack import Toolstack
from dom0.xenstore.client import AsyncXenStore, Perm, XenStore
from tests.xen.libxl_layout import Tree, differences

DOMAINS = Path(__file__).resolve().parent / "domains"
IMAGE = GuestImage(Path("/guest/vmlinuz"), Path("/guest/initrd.gz"))
STATE_DIR = Path("/tmp/hyperwall-xen")


def report(name: str, ok: bool, detail: str = "") -> None:
    print(f"HWCHECK {name} {'PASS' if ok else 'FAIL'} {detail}".rstrip(), flush=True)


def spec(name: str) -> DomainSpec:
    return load_config_dir(DOMAINS)[name]


def read_tree(xs: XenStore, root: str) -> Tree:
    """A subtree as `xenstore-ls -fp` shows it, read through the client layer."""
    tree: Tree = {root: (xs.read(root).decode(), tuple(map(str, xs.get_perms(root))))}
    for child in xs.ls(root):
        tree |= read_tree(xs, f"{root}/{child}")
    return tree


async def xl_list() -> dict[str, RunState]:
    """`xl list` read on its own, not through the backend under test."""
    out = (await run(["xl", "list"])).stdout.decode()
    return {d.name: d.state for d in parse_xl_list(out)}


async def wait_console(path: Path, text: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:   # xenconsoled appends to a file; nothing to watch
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        await asyncio.sleep(0.3)
    return False


async def client_layer(name: str, where: tuple[str, str] | None) -> None:
    """Node operations, permissions, a transaction and a watch, against the real oxenstored:
    through its socket (`where` None: found as on any Xen host) or dom0's xenbus device."""
    with XenStore(where) as xs:
        xs.write(f"/hwcheck/{name}/a", "1")
        xs.set_perms(f"/hwcheck/{name}/a", ["n0", "r5"])
        ok = xs.read(f"/hwcheck/{name}/a") == b"1" and xs.get_perms(f"/hwcheck/{name}/a") == [
            Perm(0, "n"), Perm(5, "r")] and "a" in xs.ls(f"/hwcheck/{name}")
        xs.transaction(lambda tx: tx.write(f"/hwcheck/{name}/b", "2"))
        ok = ok and xs.read(f"/hwcheck/{name}/b") == b"2"
        xs.rm("/hwcheck")
        report(name, ok and not xs.exists("/hwcheck"), f"where={xs.where}")
    store = await AsyncXenStore.connect(where)
    events = store.watch("/hwcheck")
    try:
        initial = await asyncio.wait_for(anext(events), 10)   # Xen fires a new watch once
        await store.write("/hwcheck/w", "1")
        seen = await asyncio.wait_for(_until(events, "/hwcheck/w"), 10)
        report(f"{name}-watch", initial == "/hwcheck" and seen)
    except Exception as e:
        report(f"{name}-watch", False, f"{type(e).__name__}: {e}")
    finally:
        await events.aclose()
        await store.rm("/hwcheck")
        await store.close()


async def _until(events: AsyncIterator[str], path: str) -> bool:
    async for event_path in events:
        if event_path == path:
            return True
    return False


async def guest(full: bool) -> None:
    """A domain defined by TOML, through the backend: created paused, started, (paused and
    unpaused,) booted, shut down politely, destroyed leaving nothing in xenstore."""
    backend = XenBackend(STATE_DIR, IMAGE)
    dom = DomainHandle(0, spec("sys-sec"), Path("/tmp"))
    started = time.monotonic()
    domid = await backend.create(dom)
    dom = DomainHandle(domid, dom.spec, dom.xenstore_dir)
    report("xl-create-paused", await backend.state(dom) is RunState.PAUSED
           and (await xl_list())["sys-sec"] is RunState.PAUSED, f"domid={domid}")
    if full:
        with XenStore() as xs:
            uuid = xs.read(f"/local/domain/{domid}/vm").decode().removeprefix("/vm/")
            tree = read_tree(xs, f"/local/domain/{domid}") | read_tree(xs, f"/vm/{uuid}") \
                | read_tree(xs, f"/libxl/{domid}")
        ours = set(hyperwall_nodes(domid, dom.spec))
        diff = differences([n for n in domain_nodes(domid, uuid, dom.spec) if n not in ours],
                           tree)
        report("libxl-layout", not diff, f"nodes={len(tree)} " + "; ".join(diff))
    await backend.start(dom)
    report("started", await backend.state(dom) is RunState.RUNNING
           and (await xl_list())["sys-sec"] is RunState.RUNNING)
    if full:
        await backend.pause(dom)
        paused = await backend.state(dom), (await xl_list())["sys-sec"]
        await backend.unpause(dom)
        report("pause-unpause", paused == (RunState.PAUSED, RunState.PAUSED)
               and await backend.state(dom) is RunState.RUNNING, f"paused={paused}")
    booted = await wait_console(await backend.console(dom), "DOMU_ALIVE")
    report("guest-boots", booted, f"after {time.monotonic() - started:.1f}s")
    await backend.shutdown(dom, timeout=60)
    after = await backend.state(dom)
    await backend.destroy(dom)
    with XenStore() as xs:
        report("shutdown", after in (RunState.SHUTDOWN, RunState.ABSENT)
               and await backend.state(dom) is RunState.ABSENT
               and "sys-sec" not in await xl_list()
               and not xs.exists(f"/local/domain/{domid}"), f"after shutdown: {after.value}")


async def toolstack() -> None:
    """`hyperwall list` (the toolstack's view) against `xl list`, on the real xenstored."""
    specs = load_config_dir(DOMAINS)
    backend = XenBackend(STATE_DIR, IMAGE)
    store = await AsyncXenStore.connect()
    ts = Toolstack({"sys-sec": specs["sys-sec"]}, store, {"xen": backend}, Path("/tmp"))
    try:
        info = await ts.start("sys-sec")
        xl = {d.name: d for d in parse_xl_list((await run(["xl", "list"])).stdout.decode())}
        kind = await store.read(f"/local/domain/{xl['sys-sec'].domid}/hyperwall/kind")
        report("hyperwall-list-agrees-with-xl-list",
               (info.domid, info.state.value, info.memory_mb)
               == (xl["sys-sec"].domid, xl["sys-sec"].state.value, xl["sys-sec"].memory_mb)
               and kind == b"sys-sec", f"toolstack={info.domid}/{info.state.value} "
               f"xl={xl['sys-sec'].domid}/{xl['sys-sec'].state.value}")
        await ts.destroy("sys-sec")
        report("toolstack-destroy", "sys-sec" not in await xl_list()
               and "sys-sec" not in ts.domains)
    finally:
        await store.close()


def main(which: str) -> None:
    checks: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("guest", lambda: guest(full=which == "full"))]
    if which == "full":
        checks = [("client-layer-vs-oxenstored",
                   lambda: client_layer("client-layer-vs-oxenstored", None)),
                  ("client-layer-via-xenbus",
                   lambda: client_layer("client-layer-via-xenbus", ("xenbus", "/dev/xen/xenbus"))),
                  *checks,
                  ("toolstack", toolstack)]
    for name, check in checks:
        try:
            asyncio.run(check())   # type: ignore[arg-type]
        except Exception:
            report(name, False, traceback.format_exc().replace("\n", " | ")[-600:])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "full")
