"""A rule keyword's entry, as each module of this package declares its keywords.

An entry names the keyword and its aliases, says what it does, links Suricata's
documentation, and gives `setup(builder, value)` (parse-time: validate the value and
install what the rule will check) and, where the keyword tests something at match
time, that `match` function. Adding a keyword is adding one entry in one module; `table`
collects them (the modules import this package, never the table, so nothing is circular).
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
