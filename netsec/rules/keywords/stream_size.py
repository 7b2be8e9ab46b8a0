"""stream_size: `<server|client|both|either>,<op>,<bytes>` on the TCP stream sizes.

Suricata compares next_seq - isn per side, which counts the SYN as one byte; the flow
table keeps each side's reassembly `Stream` in `flow.streams` ([0] server->client,
[1] client->server) with `next` the in-order payload bytes so far, so the size is
`next + 1`. Flows without streams (UDP, no handshake) never match, as in Suricata.
"""
from __future__ import annotations

import operator
from collections.abc import Callable

from netsec.inspection import Inspection
from netsec.rules.errors import RuleError
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder

_URL = DOCS + "flow-keywords.html#stream-size"
_OPS: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt, ">": operator.gt, "=": operator.eq, "!=": operator.ne,
    "<=": operator.le, ">=": operator.ge}


def _sizes(ins: Inspection) -> tuple[int, int] | None:
    streams = getattr(ins.flow, "streams", None)
    if not streams or streams[0] is None or streams[1] is None:
        return None
    return streams[1].next + 1, streams[0].next + 1   # client, server


def setup_stream_size(b: Builder, value: str | None) -> None:
    parts = [p.strip() for p in (value or "").split(",")]
    if len(parts) != 3 or parts[0] not in ("server", "client", "both", "either"):
        raise RuleError(f"stream_size: want server|client|both|either,op,bytes, got {value!r}")
    side, op, num = parts
    if op not in _OPS or not num.isdigit():
        raise RuleError(f"stream_size: bad operator or size in {value!r}")
    test, n = _OPS[op], int(num)

    def check(ins: Inspection) -> bool:
        sizes = _sizes(ins)
        if sizes is None:
            return False
        c, s = test(sizes[0], n), test(sizes[1], n)
        if side == "client":
            return c
        if side == "server":
            return s
        return (c and s) if side == "both" else (c or s)
    b.checks.append(check)


KEYWORDS = (Keyword("stream_size", setup_stream_size, "TCP stream sizes per side", _URL),)
