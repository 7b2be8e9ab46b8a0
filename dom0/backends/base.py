"""The interface every backend implements; nothing above it knows which backend runs.

A backend turns a `DomainSpec` plus a domid into something running, and back. It does not
touch xenstore: the toolstack writes the layout and the agents inside the domains do the
handshakes. What a backend must provide to a domain is its xenstore socket (the only one it
can see) and the data plane of its vifs.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dom0.config import DomainSpec


class BackendError(RuntimeError):
    """A backend operation failed; the message says which domain, which step and why."""


class DomidInUse(BackendError):
    """The host already holds something under this domid that is not this backend's (another
    platform's domain, where host-wide names carry the domid): the toolstack takes another."""


class RunState(enum.Enum):
    ABSENT = "absent"        # nothing exists for this domid
    CREATED = "created"      # resources made, not yet started
    RUNNING = "running"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"    # its init exited; resources still held until destroy
    CRASHED = "crashed"      # exited abnormally


@dataclass(frozen=True)
class DomainHandle:
    """What the toolstack passes to every backend call."""

    domid: int
    spec: DomainSpec
    # Directory holding this domain's xenstore socket (`<xs rundir>/domain/<domid>`); the
    # backend makes it appear as /var/run/xenstored inside the domain.
    xenstore_dir: Path


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: bytes
    stderr: bytes


class Backend(Protocol):
    name: str
    # True where the hypervisor's own toolstack (libxl) picks the domid at create, writes
    # the domain's xenstore layout and introduces it; dom0 then adds only its own keys.
    hypervisor_owned: bool

    async def create(self, dom: DomainHandle) -> int | None:
        """Make the domain's resources (isolation, root filesystem, limits); don't start it.
        Returns the domid the hypervisor gave it, or None when it is `dom.domid`."""

    async def start(self, dom: DomainHandle) -> None:
        """Start its init, which runs the in-domain agent."""

    async def pause(self, dom: DomainHandle) -> None: ...

    async def unpause(self, dom: DomainHandle) -> None: ...

    async def shutdown(self, dom: DomainHandle, timeout: float = 10.0) -> None:
        """Stop it from outside (the polite path goes through xenstore control/shutdown)."""

    async def destroy(self, dom: DomainHandle) -> None:
        """Remove everything it had; afterwards `state` is ABSENT. Safe to call twice."""

    async def state(self, dom: DomainHandle) -> RunState: ...

    async def console(self, dom: DomainHandle) -> Path:
        """A file holding what the domain's init and agent printed."""

    async def exec(self, dom: DomainHandle, argv: list[str], timeout: float = 60.0,
                   stdin: bytes | None = None) -> ExecResult: ...

    async def add_vif(self, frontend: DomainHandle, backend: DomainHandle, devid: int) -> None:
        """The data plane of vif `devid`: `vif<domid>.<devid>` in the backend domain,
        `eth<devid>` in the frontend. Addressing is left to the agents."""

    async def remove_vif(self, frontend: DomainHandle, backend: DomainHandle, devid: int) -> None:
        ...

    async def list_domids(self) -> list[int]:
        """domids this backend still holds resources for (recovery after a dom0 restart)."""
