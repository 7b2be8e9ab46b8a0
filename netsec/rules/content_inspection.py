"""The payload inspection chain: content/pcre/byte_*/isdataat/bsize over one buffer.

Follows Suricata's DetectEngineContentInspection: each item runs at the buffer offset
the previous item left (the end of the last match); when a later relative item fails,
an earlier content or pcre is retried at its next occurrence (backtracking). A result
is MATCH, NOMATCH (an earlier item may retry) or STOP (nothing earlier can help: an
absolute content that is absent, a negated content or pcre that is present).
"""
from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Sequence

from netsec.inspection import Window

MATCH, NOMATCH, STOP = 1, 0, -1


class Ctx:
    """One evaluation of a chain: the buffer, its lowered twin, byte_extract variables."""

    __slots__ = ("buf", "_lower", "vars", "start")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self._lower: bytes | None = None
        self.vars: dict[str, int] = {}
        # A window of a body inspected as it arrives: where it starts in the body, so
        # absolute offset/depth/isdataat count from the body's start (Suricata's
        # inspect_offset); 0 for whole buffers.
        self.start = buf.start if type(buf) is Window else 0

    @property
    def lower(self) -> bytes:
        if self._lower is None:
            self._lower = self.buf.lower()
        return self._lower


def run(items: Sequence[Item], i: int, ctx: Ctx, off: int) -> int:
    if i == len(items):
        return MATCH
    return items[i].inspect(items, i, ctx, off)


class Item:
    """One keyword of a chain. `relative` says it runs from the previous match's end."""

    relative = False
    relnext = False  # set at setup: the next item is relative, so retries can help

    def inspect(self, items: Sequence[Item], i: int, ctx: Ctx, off: int) -> int:
        raise NotImplementedError


def _value(v: int | str, ctx: Ctx) -> int:
    return v if isinstance(v, int) else ctx.vars.get(v, 0)


class Content(Item):
    __slots__ = ("pattern", "raw", "nocase", "negated", "offset", "depth", "distance",
                 "within", "has_within", "startswith", "endswith", "fast_pattern", "fp_slice",
                 "relative", "relnext", "within_next")

    def __init__(self, raw: bytes, negated: bool) -> None:
        self.raw = self.pattern = raw
        self.negated = negated
        self.nocase = False
        self.offset: int | str = 0
        self.depth: int | str = 0
        self.distance: int | str = 0
        self.within: int | str = 0
        self.has_within = False
        self.startswith = self.endswith = False
        self.fast_pattern = False
        self.fp_slice: tuple[int, int] | None = None
        self.relative = self.relnext = self.within_next = False

    def set_nocase(self) -> None:
        self.nocase = True
        self.pattern = self.raw.lower()

    def inspect(self, items: Sequence[Item], i: int, ctx: Ctx, off: int) -> int:
        buf = ctx.lower if self.nocase else ctx.buf
        blen = len(buf)
        pat = self.pattern
        plen = len(pat)
        if self.relative:
            dist = _value(self.distance, ctx)
            start = max(0, off + dist)
            end = blen
            if self.has_within:
                end = min(end, off + dist + _value(self.within, ctx))
            if self.depth:
                end = min(end, off + _value(self.depth, ctx))
            offset = _value(self.offset, ctx)
            if offset > start:
                start = offset
        else:
            start = _value(self.offset, ctx)
            depth = _value(self.depth, ctx)
            # Suricata counts depth from the offset (its setup adds offset to depth).
            end = start + depth if depth else blen
            if ctx.start:
                end = end - ctx.start if depth else blen
                start = max(0, start - ctx.start)
        if end > blen:
            end = blen
        while True:
            if self.endswith:
                pos = blen - plen if start <= blen - plen and end == blen else -1
                if pos >= 0 and buf[pos:] != pat:
                    pos = -1
            else:
                pos = buf.find(pat, start, end) if start <= end else -1
            if pos < 0:
                if self.negated:
                    return run(items, i + 1, ctx, off)
                return NOMATCH if self.relative else STOP
            if self.negated:
                return NOMATCH if self.relative or self.relnext else STOP
            r = run(items, i + 1, ctx, pos + plen)
            if r != NOMATCH:
                return r
            # Only a following `within` can be satisfied by a later occurrence of this
            # content; otherwise Suricata gives up on the whole buffer.
            if not self.within_next or self.endswith:
                return STOP
            start = pos + 1


class Pcre(Item):
    __slots__ = ("regex", "negated", "relative", "relnext", "anchored", "source")

    def __init__(self, regex: re.Pattern[bytes], negated: bool, relative: bool,
                 anchored: bool, source: str) -> None:
        self.regex, self.negated, self.relative = regex, negated, relative
        self.anchored, self.source = anchored, source
        self.relnext = False

    def inspect(self, items: Sequence[Item], i: int, ctx: Ctx, off: int) -> int:
        # A relative regex sees the buffer from the offset on (its ^ anchors there);
        # retries resume one byte after the previous match's start, as PCRE's start_offset.
        base = off if self.relative else 0
        sub = ctx.buf[base:] if base else ctx.buf
        find = self.regex.match if self.anchored else self.regex.search
        pos = 0
        while pos <= len(sub):
            m = find(sub, pos)
            if self.negated:
                return NOMATCH if m else run(items, i + 1, ctx, off)
            if m is None:
                return NOMATCH
            r = run(items, i + 1, ctx, base + m.end())
            if r != NOMATCH or not self.relnext:
                return r
            pos = m.start() + 1
        return NOMATCH


class IsDataAt(Item):
    __slots__ = ("n", "negated", "relative", "relnext")

    def __init__(self, n: int | str, negated: bool, relative: bool) -> None:
        self.n, self.negated, self.relative = n, negated, relative
        self.relnext = False

    def inspect(self, items: Sequence[Item], i: int, ctx: Ctx, off: int) -> int:
        n = _value(self.n, ctx)
        blen = len(ctx.buf)
        present = off + n <= blen if self.relative else n < blen + ctx.start
        if present != self.negated:
            return run(items, i + 1, ctx, off)
        # As Suricata: a fixed isdataat that fails cannot be helped by an earlier retry,
        # except a relative negated one (a later match may leave more data behind it).
        if isinstance(self.n, str) or (self.relative and present):
            return NOMATCH
        return STOP


class BufLen(Item):
    """bsize / urilen: a test on the whole buffer's length, independent of offsets."""

    __slots__ = ("test",)
    relative = False

    def __init__(self, test: Callable[[int], bool]) -> None:
        self.test = test

    def inspect(self, items: Sequence[Item], i: int, ctx: Ctx, off: int) -> int:
        if not self.test(len(ctx.buf)):
            return STOP
        return run(items, i + 1, ctx, off)


class BufEquals(Item):
    """tls.version and the like: the whole buffer equals one of some values."""

    __slots__ = ("values",)
    relative = False

    def __init__(self, values: frozenset[bytes]) -> None:
        self.values = values

    def inspect(self, items: Sequence[Item], i: int, ctx: Ctx, off: int) -> int:
        if ctx.buf not in self.values:
            return STOP
        return run(items, i + 1, ctx, off)


_B64 = re.compile(rb"[A-Za-z0-9+/]*=*")


class Base64Decode(Item):
    """base64_decode: decode from the (relative) offset, then run the base64_data items."""

    __slots__ = ("nbytes", "offset", "relative", "relnext", "data_items")

    def __init__(self, nbytes: int, offset: int, relative: bool) -> None:
        self.nbytes, self.offset, self.relative = nbytes, offset, relative
        self.relnext = False
        self.data_items: list[Item] = []  # filled by the keywords after `base64_data`

    def inspect(self, items: Sequence[Item], i: int, ctx: Ctx, off: int) -> int:
        start = self.offset + (off if self.relative else 0)
        raw = ctx.buf[start:start + self.nbytes] if self.nbytes else ctx.buf[start:]
        m = _B64.match(raw)
        assert m is not None   # the pattern matches the empty string
        text = m.group(0).rstrip(b"=")
        if len(text) % 4 == 1:  # a lone trailing character carries no whole byte
            text = text[:-1]
        decoded = binascii.a2b_base64(text + b"=" * (-len(text) % 4)) if text else b""
        if not decoded or run(self.data_items, 0, Ctx(decoded), 0) != MATCH:
            return NOMATCH
        return run(items, i + 1, ctx, off)
