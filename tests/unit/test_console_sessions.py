"""The console's login tokens, sessions and CSRF tokens (sans-IO: time is passed in)."""
from __future__ import annotations

import pytest

from dom0.api.auth import Caller
from dom0.console import sessions
from dom0.console.sessions import SessionError, SessionStore

ALICE = Caller(uid=1002, user="alice", owner=False)
OLGA = Caller(uid=1001, user="olga", owner=True)


def test_a_token_opens_a_session_for_its_user_once() -> None:
    store = SessionStore()
    token = store.mint_token(ALICE, now=0)
    session = store.redeem(token, now=1)
    assert session.caller == ALICE and session.expires == 1 + sessions.SESSION_TTL
    assert store.get(session.id, now=2) == session
    with pytest.raises(SessionError, match="used already"):
        store.redeem(token, now=2)


def test_a_token_expires_after_two_minutes_and_is_spent_anyway() -> None:
    store = SessionStore()
    token = store.mint_token(ALICE, now=0)
    with pytest.raises(SessionError, match="expired"):
        store.redeem(token, now=sessions.TOKEN_TTL)
    with pytest.raises(SessionError, match="used already"):
        store.redeem(token, now=0)


def test_unknown_and_crafted_tokens_are_refused_without_echo() -> None:
    store = SessionStore()
    for bad in ("", "x" * 43, "é" * 10):
        with pytest.raises(SessionError) as err:
            store.redeem(bad, now=0)
        assert bad not in str(err.value) or not bad


def test_sessions_end_after_eight_hours_and_on_logout() -> None:
    store = SessionStore()
    a = store.redeem(store.mint_token(ALICE, 0), 0)
    b = store.redeem(store.mint_token(OLGA, 0), 0)
    assert a.id != b.id and len(a.id) >= 40
    assert store.get(a.id, sessions.SESSION_TTL - 1) == a
    assert store.get(a.id, sessions.SESSION_TTL) is None
    store.logout(b.id)
    assert store.get(b.id, 1) is None
    assert store.get(None, 1) is None and store.get("", 1) is None
    assert store.get("ünicode", 1) is None


def test_csrf_token_is_bound_to_its_session_and_key() -> None:
    store = SessionStore(key=b"k" * 32)
    a = store.redeem(store.mint_token(ALICE, 0), 0)
    b = store.redeem(store.mint_token(ALICE, 0), 0)
    ta = store.csrf_token(a)
    assert store.check_csrf(a, ta)
    assert not store.check_csrf(b, ta)
    assert not store.check_csrf(a, None) and not store.check_csrf(a, "")
    assert not store.check_csrf(a, "é")
    assert not SessionStore(key=b"j" * 32).check_csrf(a, ta)


def test_pending_tokens_are_bounded_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_PENDING_TOKENS", 3)
    store = SessionStore()
    for _ in range(3):
        store.mint_token(ALICE, 0)
    with pytest.raises(SessionError, match="too many"):
        store.mint_token(ALICE, 1)
    store.mint_token(ALICE, sessions.TOKEN_TTL)  # the first three expired meanwhile
