"""Suricata's shared unsigned-integer grammar (ttl, dsize, itype, icode, bsize, urilen...).

Forms: `5`, `!5`, `<5`, `>5`, `<=5`, `>=5`, `1<>5` and `1-5` (both ends excluded, as
Suricata's DETECT_UINT_RA). Parsed once at setup into a predicate on ints.
"""
from __future__ import annotations

import operator
import re
from collections.abc import Callable

from netsec.rules.errors import RuleError

_RANGE = re.compile(r"^\s*(\d+)\s*(?:<>|-)\s*(\d+)\s*$")
_UNARY = re.compile(r"^\s*(<=|>=|<|>|!=|!|=)?\s*(\d+)\s*$")
_OPS = {None: operator.eq, "=": operator.eq, "!": operator.ne, "!=": operator.ne,
        "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}


def parse_uint(text: str, keyword: str, maximum: int = 2**64 - 1) -> Callable[[int], bool]:
    """A predicate for `text`; RuleError naming `keyword` on a bad value."""
    m = _RANGE.match(text)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo >= hi or hi > maximum:
            raise RuleError(f"{keyword}: bad range {text!r}")
        return lambda v: lo < v < hi
    m = _UNARY.match(text)
    if not m:
        raise RuleError(f"{keyword}: bad value {text!r}")
    n = int(m.group(2))
    if n > maximum:
        raise RuleError(f"{keyword}: {n} is above {maximum}")
    op = _OPS[m.group(1)]
    return lambda v: op(v, n)
