"""The XenbusState handshake of a split device, as a table (sans-IO).

Each side of a device (frontend in the guest, backend in the driver domain) holds a
`Handshake`. It is fed the other side's state whenever that `state` key changes, and
answers with what to do: publish a new own state, bring the data plane up, or tear it down.
The order follows xenbus.h: both start at Initialising; the backend publishes its features
and goes to InitWait; the frontend publishes its side and goes to Initialised; the backend
connects (Connected); the frontend connects. Teardown goes through Closing to Closed.
Either side may skip InitWait or Initialised, as Xen allows.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class XenbusState(enum.IntEnum):
    UNKNOWN = 0
    INITIALISING = 1
    INIT_WAIT = 2
    INITIALISED = 3
    CONNECTED = 4
    CLOSING = 5
    CLOSED = 6
    RECONFIGURING = 7
    RECONFIGURED = 8


class Role(enum.Enum):
    FRONTEND = "frontend"
    BACKEND = "backend"


class Action(enum.Enum):
    CONNECT = "connect"        # bring the data plane up (configure the interface)
    DISCONNECT = "disconnect"  # take it down


@dataclass(frozen=True)
class Step:
    publish: XenbusState | None = None   # write this as our own `state`
    action: Action | None = None


class HandshakeError(ValueError):
    """The peer reported a state that is not a XenbusState."""


S = XenbusState
# (role, own state, peer state) -> what to do. A pair not in the table means "nothing yet".
_TABLE: dict[tuple[Role, XenbusState, XenbusState], Step] = {}
for _peer in (S.INITIALISING, S.INIT_WAIT, S.INITIALISED, S.CONNECTED):
    # The backend advertises itself as soon as it runs, whatever the frontend did so far.
    _TABLE[(Role.BACKEND, S.INITIALISING, _peer)] = Step(publish=S.INIT_WAIT)
for _own in (S.INITIALISING, S.INIT_WAIT):
    # The frontend has published its side: the backend connects.
    _TABLE[(Role.BACKEND, _own, S.INITIALISED)] = Step(publish=S.CONNECTED, action=Action.CONNECT)
    _TABLE[(Role.BACKEND, _own, S.CONNECTED)] = Step(publish=S.CONNECTED, action=Action.CONNECT)
_TABLE[(Role.BACKEND, S.INIT_WAIT, S.INITIALISED)] = Step(publish=S.CONNECTED,
                                                         action=Action.CONNECT)
for _peer in (S.INIT_WAIT, S.CONNECTED):
    # The backend is ready for us: publish our side; connect once the backend has.
    _TABLE[(Role.FRONTEND, S.INITIALISING, _peer)] = Step(publish=S.INITIALISED)
_TABLE[(Role.FRONTEND, S.INITIALISED, S.CONNECTED)] = Step(publish=S.CONNECTED,
                                                          action=Action.CONNECT)
_TABLE[(Role.FRONTEND, S.INITIALISING, S.CONNECTED)] = Step(publish=S.CONNECTED,
                                                           action=Action.CONNECT)
for _role in Role:
    for _own in (S.INITIALISING, S.INIT_WAIT, S.INITIALISED, S.CONNECTED):
        # The peer is going away: follow it down.
        _TABLE[(_role, _own, S.CLOSING)] = Step(publish=S.CLOSING, action=Action.DISCONNECT)
        _TABLE[(_role, _own, S.CLOSED)] = Step(publish=S.CLOSED, action=Action.DISCONNECT)
    _TABLE[(_role, S.CLOSING, S.CLOSING)] = Step(publish=S.CLOSED)
    _TABLE[(_role, S.CLOSING, S.CLOSED)] = Step(publish=S.CLOSED)
    # A peer that comes back after a close restarts the handshake from the beginning.
    _TABLE[(_role, S.CLOSED, S.INITIALISING)] = Step(publish=S.INITIALISING)
del _peer, _own, _role


def parse_state(untrusted_value: bytes | str | None) -> XenbusState:
    """A `state` key's value; a missing key reads as Unknown (the device is gone)."""
    if untrusted_value is None or untrusted_value in (b"", ""):
        return S.UNKNOWN
    text = untrusted_value.decode("ascii", "replace") if isinstance(
        untrusted_value, bytes) else untrusted_value
    try:
        return XenbusState(int(text.strip()))
    except ValueError:
        raise HandshakeError(f"{text!r} is not a XenbusState") from None


class Handshake:
    """One side of one device. `start()` first, then `peer_changed()` on every change."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self.state = S.INITIALISING

    def start(self) -> Step:
        """The backend advertises itself at once; the frontend waits for the backend."""
        if self.role is Role.BACKEND:
            return self._apply(Step(publish=S.INIT_WAIT))
        return self._apply(Step(publish=S.INITIALISING))

    def peer_changed(self, peer: XenbusState) -> Step:
        if peer is S.UNKNOWN and self.state not in (S.CLOSED, S.INITIALISING):
            # The peer's directory vanished: the device is gone.
            return self._apply(Step(publish=S.CLOSED, action=Action.DISCONNECT))
        return self._apply(_TABLE.get((self.role, self.state, peer), Step()))

    def close(self) -> Step:
        """Our own side asks to go away (domain shutting down)."""
        if self.state in (S.CLOSING, S.CLOSED):
            return Step()
        return self._apply(Step(publish=S.CLOSING, action=Action.DISCONNECT))

    def _apply(self, step: Step) -> Step:
        if step.publish is not None:
            if step.publish is self.state and step.action is None:
                return Step()
            self.state = step.publish
        return step
