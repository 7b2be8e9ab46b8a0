"""What dom0 tells its clients about domains: the records the toolstack keeps and publishes.

The control API and the CLI render these; the toolstack produces them. Kept apart from both
so that neither imports the other.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class DomainState(enum.Enum):
    """Lifecycle states, named as `xl list` shows them (r b p s c d) plus the two ends."""

    DEFINED = "defined"      # in the config dir, not created
    CREATED = "created"      # resources and xenstore layout exist, not started
    RUNNING = "running"      # r
    PAUSED = "paused"        # p
    SHUTDOWN = "shutdown"    # s: shutting down or shut down, not yet destroyed
    CRASHED = "crashed"      # c
    DYING = "dying"          # d: being destroyed

    @property
    def xl_flags(self) -> str:
        """The six-column state field of `xl list`."""
        letter = {"running": "r", "paused": "p", "shutdown": "s", "crashed": "c",
                  "dying": "d"}.get(self.value)
        if letter is None:
            return "------"
        cols = "rbpscd"
        return "".join(c if c == letter else "-" for c in cols)


@dataclass(frozen=True)
class DomainInfo:
    name: str
    domid: int | None          # None while only defined
    uuid: str | None
    kind: str
    backend: str
    memory_mb: int
    vcpus: int
    policy: str
    state: DomainState
    cpu_time: float = 0.0      # seconds of CPU used, like xl list's Time(s)
    users: tuple[str, ...] = ()


class EventKind(enum.Enum):
    CREATED = "created"
    STARTED = "started"
    PAUSED = "paused"
    UNPAUSED = "unpaused"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"
    DESTROYED = "destroyed"
    VIF_CONNECTED = "vif-connected"
    ERROR = "error"
    SCAN = "scan"              # a scan at rest started, found something, finished
    RECOVERY = "recovery"      # a step of recovering a domain


@dataclass(frozen=True)
class DomainEvent:
    kind: EventKind
    domain: str
    domid: int | None
    detail: str = ""
    timestamp: float = field(default_factory=time.time)


class ToolstackError(Exception):
    """Base of errors shown to a user; the message is written for a person to act on."""


class UnknownDomain(ToolstackError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no domain named {name!r} (see `hyperwall list`)")
        self.name = name


class InvalidState(ToolstackError):
    """The operation does not apply to the domain's current state."""


class PermissionRefused(ToolstackError):
    """The caller may not see or use this domain."""
