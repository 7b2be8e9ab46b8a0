"""The `xen` backend: domains on a real Xen host through `xl`, behind the same interface as
`ns`. dom0's xenstore traffic goes to the system's xenstored through the same client layer;
sys-sec is every guest's network driver domain (`vif = ['backend=sys-sec', ...]`).

The xl.cfg text and the reading of `xl list` are pure (`xl_config`, `parse_xl_list`); the
class runs `xl` through dom0's runner.

What differs from `ns`, and why: Xen picks a domain's id at `xl create` (xl.cfg cannot ask
for one) and libxl writes its xenstore layout, so the backend is `hypervisor_owned`: `create`
returns the id Xen gave and the toolstack adds only Hyperwall's own keys. There is no
`exec` into a Xen guest (dom0 reaches a guest only through xenstore and its console), so
`exec` is refused with that reason.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dom0.backends.base import BackendError, DomainHandle, ExecResult, RunState
from dom0.config import DomainSpec
from dom0.layout import vif_addressing
from dom0.runner import CommandError, run

XL_STATES = {"r": RunState.RUNNING, "b": RunState.RUNNING, "p": RunState.PAUSED,
             "s": RunState.SHUTDOWN, "c": RunState.CRASHED, "d": RunState.SHUTDOWN}


@dataclass(frozen=True)
class GuestImage:
    """What a Xen guest boots: a kernel and an initramfs carrying the agent (builder)."""

    kernel: Path
    ramdisk: Path
    cmdline: str = "console=hvc0 quiet"


def _quote(value: str) -> str:
    if any(c in value for c in "\"\\\n"):
        raise ValueError(f"{value!r} cannot go into an xl.cfg string")
    return f'"{value}"'


def xl_config(spec: DomainSpec, image: GuestImage, *, domid_hint: int | None = None,
              backend_domain: str = "sys-sec") -> str:
    """The xl.cfg of a domain. Guests get one vif whose backend is sys-sec (a network driver
    domain); sys-sec itself is marked as a driver domain and has no vif from dom0."""
    lines = [
        f"name = {_quote(spec.name)}",
        'type = "pv"',
        f"kernel = {_quote(str(image.kernel))}",
        f"ramdisk = {_quote(str(image.ramdisk))}",
        f"extra = {_quote(f'{image.cmdline} hyperwall.kind={spec.kind}')}",
        f"memory = {spec.memory_mb}",
        f"vcpus = {spec.vcpus}",
        f"cpu_weight = {spec.cpu_weight}",
        'on_poweroff = "destroy"',
        'on_reboot = "restart"',
        'on_crash = "destroy"',
    ]
    if spec.is_sys_sec:
        lines.append("driver_domain = 1")
    elif domid_hint is not None:
        addr = vif_addressing(domid_hint, 0)
        lines.append(f"vif = [ 'backend={backend_domain},mac={addr.mac},ip={addr.ip},"
                     "script=vif-route' ]")
    else:
        lines.append(f"vif = [ 'backend={backend_domain},script=vif-route' ]")
    return "\n".join(lines) + "\n"


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

    def __init__(self, state_dir: Path, image: GuestImage) -> None:
        self.state_dir = state_dir
        self.image = image

    def _cfg(self, dom: DomainHandle) -> Path:
        return self.state_dir / "xl" / f"{dom.spec.name}.cfg"

    async def _xl(self, *args: str, timeout: float = 120.0) -> str:
        try:
            return (await run(["xl", *args], timeout=timeout)).stdout.decode()
        except CommandError as e:
            raise BackendError(f"xen: {e}") from None

    async def list(self) -> list[XlDomain]:
        return parse_xl_list(await self._xl("list"))

    async def _find(self, dom: DomainHandle) -> XlDomain | None:
        return next((d for d in await self.list() if d.name == dom.spec.name), None)

    async def create(self, dom: DomainHandle) -> int:
        """Built paused (`xl create -p`), as Xen does before devices are connected; returns
        the domid Xen gave it."""
        cfg = self._cfg(dom)
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(xl_config(dom.spec, self.image, domid_hint=dom.domid))
        await self._xl("create", "-p", str(cfg))
        found = await self._find(dom)
        if found is None:
            raise BackendError(f"xen: {dom.spec.name} is not in `xl list` after create")
        return found.domid

    async def start(self, dom: DomainHandle) -> None:
        await self._xl("unpause", dom.spec.name)

    async def pause(self, dom: DomainHandle) -> None:
        await self._xl("pause", dom.spec.name)

    async def unpause(self, dom: DomainHandle) -> None:
        await self._xl("unpause", dom.spec.name)

    async def shutdown(self, dom: DomainHandle, timeout: float = 10.0) -> None:
        """The polite path: libxl writes `control/shutdown = poweroff`, the guest's kernel
        powers off, and on_poweroff="destroy" removes it; waits at most `timeout`."""
        try:
            await self._xl("shutdown", "-w", dom.spec.name, timeout=timeout)
        except BackendError as e:
            raise BackendError(f"xen: {dom.spec.name} did not shut down within {timeout:g}s "
                               f"({e})") from None

    async def destroy(self, dom: DomainHandle) -> None:
        if await self._find(dom) is not None:
            await self._xl("destroy", dom.spec.name)
        self._cfg(dom).unlink(missing_ok=True)

    async def state(self, dom: DomainHandle) -> RunState:
        found = await self._find(dom)
        return found.state if found is not None else RunState.ABSENT

    async def console(self, dom: DomainHandle) -> Path:
        return Path("/var/log/xen/console") / f"guest-{dom.spec.name}.log"

    async def exec(self, dom: DomainHandle, argv: list[str], timeout: float = 60.0,
                   stdin: bytes | None = None) -> ExecResult:
        raise BackendError(f"xen: {dom.spec.name}: dom0 does not run commands inside Xen "
                           "guests; use its console or its agent's xenstore keys")

    async def add_vif(self, frontend: DomainHandle, backend: DomainHandle, devid: int) -> None:
        """The vif is in the xl.cfg: libxl writes both directories and netback in sys-sec
        plugs it (its hotplug), so there is nothing to do here."""

    async def remove_vif(self, frontend: DomainHandle, backend: DomainHandle,
                         devid: int) -> None:
        """libxl removes the vif with the domain."""

    async def list_domids(self) -> list[int]:
        return [d.domid for d in await self.list() if d.domid != 0]
