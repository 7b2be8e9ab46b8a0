"""The keyword table: every rule keyword Hyperwall knows, one entry each, by name and alias."""
from __future__ import annotations

from netsec.rules.errors import RuleError
from netsec.rules.keywords import (
    Keyword,
    buffers,
    bytes_,
    content,
    events,
    files,
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


def _build() -> dict[str, Keyword]:
    table: dict[str, Keyword] = {}
    for mod in (meta, content, pcre, bytes_, buffers, transforms, flow, flowbits, flowint,
                threshold, header, xbits, stream_size, events, files):
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
