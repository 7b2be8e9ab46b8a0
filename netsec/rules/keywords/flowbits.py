"""flowbits: set, unset, toggle (applied after the whole rule matched), isset, isnotset
(checked at match), noalert. `a|b` means any of them, `a&b` all of them."""
from __future__ import annotations

import re
from collections.abc import Callable

from netsec.inspection import Inspection
from netsec.rules.errors import RuleError
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder, Check

_URL = DOCS + "flow-keywords.html#flowbits"
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _names(text: str, sep: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(sep))
    for n in names:
        if not _NAME.fullmatch(n):
            raise RuleError(f"flowbits: bad name {n!r}")
    return names


def _isset_any(names: tuple[str, ...]) -> Check:
    def check(ins: Inspection) -> bool:
        return ins.flow is not None and any(n in ins.flow.flowbits for n in names)
    return check


def _isset_all(names: tuple[str, ...]) -> Check:
    def check(ins: Inspection) -> bool:
        return ins.flow is not None and all(n in ins.flow.flowbits for n in names)
    return check


def _isnotset_any(names: tuple[str, ...]) -> Check:
    def check(ins: Inspection) -> bool:
        return ins.flow is None or any(n not in ins.flow.flowbits for n in names)
    return check


def _isnotset_all(names: tuple[str, ...]) -> Check:
    def check(ins: Inspection) -> bool:
        return ins.flow is None or all(n not in ins.flow.flowbits for n in names)
    return check


def _change(cmd: str, names: tuple[str, ...]) -> Callable[[Inspection], None]:
    def apply(ins: Inspection) -> None:
        if ins.flow is None:
            return
        bits = ins.flow.flowbits
        for n in names:
            if cmd == "set":
                bits.add(n)
            elif cmd == "unset":
                bits.discard(n)
            elif n in bits:
                bits.discard(n)
            else:
                bits.add(n)
    return apply


def setup_flowbits(b: Builder, value: str | None) -> None:
    cmd, _, arg = (value or "").partition(",")
    cmd, arg = cmd.strip(), arg.strip()
    if cmd == "noalert":
        if arg:
            raise RuleError("flowbits: noalert takes no name")
        b.rule.noalert = True
        return
    if not arg:
        raise RuleError(f"flowbits: {cmd or '(empty)'} needs a name")
    if cmd in ("isset", "isnotset"):
        b.rule.flowbits_read.update(re.split(r"[|&]", arg.replace(" ", "")))
        if "|" in arg:
            names = _names(arg, "|")
            b.checks.append(_isset_any(names) if cmd == "isset" else _isnotset_any(names))
        else:
            names = _names(arg, "&")
            b.checks.append(_isset_all(names) if cmd == "isset" else _isnotset_all(names))
    elif cmd in ("set", "unset", "toggle"):
        if "|" in arg:
            raise RuleError(f"flowbits: {cmd} cannot take an OR group")
        names = _names(arg, "&")
        b.rule.flowbits_set.update(names)
        b.post.append(_change(cmd, names))
    else:
        raise RuleError(f"flowbits: unknown command {cmd!r}")


KEYWORDS = (Keyword("flowbits", setup_flowbits, "per-flow named bits", _URL),)
