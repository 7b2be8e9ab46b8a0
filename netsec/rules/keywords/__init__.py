"""The keyword table: every rule keyword Hyperwall knows, one entry each.

An entry names the keyword and its aliases, says what it does, links Suricata's
documentation, and gives `setup(builder, value)` (parse-time: validate the value and
install what the rule will check) and, where the keyword tests something at match
time, that `match` function. Adding a keyword is adding one entry in one module.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netsec.rules.errors import RuleError

DOCS = "https://docs.suricata.io/en/latest/rules/"


@dataclass(frozen=True, slots=True)
class Keyword:
    name: str
    setup: Callable[[Any, str | None], None]
    description: str
    url: str
    match: Callable[..., Any] | None = None
    aliases: tuple[str, ...] = ()
    value: bool | None = True   # True: needs a value; False: takes none; None: either


def unquote(value: str, keyword: str) -> str:
    v = value.strip()
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    raise RuleError(f"{keyword}: value must be quoted: {value!r}")


def _build() -> dict[str, Keyword]:
    from netsec.rules.keywords import (
        buffers,
        bytes_,
        content,
        events,
        flow,
        flowbits,
        flowint,
        header,
        meta,
        pcre,
        stream_size,
        threshold,
        transforms,
        xbits,
    )
    table: dict[str, Keyword] = {}
    for mod in (meta, content, pcre, bytes_, buffers, transforms, flow, flowbits, flowint,
                threshold, header, xbits, stream_size, events):
        for kw in mod.KEYWORDS:
            for name in (kw.name, *kw.aliases):
                if name in table:
                    raise AssertionError(f"keyword {name} registered twice")
                table[name] = kw
    return table


TABLE = _build()


def lookup(name: str) -> Keyword:
    try:
        return TABLE[name]
    except KeyError:
        raise RuleError(f"{name}: unsupported keyword") from None
