"""Run inside Xen's dom0 (by tests/xen/test_xen_smoke.py): Hyperwall's client layer against
the real oxenstored, and the xen backend driving a real PV guest through xl. Prints one
`HWCHECK <name> PASS|FAIL <detail>` line per check; the host reads the serial console."""
from __future__ import annotations

import asyncio
import time
import traceback
from pathlib import Path

from dom0.backends.base import DomainHandle, RunState
from dom0.backends.xen import GuestImage, XenBackend
from dom0.config import DomainSpec
from dom0.toolstack import Toolstack
from dom0.xenstore.client import AsyncXenStore, Perm, XenStore


def report(name: str, ok: bool, detail: str = "") -> None:
    print(f"HWCHECK {name} {'PASS' if ok else 'FAIL'} {detail}".rstrip(), flush=True)


def client_layer() -> None:
    with XenStore() as xs:     # finds the system's xenstored, as on any Xen host
        xs.write("/hwcheck/a", "1")
        xs.set_perms("/hwcheck/a", ["n0", "r5"])
        ok = xs.read("/hwcheck/a") == b"1" and xs.get_perms("/hwcheck/a") == [
            Perm(0, "n"), Perm(5, "r")] and "a" in xs.ls("/hwcheck")
        xs.transaction(lambda tx: tx.write("/hwcheck/b", "2"))
        ok = ok and xs.read("/hwcheck/b") == b"2"
        xs.rm("/hwcheck")
        report("client-layer-vs-oxenstored", ok and not xs.exists("/hwcheck"),
               f"where={xs.where}")


async def guest() -> None:
    spec = DomainSpec(name="sys-sec", kind="sys-sec", memory_mb=128, vcpus=1)
    backend = XenBackend(Path("/tmp/hyperwall-xen"),
                         GuestImage(Path("/guest/vmlinuz"), Path("/guest/initrd.gz")))
    dom = DomainHandle(0, spec, Path("/tmp"))
    domid = await backend.create(dom)
    report("xl-create-paused", await backend.state(dom) is RunState.PAUSED, f"domid={domid}")
    with XenStore() as xs:
        base = f"/local/domain/{domid}"
        # What libxl wrote for it, against what Hyperwall's layout writes on its own daemon.
        perms = xs.get_perms(base)
        report("libxl-layout", xs.read(f"{base}/name") == b"sys-sec"
               and xs.read(f"{base}/domid") == str(domid).encode()
               and xs.read(f"{base}/vm").startswith(b"/vm/")
               and perms == [Perm(0, "n"), Perm(domid, "r")], f"perms={perms}")
    await backend.start(dom)
    listed = {d.name: d for d in await backend.list()}
    report("xl-list-agrees", listed["sys-sec"].state is RunState.RUNNING
           and listed["sys-sec"].domid == domid and listed["Domain-0"].domid == 0)
    console = await backend.console(dom)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
            console.exists() and "DOMU_ALIVE" in console.read_text(errors="replace")):
        await asyncio.sleep(0.5)   # the guest's console is a file xenconsoled writes
    report("guest-boots", console.exists() and "DOMU_ALIVE" in console.read_text())
    await backend.destroy(dom)
    with XenStore() as xs:
        report("destroyed", await backend.state(dom) is RunState.ABSENT
               and not xs.exists(f"/local/domain/{domid}"))


async def toolstack() -> None:
    """`hyperwall list` (the toolstack's view) against `xl list`, on the real xenstored."""
    spec = DomainSpec(name="sys-sec", kind="sys-sec", backend="xen", memory_mb=128, vcpus=1)
    backend = XenBackend(Path("/tmp/hyperwall-xen"),
                         GuestImage(Path("/guest/vmlinuz"), Path("/guest/initrd.gz")))
    store = await AsyncXenStore.connect()
    ts = Toolstack({"sys-sec": spec}, store, {"xen": backend}, Path("/tmp"))
    try:
        info = await ts.start("sys-sec")
        xl = {d.name: d for d in await backend.list()}["sys-sec"]
        kind = await store.read(f"/local/domain/{xl.domid}/hyperwall/kind")
        report("hyperwall-list-agrees-with-xl-list",
               (info.domid, info.state.value, info.memory_mb) == (xl.domid, "running", 128)
               and kind == b"sys-sec", f"toolstack={info.domid}/{info.state.value} "
               f"xl={xl.domid}/{xl.state.value}")
        await ts.destroy("sys-sec")
        report("toolstack-destroy", await backend.state(ts._handle(xl.domid, spec))
               is RunState.ABSENT and "sys-sec" not in ts.domains)
    finally:
        await store.close()


def main() -> None:
    for name, check in (("client-layer-vs-oxenstored", client_layer),
                        ("guest", lambda: asyncio.run(guest())),
                        ("toolstack", lambda: asyncio.run(toolstack()))):
        try:
            check()
        except Exception:
            report(name, False, traceback.format_exc().replace("\n", " | ")[-600:])


if __name__ == "__main__":
    main()
