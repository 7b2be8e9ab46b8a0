"""flowint: per-flow integer variables. `=`, `+`, `-` change a variable after the whole
rule matched; `==`, `!=`, `<`, `<=`, `>`, `>=`, `isset`, `notset` (`isnotset`) test it.

The integers live in the flow's `detect_state` under "flowint", beside the detector's
own bookkeeping, so they last as long as the flow.
"""
from __future__ import annotations

import operator
import re

from netsec.inspection import Inspection
from netsec.rules.errors import RuleError
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder

_URL = DOCS + "flowint.html"
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_TESTS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
          ">": operator.gt, ">=": operator.ge}
_KEY = "flowint"


def _vars(ins: Inspection) -> dict[str, int] | None:
    return None if ins.flow is None else ins.flow.detect_state.setdefault(_KEY, {})


def setup_flowint(b: Builder, value: str | None) -> None:
    parts = [p.strip() for p in (value or "").split(",")]
    if len(parts) < 2 or not _NAME.fullmatch(parts[0]):
        raise RuleError(f"flowint: want name,operator[,value], got {value!r}")
    name, op = parts[0], parts[1]
    if op in ("isset", "notset", "isnotset"):
        if len(parts) != 2:
            raise RuleError(f"flowint: {op} takes no value")
        want = op == "isset"

        def check_set(ins: Inspection) -> bool:
            v = _vars(ins)
            return v is not None and (name in v) == want
        b.checks.append(check_set)
        return
    if len(parts) != 3:
        raise RuleError(f"flowint: {op} needs one value")
    arg = parts[2]
    if not arg.isdigit() and not _NAME.fullmatch(arg):
        raise RuleError(f"flowint: bad value {arg!r}")

    def operand(v: dict[str, int]) -> int | None:
        return int(arg) if arg.isdigit() else v.get(arg)

    if op in _TESTS:
        test = _TESTS[op]

        def check(ins: Inspection) -> bool:
            v = _vars(ins)
            if v is None or name not in v:
                return False
            other = operand(v)
            return other is not None and test(v[name], other)
        b.checks.append(check)
    elif op in ("=", "+", "-"):
        def apply(ins: Inspection) -> None:
            v = _vars(ins)
            if v is None:
                return
            n = operand(v)
            if n is None:
                return
            if op == "=" or name not in v:
                # An unset variable starts at the value, as Suricata's add/sub do.
                v[name] = n
            else:
                v[name] = v[name] + n if op == "+" else v[name] - n
        b.post.append(apply)
    else:
        raise RuleError(f"flowint: unknown operator {op!r}")


KEYWORDS = (Keyword("flowint", setup_flowint, "per-flow integer variables", _URL),)
