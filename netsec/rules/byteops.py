"""byte_test, byte_jump and byte_extract as inspection-chain items.

They read `nbytes` at `offset` (from the previous match's end when relative), as a
big- or little-endian number or as text in base 10/16/8 (`string,dec|hex|oct`), then
mask (shifting right by the mask's trailing zeros, as Suricata does).
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

from netsec.rules.content_inspection import NOMATCH, Ctx, Item, _value, run

_STRING_DIGITS = {10: frozenset(b"0123456789"), 16: frozenset(b"0123456789abcdefABCDEF"),
                  8: frozenset(b"01234567")}
OPS: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt, ">": operator.gt, "=": operator.eq, "<=": operator.le,
    ">=": operator.ge, "&": lambda a, b: (a & b) != 0, "^": lambda a, b: (a ^ b) != 0}


class ByteRead:
    """How to read one number: width, endianness or text base, bitmask."""

    __slots__ = ("nbytes", "little", "base", "mask", "shift")

    def __init__(self, nbytes: int, little: bool, base: int | None, mask: int) -> None:
        self.nbytes, self.little, self.base, self.mask = nbytes, little, base, mask
        self.shift = (mask & -mask).bit_length() - 1 if mask else 0

    def read(self, buf: bytes, pos: int) -> int | None:
        # A string read of 0 bytes takes the rest of the buffer (Suricata 7).
        end = pos + self.nbytes if self.nbytes else len(buf)
        if pos < 0 or end > len(buf) or pos >= end:
            return None
        chunk = buf[pos:end]
        if self.base is None:
            val = int.from_bytes(chunk, "little" if self.little else "big")
        else:
            # Suricata reads the leading digits of the field; none at all fails.
            digits = _STRING_DIGITS[self.base]
            n = 0
            while n < len(chunk) and chunk[n] in digits:
                n += 1
            if n == 0:
                return None
            val = int(chunk[:n], self.base)
        if self.mask:
            val = (val & self.mask) >> self.shift
        return val


class ByteTest(Item):
    __slots__ = ("reader", "offset", "op", "negated", "value", "relative", "relnext")

    def __init__(self, reader: ByteRead, offset: int | str, op: str, negated: bool,
                 value: int | str, relative: bool) -> None:
        self.reader, self.offset, self.op = reader, offset, OPS[op]
        self.negated, self.value, self.relative = negated, value, relative
        self.relnext = False

    def inspect(self, items: Sequence[Item], i: int, ctx: Ctx, off: int) -> int:
        pos = _value(self.offset, ctx) + (off if self.relative else 0)
        val = self.reader.read(ctx.buf, pos)
        if val is None or self.op(val, _value(self.value, ctx)) == self.negated:
            return NOMATCH
        return run(items, i + 1, ctx, off)


class ByteJump(Item):
    __slots__ = ("reader", "offset", "relative", "relnext", "multiplier", "align",
                 "from_beginning", "from_end", "post_offset")

    def __init__(self, reader: ByteRead, offset: int | str, relative: bool, multiplier: int,
                 align: bool, from_beginning: bool, from_end: bool, post_offset: int) -> None:
        self.reader, self.offset, self.relative = reader, offset, relative
        self.multiplier, self.align = multiplier, align
        self.from_beginning, self.from_end, self.post_offset = from_beginning, from_end, post_offset
        self.relnext = False

    def inspect(self, items: Sequence[Item], i: int, ctx: Ctx, off: int) -> int:
        buf = ctx.buf
        pos = _value(self.offset, ctx) + (off if self.relative else 0)
        val = self.reader.read(buf, pos)
        if val is None:
            return NOMATCH
        val *= self.multiplier
        if self.align and val % 4:
            val += 4 - val % 4
        if self.from_beginning:
            target = val
        elif self.from_end:
            target = len(buf) + val
        else:
            target = pos + self.reader.nbytes + val
        target += self.post_offset
        # Suricata refuses a jump outside the buffer (its last byte included, its end not).
        if target < 0 or target >= len(buf):
            return NOMATCH
        return run(items, i + 1, ctx, target)


class ByteExtract(Item):
    __slots__ = ("reader", "offset", "name", "relative", "relnext", "multiplier", "align")

    def __init__(self, reader: ByteRead, offset: int, name: str, relative: bool,
                 multiplier: int, align: int) -> None:
        self.reader, self.offset, self.name, self.relative = reader, offset, name, relative
        self.multiplier, self.align = multiplier, align
        self.relnext = False

    def inspect(self, items: Sequence[Item], i: int, ctx: Ctx, off: int) -> int:
        pos = self.offset + (off if self.relative else 0)
        val = self.reader.read(ctx.buf, pos)
        if val is None:
            return NOMATCH
        val *= self.multiplier
        if self.align and val % self.align:
            val += self.align - val % self.align
        ctx.vars[self.name] = val
        return run(items, i + 1, ctx, pos + self.reader.nbytes)
