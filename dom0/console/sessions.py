"""Who is logged in to the console: one-time login tokens, sessions and their CSRF tokens.

Sans-IO: the caller passes the time in (`now`, seconds, monotonic or wall: only differences
matter) and gets values or errors back; the web shell keeps one `SessionStore`.

- A login token is minted for a local user whose identity the kernel told us (SO_PEERCRED
  on the console's own socket). It is good once, for TOKEN_TTL seconds.
- Redeeming it opens a session: a random id (the cookie), the user's `Caller`, an end
  SESSION_TTL later. A session does not outlive its end, nor a logout.
- Each session's CSRF token is an HMAC of its id under a key of this process, so forms need
  no server-side table and a token of one session is worthless in another.

Every comparison of a secret is constant-time (hmac.compare_digest), and a lookup by
secret goes through a digest of it so that the dict's own string compare leaks nothing
usable about the stored value.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from dom0.api.auth import Caller

TOKEN_TTL = 120.0
SESSION_TTL = 8 * 3600.0
# Any local user may ask for tokens: bound what an unredeemed flood can hold.
MAX_PENDING_TOKENS = 1024
MAX_SESSIONS = 1024
_SECRET_BYTES = 32


class SessionError(Exception):
    """A token or a session that is not (or no longer) good; the message says which and why,
    without repeating the secret."""


@dataclass(frozen=True)
class Session:
    id: str
    caller: Caller
    created: float
    expires: float


@dataclass(frozen=True)
class _Pending:
    caller: Caller
    expires: float


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionStore:
    def __init__(self, *, key: bytes | None = None, token_ttl: float = TOKEN_TTL,
                 session_ttl: float = SESSION_TTL) -> None:
        self._hmac_key = key if key is not None else secrets.token_bytes(_SECRET_BYTES)
        self.token_ttl, self.session_ttl = token_ttl, session_ttl
        self._tokens: dict[str, _Pending] = {}
        self._sessions: dict[str, Session] = {}

    # -- login tokens -----------------------------------------------------------------------

    def mint_token(self, caller: Caller, now: float) -> str:
        self._expire(now)
        if len(self._tokens) >= MAX_PENDING_TOKENS:
            raise SessionError(f"too many login links waiting ({MAX_PENDING_TOKENS}); use "
                               "one or wait two minutes")
        token = secrets.token_urlsafe(_SECRET_BYTES)
        self._tokens[_key(token)] = _Pending(caller, now + self.token_ttl)
        return token

    def redeem(self, token: str, now: float) -> Session:
        """Spend a login token (it is gone whatever the outcome) for a new session."""
        pending = self._tokens.pop(_key(token), None)
        if pending is None:
            raise SessionError("this login link is not valid or was used already: run "
                               "`hyperwall console` for a new one")
        if now >= pending.expires:
            raise SessionError(f"this login link expired (links last {self.token_ttl:.0f} s): "
                               "run `hyperwall console` for a new one")
        self._expire(now)
        if len(self._sessions) >= MAX_SESSIONS:
            raise SessionError(f"too many open sessions ({MAX_SESSIONS}); log out of one")
        sid = secrets.token_urlsafe(_SECRET_BYTES)
        session = Session(sid, pending.caller, now, now + self.session_ttl)
        self._sessions[_key(sid)] = session
        return session

    # -- sessions ---------------------------------------------------------------------------

    def get(self, sid: str | None, now: float) -> Session | None:
        """The live session of this cookie value, or None (absent, unknown, ended)."""
        if not sid:
            return None
        session = self._sessions.get(_key(sid))
        if session is None or not sid.isascii() or not hmac.compare_digest(session.id, sid):
            return None
        if now >= session.expires:
            del self._sessions[_key(sid)]
            return None
        return session

    def logout(self, sid: str) -> None:
        self._sessions.pop(_key(sid), None)

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._hmac_key, b"csrf\0" + session.id.encode(),
                        hashlib.sha256).hexdigest()

    def check_csrf(self, session: Session, token: str | None) -> bool:
        # compare_digest refuses non-ASCII str: a crafted token must be a plain refusal.
        return (token is not None and token.isascii()
                and hmac.compare_digest(self.csrf_token(session), token))

    def _expire(self, now: float) -> None:
        for k in [k for k, t in self._tokens.items() if now >= t.expires]:
            del self._tokens[k]
        for k in [k for k, s in self._sessions.items() if now >= s.expires]:
            del self._sessions[k]
