"""The XenbusState handshake: driven through the table, and two sides paired in memory."""
import pytest

from dom0.xenstore.xenbus import Action, Handshake, HandshakeError, Role, XenbusState, parse_state

S = XenbusState


def run_pair(first: Role) -> tuple[Handshake, Handshake, list[tuple[str, S]]]:
    """Two sides exchanging states through a fake `state` key each, until quiet."""
    sides = {Role.FRONTEND: Handshake(Role.FRONTEND), Role.BACKEND: Handshake(Role.BACKEND)}
    keys = {Role.FRONTEND: S.INITIALISING, Role.BACKEND: S.INITIALISING}
    log: list[tuple[str, S]] = []
    pending = [first, *(r for r in Role if r is not first)]
    starts = {r: sides[r].start() for r in pending}
    for role, step in starts.items():
        if step.publish is not None:
            keys[role] = step.publish
            log.append((role.value, step.publish))
    for _ in range(20):
        changed = False
        for role in pending:
            other = Role.BACKEND if role is Role.FRONTEND else Role.FRONTEND
            step = sides[role].peer_changed(keys[other])
            if step.publish is not None and step.publish != keys[role]:
                keys[role] = step.publish
                log.append((role.value, step.publish))
                changed = True
        if not changed:
            break
    return sides[Role.FRONTEND], sides[Role.BACKEND], log


@pytest.mark.parametrize("first", list(Role))
def test_handshake_reaches_connected_whoever_starts(first: Role) -> None:
    fe, be, log = run_pair(first)
    assert fe.state is S.CONNECTED and be.state is S.CONNECTED
    # The backend never connects before the frontend has published Initialised.
    assert log.index(("frontend", S.INITIALISED)) < log.index(("backend", S.CONNECTED))
    assert log.index(("backend", S.CONNECTED)) < log.index(("frontend", S.CONNECTED))


def test_connect_actions_fire_once_on_each_side() -> None:
    be = Handshake(Role.BACKEND)
    assert be.start().publish is S.INIT_WAIT
    step = be.peer_changed(S.INITIALISED)
    assert (step.publish, step.action) == (S.CONNECTED, Action.CONNECT)
    assert be.peer_changed(S.INITIALISED).action is None
    fe = Handshake(Role.FRONTEND)
    assert fe.peer_changed(S.INIT_WAIT).publish is S.INITIALISED
    assert fe.peer_changed(S.CONNECTED).action is Action.CONNECT
    assert fe.peer_changed(S.CONNECTED).action is None


def test_frontend_may_skip_initialised() -> None:
    fe = Handshake(Role.FRONTEND)
    step = fe.peer_changed(S.CONNECTED)
    assert (step.publish, step.action) == (S.CONNECTED, Action.CONNECT)


def test_teardown_goes_through_closing_to_closed() -> None:
    fe, be, _ = run_pair(Role.BACKEND)
    step = fe.close()
    assert (step.publish, step.action) == (S.CLOSING, Action.DISCONNECT)
    step = be.peer_changed(S.CLOSING)
    assert (step.publish, step.action) == (S.CLOSING, Action.DISCONNECT)
    assert fe.peer_changed(S.CLOSING).publish is S.CLOSED
    assert be.peer_changed(S.CLOSED).publish is S.CLOSED
    assert fe.close().publish is None


def test_vanished_peer_disconnects() -> None:
    fe, _, _ = run_pair(Role.FRONTEND)
    step = fe.peer_changed(S.UNKNOWN)
    assert (step.publish, step.action) == (S.CLOSED, Action.DISCONNECT)


def test_reconnect_after_close() -> None:
    be = Handshake(Role.BACKEND)
    be.start()
    be.peer_changed(S.CLOSED)
    assert be.peer_changed(S.INITIALISING).publish is S.INITIALISING


@pytest.mark.parametrize("raw,state", [(b"4", S.CONNECTED), ("1\n", S.INITIALISING),
                                       (None, S.UNKNOWN), (b"", S.UNKNOWN)])
def test_parse_state(raw: bytes | str | None, state: S) -> None:
    assert parse_state(raw) is state


@pytest.mark.parametrize("raw", [b"9", b"connected", b"-1", b"\xff"])
def test_parse_state_rejects_garbage(raw: bytes) -> None:
    with pytest.raises(HandshakeError, match="not a XenbusState"):
        parse_state(raw)
