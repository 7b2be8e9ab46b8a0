"""Xen's node permissions: a list of (domid, access), entry 0 naming the owner.

Access letters: `n` none, `r` read, `w` write, `b` both. The check, in order: a privileged
connection may do anything; the owner (or a domain whose target is the owner) may do
anything; otherwise the first later entry naming the caller applies; otherwise entry 0's
letter applies to everyone not listed.
"""
from __future__ import annotations

from dom0.xenstore.wire import XsError

NONE, READ, WRITE, BOTH = 0, 1, 2, 3
_LETTERS = {"n": NONE, "r": READ, "w": WRITE, "b": BOTH}
_NAMES = "nrwb"
DOMID_MAX = 0x7FF4   # DOMID_FIRST_RESERVED - 1: higher ids name no domain

Perms = tuple[tuple[int, int], ...]   # ((domid, access), ...), never empty


class PermsError(XsError, ValueError):
    """EINVAL: a permission entry that cannot be parsed."""

    def __init__(self, detail: str) -> None:
        super().__init__("EINVAL", detail=detail)


def parse(untrusted: list[bytes]) -> Perms:
    if not untrusted:
        raise PermsError("no permission entries")
    out = []
    for entry in untrusted:
        text = entry.decode("ascii", "replace")
        if len(text) < 2 or text[0] not in _LETTERS or not text[1:].isdigit():
            raise PermsError(f"bad permission entry {text[:16]!r}")
        domid = int(text[1:])
        if domid > DOMID_MAX:
            raise PermsError(f"domid {domid} out of range")
        out.append((domid, _LETTERS[text[0]]))
    return tuple(out)


def letter(access: int) -> str:
    return _NAMES[access]


def format_perms(perms: Perms) -> bytes:
    return b"".join(f"{letter(a)}{d}".encode() + b"\0" for d, a in perms)


def allowed(perms: Perms, domid: int, want: int, target: int | None = None) -> bool:
    """May unprivileged `domid` (acting also for `target`, if set) do `want`?"""
    owner = perms[0][0]
    if owner == domid or (target is not None and owner == target):
        return True
    for d, access in perms[1:]:
        if d == domid:
            return access & want == want
    return perms[0][1] & want == want


def without_domain(perms: Perms, domid: int) -> Perms:
    """The entries after entry 0 that do not name `domid` (a released domain)."""
    return (perms[0], *(p for p in perms[1:] if p[0] != domid))


DOM0_ONLY: Perms = ((0, NONE),)
