"""The `xen` backend: domains on a real Xen host through `xl`, behind the same interface as
`ns`. dom0's xenstore traffic goes to the system's xenstored through the same client layer;
sys-sec is every guest's network driver domain (each guest's vif has `backend=sys-sec`).

The xl.cfg text, the `xl network-attach` arguments and the reading of `xl list` are pure
(`xl_config`, `vif_spec`, `parse_xl_list`); the class runs `xl` through dom0's runner.

What differs from `ns`, and why: Xen picks a domain's id at `xl create` (xl.cfg cannot ask
for one) and libxl writes its xenstore layout, so the backend is `hypervisor_owned`: `create`
returns the id Xen gave and the toolstack adds only Hyperwall's own keys. A vif's addresses
follow from the guest's domid, so the vif is attached once that is known (`xl
network-attach`, while the guest is still paused), not in the xl.cfg. Netback in sys-sec
and netfront in the guest walk the handshake; sys-sec's agent does the hotplug part. dom0
has no way into a guest but xenstore, so `exec` is a request the guest's agent answers
there (`dom0.guest_exec`).
"""
from __future__ import annotations

import asyncio
import builtins
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dom0.backends.base import BackendError, DomainHandle, ExecResult, RunState
from dom0.config import DomainSpec
from dom0.layout import vif_addressing
from domains.runner import CommandError, run

if TYPE_CHECKING:
    from dom0.guest_exec import Dom0Store

log = logging.getLogger("hyperwall.xen")

# How long a destroyed domain may take to release its memory (seconds; ~1 s for 1 GiB
# natively, several under emulation).
DYING_TIMEOUT = 60.0
XL_STATES = {"r": RunState.RUNNING, "b": RunState.RUNNING, "p": RunState.PAUSED,
             "s": RunState.SHUTDOWN, "c": RunState.CRASHED, "d": RunState.SHUTDOWN}


@dataclass(frozen=True)
class GuestImage:
    """What a Xen guest boots: a kernel and an initramfs carrying the agent (builder)."""

    kernel: Path
    ramdisk: Path
    cmdline: str = "console=hvc0 quiet"


@dataclass(frozen=True)
class GuestImages:
    """sys-sec boots its own initramfs (netback, the firewall, the engine); every other
    domain boots the guest one."""

    sys_sec: GuestImage
    guest: GuestImage

    def for_spec(self, spec: DomainSpec) -> GuestImage:
        return self.sys_sec if spec.is_sys_sec else self.guest

    @classmethod
    def in_folder(cls, folder: Path) -> GuestImages:
        """The layout `hyperwall-build xen-guests -o FOLDER` writes."""
        kernel = folder / "vmlinux"
        return cls(GuestImage(kernel, folder / "sys-sec.cpio"),
                   GuestImage(kernel, folder / "guest.cpio"))


def _quote(value: str) -> str:
    if any(c in value for c in "\"\\\n"):
        raise ValueError(f"{value!r} cannot go into an xl.cfg string")
    return f'"{value}"'


def xl_config(spec: DomainSpec, image: GuestImage) -> str:
    """The xl.cfg of a domain, without vifs (`vif_spec`). sys-sec is marked as a network
    driver domain."""
    boot_args = f"hyperwall.name={spec.name} hyperwall.kind={spec.kind}"
    lines = [
        f"name = {_quote(spec.name)}",
        'type = "pv"',
        f"kernel = {_quote(str(image.kernel))}",
        f"ramdisk = {_quote(str(image.ramdisk))}",
        f"extra = {_quote(f'{image.cmdline} {boot_args}')}",
        f"memory = {spec.memory_mb}",
        f"vcpus = {spec.vcpus}",
        f"cpu_weight = {spec.cpu_weight}",
        'on_poweroff = "destroy"',
        'on_reboot = "restart"',
        'on_crash = "destroy"',
    ]
    if spec.is_sys_sec:
        lines.append("driver_domain = 1")
    return "\n".join(lines) + "\n"


def vif_spec(domid: int, devid: int, backend_domain: str) -> list[str]:
    """`xl network-attach` arguments for a guest's vif: sys-sec as its backend, the routed
    address and MAC the guest's domid gives (`dom0.layout.vif_addressing`)."""
    addr = vif_addressing(domid, devid)
    return [f"backend={backend_domain}", f"devid={devid}", f"mac={addr.mac}", f"ip={addr.ip}",
            "script=vif-route"]


_XL_LINE = re.compile(r"^(?P<name>\S+)\s+(?P<id>\d+)\s+(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+"
                      r"(?P<state>[-rbpscd]{6})\s+(?P<time>[\d.]+)")


@dataclass(frozen=True)
class XlDomain:
    name: str
    domid: int
    memory_mb: int
    vcpus: int
    state: RunState
    cpu_time: float


def parse_xl_list(text: str) -> list[XlDomain]:
    """`xl list`'s table (Name ID Mem VCPUs State Time(s)); Domain-0 included."""
    out = []
    for line in text.splitlines()[1:]:
        m = _XL_LINE.match(line)
        if m is None:
            if line.strip():
                raise ValueError(f"xl list: cannot read {line!r}")
            continue
        flags = m["state"].replace("-", "")
        state = XL_STATES[flags[0]] if flags else RunState.RUNNING
        out.append(XlDomain(m["name"], int(m["id"]), int(m["mem"]), int(m["vcpus"]), state,
                            float(m["time"])))
    return out


class XenBackend:
    name = "xen"
    hypervisor_owned = True

    def __init__(self, state_dir: Path, images: GuestImages, store: Dom0Store | None = None
                 ) -> None:
        self.state_dir = state_dir
        self.images = images
        self.store = store      # for `exec`, answered by the guest's agent over xenstore
        self._xl_lock = asyncio.Lock()

    def _cfg(self, dom: DomainHandle) -> Path:
        return self.state_dir / "xl" / f"{dom.spec.name}.cfg"

    async def xl(self, *args: str, timeout: float = 120.0) -> str:
        """Run `xl`, one at a time. xl 4.17 under emulation was seen to fail now and then
        before doing anything (a garbled read of /etc/xen/xl.conf) and to crash listing
        domains while another xl built one: those two are tried again."""
        async with self._xl_lock:
            for attempt in range(3):
                try:
                    return (await run(["xl", *args], timeout=timeout)).stdout.decode()
                except CommandError as e:
                    again = b"config parsing error" in e.stderr or \
                        (args[0] == "list" and e.returncode == -11)
                    if not again or attempt == 2:
                        raise BackendError(f"xen: {e}") from None
                    log.warning("xen: %s; trying again", e)
        raise AssertionError("unreachable")

    async def list(self) -> list[XlDomain]:
        return parse_xl_list(await self.xl("list"))

    async def _find(self, dom: DomainHandle) -> XlDomain | None:
        return next((d for d in await self.list() if d.name == dom.spec.name), None)

    async def create(self, dom: DomainHandle) -> int:
        """Built paused (`xl create -p`), as Xen does before devices are connected; returns
        the domid Xen gave it."""
        cfg = self._cfg(dom)
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(xl_config(dom.spec, self.images.for_spec(dom.spec)))
        await self.xl("create", "-p", str(cfg))
        found = await self._find(dom)
        if found is None:
            raise BackendError(f"xen: {dom.spec.name} is not in `xl list` after create")
        return found.domid

    async def start(self, dom: DomainHandle) -> None:
        await self.xl("unpause", dom.spec.name)

    async def pause(self, dom: DomainHandle) -> None:
        await self.xl("pause", dom.spec.name)

    async def unpause(self, dom: DomainHandle) -> None:
        await self.xl("unpause", dom.spec.name)

    async def shutdown(self, dom: DomainHandle, timeout: float = 10.0) -> None:
        """The polite path: libxl writes `control/shutdown = poweroff`, the guest's kernel
        powers off, and on_poweroff="destroy" removes it; waits at most `timeout`."""
        try:
            await self.xl("shutdown", "-w", dom.spec.name, timeout=timeout)
        except BackendError as e:
            raise BackendError(f"xen: {dom.spec.name} did not shut down within {timeout:g}s "
                               f"({e})") from None

    async def destroy(self, dom: DomainHandle) -> None:
        """Destroyed, and waited for until Xen has let it go: a dying domain (`(null)` in
        `xl list`, its xenstore entries already gone) holds its memory until the last of
        its pages is released, and a domain that powered itself off may be dying already."""
        if await self._by_domid(dom.domid) is not None:
            try:
                await self.xl("destroy", str(dom.domid))
            except BackendError:
                # It may have ended by itself meanwhile (dying or gone): only a domain
                # still there under its own name is a failure.
                found = await self._by_domid(dom.domid)
                if found is not None and found.name == dom.spec.name:
                    raise
        deadline = asyncio.get_running_loop().time() + DYING_TIMEOUT
        while await self._by_domid(dom.domid) is not None:
            if asyncio.get_running_loop().time() > deadline:
                raise BackendError(f"xen: {dom.spec.name} (domain {dom.domid}) is still "
                                   f"dying {DYING_TIMEOUT:g}s after it was destroyed")
            await asyncio.sleep(0.5)   # polled: xl has no way to wait for it
        self._cfg(dom).unlink(missing_ok=True)

    async def _by_domid(self, domid: int) -> XlDomain | None:
        return next((d for d in await self.list() if d.domid == domid), None)

    async def state(self, dom: DomainHandle) -> RunState:
        found = await self._find(dom)
        return found.state if found is not None else RunState.ABSENT

    async def console(self, dom: DomainHandle) -> Path:
        return Path("/var/log/xen/console") / f"guest-{dom.spec.name}.log"

    async def exec(self, dom: DomainHandle, argv: builtins.list[str], timeout: float = 60.0,
                   stdin: bytes | None = None) -> ExecResult:
        if self.store is None:
            raise BackendError(f"xen: {dom.spec.name}: no xenstore connection to ask its "
                               "agent through")
        from dom0.guest_exec import exec_in_domain
        return await exec_in_domain(self.store, dom.domid, argv, timeout=timeout, stdin=stdin)

    def writable_layer(self, spec: DomainSpec) -> Path:
        # A Xen guest writes to its own disk image, which dom0 must not mount while the
        # guest runs (two kernels on one filesystem corrupt it).
        raise BackendError(
            f"xen: scanning {spec.name} at rest is not supported yet: it would take a "
            "snapshot of its disk (an LVM/qcow2 snapshot, or the domain paused and its image "
            "copied), that snapshot attached to sys-sec as a read-only vbd (`xl block-attach "
            "sys-sec ...,mode=r`), sys-sec mounting it read-only with the guest's filesystem "
            "driver, and the scan run there; for `reset` a fresh image from its template with "
            "the clean persist entries copied in")

    async def add_vif(self, frontend: DomainHandle, backend: DomainHandle, devid: int) -> None:
        """libxl writes both directories; netback in sys-sec and netfront in the guest take
        it from there (the toolstack then adds Hyperwall's keys for sys-sec's agent)."""
        await self.xl("network-attach", frontend.spec.name,
                       *vif_spec(frontend.domid, devid, backend.spec.name))

    async def remove_vif(self, frontend: DomainHandle, backend: DomainHandle,
                         devid: int) -> None:
        """libxl removes the vif with the domain."""

    async def list_domids(self) -> builtins.list[int]:
        return [d.domid for d in await self.list() if d.domid != 0]
