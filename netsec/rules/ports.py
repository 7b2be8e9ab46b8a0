"""Rule port matchers: `any`, `80`, `[80,443]`, `1024:`, `:1023`, `!80`, `$HTTP_PORTS`."""
from __future__ import annotations

from netsec.rules.errors import RuleError
from netsec.rules.groups import GroupParser, IntervalSet
from netsec.rules.variables import Variables

_TOP = 65535


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > _TOP:
        raise RuleError(f"port: bad port {text!r}")
    return int(text)


def _atom(text: str) -> tuple[int, int]:
    if ":" in text:
        lo, _, hi = text.partition(":")
        a = _port(lo.strip()) if lo.strip() else 0
        b = _port(hi.strip()) if hi.strip() else _TOP
        if a > b:
            raise RuleError(f"port: empty range {text!r}")
        return a, b
    p = _port(text)
    return p, p


class PortMatcher:
    __slots__ = ("text", "_set", "is_any")

    def __init__(self, text: str, variables: Variables) -> None:
        self.text = text
        self._set = IntervalSet(GroupParser("port", _TOP, _atom, variables.port).parse(text),
                                _TOP)
        self.is_any = self._set.is_any

    def match(self, port: int) -> bool:
        return self.is_any or self._set.contains(port)

    def __repr__(self) -> str:
        return f"PortMatcher({self.text!r})"
