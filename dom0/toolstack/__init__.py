"""The toolstack: domain lifecycle over xenstore and a backend, like libxl/xl.

`Toolstack` is what dom0d, the control API and the embedded platform drive; it composes
one part per job: `lifecycle` (create, start, shutdown, destroy, pause, exec, up, down),
`recovery` (re-adopting domains after dom0d restarts), `supervision` (noticing domains
that stop by themselves), `autostart` (on boot and by probe), `domids` (allocation),
`events` (to subscribers), over the state they share in `domains` (with `vifs` and
`teardown` the steps the jobs have in common).
"""
from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from pathlib import Path

from dom0.backends.base import Backend, ExecResult
from dom0.config import DomainSpec
from dom0.model import DomainEvent, DomainInfo
from dom0.toolstack.atrest import AtRest, Scanners, Update
from dom0.toolstack.autostart import Autostart
from dom0.toolstack.domains import Domain, Registry, Store, Uplink
from dom0.toolstack.domids import MAX_DOMID, DomidAllocator
from dom0.toolstack.events import Events
from dom0.toolstack.lifecycle import CONNECT_TIMEOUT, Lifecycle
from dom0.toolstack.recovery import recover
from dom0.toolstack.supervision import Supervisor

__all__ = ["CONNECT_TIMEOUT", "MAX_DOMID", "Scanners", "Store", "Toolstack", "Uplink"]


class Toolstack:
    def __init__(self, specs: dict[str, DomainSpec], store: Store,
                 backends: dict[str, Backend], xs_rundir: Path, *, first_domid: int = 1,
                 uplink: Uplink | None = None, connect_timeout: float = CONNECT_TIMEOUT,
                 quarantine_dir: Path | None = None, scanners: Scanners | None = None) -> None:
        self.registry = Registry(specs, store, backends, xs_rundir, uplink)
        self.events = Events()
        self.lifecycle = Lifecycle(self.registry, self.events, DomidAllocator(first_domid),
                                   connect_timeout=connect_timeout)
        self.autostarter = Autostart(self.registry, self.lifecycle.start)
        self.supervisor = Supervisor(self.registry, self.events, self.autostarter.check_probes)
        self.atrest = AtRest(self.registry, self.events, self.lifecycle,
                             quarantine_dir or Path("/var/lib/hyperwall/quarantine"),
                             scanners or Scanners())
        # The registry's own dicts, never rebound: the API reads specs, dom0d domains.
        self.specs = self.registry.specs
        self.domains: dict[str, Domain] = self.registry.domains

    def list(self) -> builtins.list[DomainInfo]:
        return [self.registry.info(name) for name in self.registry.names()]

    def get(self, name: str) -> DomainInfo:
        return self.registry.info(name)

    def subscribe(self) -> AsyncIterator[DomainEvent]:
        return self.events.subscribe()

    async def create(self, name: str) -> DomainInfo:
        return await self.lifecycle.create(name)

    async def start(self, name: str) -> DomainInfo:
        return await self.lifecycle.start(name)

    async def shutdown(self, name: str, *, reboot: bool = False, timeout: float = 30.0) -> None:
        await self.lifecycle.shutdown(name, reboot=reboot, timeout=timeout)

    async def destroy(self, name: str) -> None:
        await self.lifecycle.destroy(name)

    async def pause(self, name: str) -> None:
        await self.lifecycle.set_paused(name, True)

    async def unpause(self, name: str) -> None:
        await self.lifecycle.set_paused(name, False)

    async def exec(self, name: str, argv: builtins.list[str], *, timeout: float = 60.0,
                   stdin: bytes | None = None) -> ExecResult:
        return await self.lifecycle.exec(name, argv, timeout=timeout, stdin=stdin)

    async def up(self) -> builtins.list[DomainInfo]:
        await self.lifecycle.up()
        return self.list()

    async def down(self) -> None:
        await self.lifecycle.down()

    def scan(self, name: str, paths: builtins.list[str] | None = None, *,
             apply_policy: bool = True) -> AsyncIterator[Update]:
        """Scan what `name` wrote in sys-sec, then apply its on_infection to what is found."""
        return self.atrest.scan(name, paths or (), apply_policy=apply_policy)

    def recover_domain(self, name: str, action: str = "") -> AsyncIterator[Update]:
        """Quarantine, take offline or reset `name` (default: its on_infection)."""
        return self.atrest.recover(name, action)

    def schedule_scans(self, tick: float | None = None) -> None:
        """Scan each domain whose definition says `scan_every`, that often (looking for
        due ones every `tick` seconds)."""
        self.atrest.start_schedule(*([] if tick is None else [tick]))

    def apply_in_flight(self, sys_sec_log_dir: Path) -> None:
        """Apply on_infection when sys-sec's engine stops an infected file (its EVE log)."""
        self.atrest.start_in_flight(sys_sec_log_dir)

    async def autostart(self) -> None:
        """What the config marks to start with dom0 (`autostart = true`)."""
        await self.autostarter.on_boot()

    async def recover(self) -> None:
        """Rebuild the view of domains from xenstore and the backends after a restart."""
        await recover(self.registry, self.events)

    def supervise(self) -> None:
        """Notice domains that stop or crash by themselves, and run the autostart probes."""
        self.supervisor.start()

    async def close(self) -> None:
        await self.atrest.close()
        await self.supervisor.close()
