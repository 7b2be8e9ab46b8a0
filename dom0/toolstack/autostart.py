"""What starts without being asked: domains the config marks `autostart = true` when dom0d
starts, and a domain whose `autostart` probe sys-sec reports as matching (e.g. `work` once
the uplink is on the corporate network)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from dom0 import layout
from dom0.config import Autostart as Probe
from dom0.model import DomainInfo, DomainState
from dom0.toolstack.domains import Registry

log = logging.getLogger("hyperwall.toolstack")


def probe_matches(probe: Probe, answer: bytes | None) -> bool:
    """sys-sec's answer is only compared with the address the config expects."""
    return answer == (probe.probe_address or "").encode()


def starts_on(matched: bool, matched_before: bool | None) -> bool:
    """Once per change to a match: a start that failed is not retried every second."""
    return matched and matched_before is not True


class Autostart:
    def __init__(self, registry: Registry, start: Callable[[str], Awaitable[DomainInfo]]
                 ) -> None:
        self.registry = registry
        self.start = start
        self._probe_matched: dict[str, bool] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def on_boot(self) -> None:
        """What the config marks to start with dom0 (`autostart = true`)."""
        reg = self.registry
        for name in reg.names():
            if reg.specs[name].autostart.on_boot and name not in reg.domains:
                await self.start(name)

    async def check_probes(self) -> None:
        """Ask sys-sec each domain's probe; start the domains whose probe newly matches."""
        reg = self.registry
        sys_sec = reg.sys_sec()
        if sys_sec is None or sys_sec.state is not DomainState.RUNNING:
            return
        base = layout.dom_path(sys_sec.domid)
        for spec in reg.specs.values():
            probe = spec.autostart
            if not probe.probe_name or spec.name in reg.domains or reg.lock(spec.name).locked():
                continue
            asked = f"{base}/hyperwall/probes/{spec.name}"
            if await reg.store.read(asked) != probe.probe_name.encode():
                await reg.store.write_nodes([layout.Node(asked, probe.probe_name)])
            answer = await reg.store.read(f"{base}/data/hyperwall/probes/{spec.name}")
            matched = probe_matches(probe, answer)
            if starts_on(matched, self._probe_matched.get(spec.name)):
                log.info("%s resolves to %s through sys-sec's uplink: starting %s",
                         probe.probe_name, probe.probe_address, spec.name)
                self._spawn_start(spec.name)
            self._probe_matched[spec.name] = matched

    def _spawn_start(self, name: str) -> None:
        async def start() -> None:
            try:
                await self.start(name)
            except Exception as e:   # reported; dom0d carries on
                log.error("autostart of %s failed: %s", name, e)
        self._background.add(task := asyncio.get_running_loop().create_task(start()))
        task.add_done_callback(self._background.discard)
