"""xbits: named bits on a host (track ip_src / ip_dst) or an address pair (ip_pair) that
outlive flows, with an optional expiry in seconds of packet time.

The bits live in one `HostBits` store per rule set (the loader shares it between rules);
set/unset/toggle apply after the whole rule matched, isset/isnotset test at match time.
"""
from __future__ import annotations

import math
import re

from netsec.inspection import Inspection
from netsec.rules.errors import RuleError
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder

_URL = DOCS + "xbits.html"
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


class HostBits:
    """(name, host key) -> expiry time (packet seconds); math.inf when it never expires."""

    def __init__(self) -> None:
        self.bits: dict[tuple[str, object], float] = {}

    def isset(self, name: str, key: object, now: float) -> bool:
        exp = self.bits.get((name, key))
        return exp is not None and now <= exp


def _key(track: str, ins: Inspection) -> object:
    p = ins.packet
    if track == "ip_src":
        return p.src
    if track == "ip_dst":
        return p.dst
    return (p.src, p.dst) if p.src <= p.dst else (p.dst, p.src)


def setup_xbits(b: Builder, value: str | None) -> None:
    parts = [x.strip() for x in (value or "").split(",")]
    if len(parts) < 3:
        raise RuleError(f"xbits: want command,name,track <ip_src|ip_dst|ip_pair>, got {value!r}")
    cmd, name = parts[0], parts[1]
    if not _NAME.fullmatch(name):
        raise RuleError(f"xbits: bad name {name!r}")
    track, expire = "", math.inf
    for opt in parts[2:]:
        key, _, arg = opt.partition(" ")
        arg = arg.strip()
        if key == "track" and arg in ("ip_src", "ip_dst", "ip_pair"):
            track = arg
        elif key == "expire" and arg.isdigit():
            expire = float(int(arg))
        else:
            raise RuleError(f"xbits: bad option {opt!r}")
    if not track:
        raise RuleError("xbits: track is required")
    store: HostBits = b.shared.setdefault("xbits", HostBits())
    bits = store.bits
    if cmd == "isset":
        b.rule.flowbits_read.add(f"xbits:{name}")
        b.checks.append(lambda ins: store.isset(name, _key(track, ins), ins.packet.ts))
    elif cmd == "isnotset":
        b.rule.flowbits_read.add(f"xbits:{name}")
        b.checks.append(lambda ins: not store.isset(name, _key(track, ins), ins.packet.ts))
    elif cmd in ("set", "unset", "toggle"):
        b.rule.flowbits_set.add(f"xbits:{name}")

        def apply(ins: Inspection) -> None:
            k = (name, _key(track, ins))
            now = ins.packet.ts
            if cmd == "unset" or (cmd == "toggle" and store.isset(name, k[1], now)):
                bits.pop(k, None)
            else:
                bits[k] = now + expire
        b.post.append(apply)
    else:
        raise RuleError(f"xbits: unknown command {cmd!r}")


KEYWORDS = (Keyword("xbits", setup_xbits, "bits on a host or address pair, across flows",
                    _URL),)
