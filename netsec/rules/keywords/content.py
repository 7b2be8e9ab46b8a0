"""content and its modifiers: nocase, depth, offset, distance, within, startswith,
endswith, fast_pattern, rawbytes."""
from __future__ import annotations

import re

from netsec.rules.content_inspection import Content
from netsec.rules.errors import RuleError
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder, Setup

_URL = DOCS + "payload-keywords.html"
_HEX = re.compile(r"^[0-9a-fA-F\s]*$")


def parse_pattern(value: str, keyword: str = "content") -> tuple[bytes, bool]:
    """`[!]"text|41 42|text"` to (bytes, negated)."""
    v = value.strip()
    negated = v.startswith("!")
    if negated:
        v = v[1:].strip()
    if len(v) < 2 or v[0] != '"' or v[-1] != '"':
        raise RuleError(f"{keyword}: value must be quoted: {value!r}")
    v = v[1:-1]
    out = bytearray()
    i, n = 0, len(v)
    while i < n:
        ch = v[i]
        if ch == "|":
            close = v.find("|", i + 1)
            if close < 0:
                raise RuleError(f"{keyword}: unclosed hex |..| in {value!r}")
            part = v[i + 1:close]
            digits = "".join(part.split())
            if not _HEX.match(part) or len(digits) % 2:
                raise RuleError(f"{keyword}: bad hex |{part}|")
            out += bytes.fromhex(digits)
            i = close + 1
            continue
        if ch == "\\":
            if i + 1 >= n:
                raise RuleError(f"{keyword}: dangling backslash in {value!r}")
            i += 1
            ch = v[i]
        elif ch == '"' or ch == ";":
            raise RuleError(f"{keyword}: unescaped {ch!r} in {value!r}")
        out += ch.encode()
        i += 1
    if not out:
        raise RuleError(f"{keyword}: empty pattern")
    return bytes(out), negated


def setup_content(b: Builder, value: str | None) -> None:
    pat, neg = parse_pattern(value or "")
    b.add(Content(pat, neg))


def setup_nocase(b: Builder, value: str | None) -> None:
    b.content("nocase").set_nocase()


def _modifier(name: str, attr: str, relative: bool, signed: bool = False) -> Setup:
    def setup(b: Builder, value: str | None) -> None:
        c = b.content(name)
        v = b.var(value or "", name)
        if isinstance(v, int) and v < 0 and not signed:
            raise RuleError(f"{name}: must not be negative: {value!r}")
        setattr(c, attr, v)
        if relative:
            c.relative = True
            if attr == "within":
                c.has_within = True
            if attr == "within" and isinstance(v, int) and v < len(c.raw):
                raise RuleError(f"within: {v} is shorter than the content ({len(c.raw)})")
        elif name == "depth" and isinstance(v, int) and v < len(c.raw):
            raise RuleError(f"depth: {v} is shorter than the content ({len(c.raw)})")
    return setup


def setup_startswith(b: Builder, value: str | None) -> None:
    c = b.content("startswith")
    if c.relative or c.depth or c.offset:
        raise RuleError("startswith: cannot be mixed with depth/offset/distance/within")
    c.startswith = True
    c.depth = len(c.raw)


def setup_endswith(b: Builder, value: str | None) -> None:
    b.content("endswith").endswith = True


def setup_fast_pattern(b: Builder, value: str | None) -> None:
    c = b.content("fast_pattern")
    c.fast_pattern = True
    v = (value or "").strip()
    if not v or v == "only":
        return
    m = re.fullmatch(r"(\d+)\s*,\s*(\d+)", v)
    if not m:
        raise RuleError(f"fast_pattern: want only or offset,length, got {value!r}")
    o, n = int(m.group(1)), int(m.group(2))
    if n == 0 or o + n > len(c.raw):
        raise RuleError(f"fast_pattern: {o},{n} is outside the content")
    c.fp_slice = (o, n)


def setup_rawbytes(b: Builder, value: str | None) -> None:
    b.content("rawbytes")   # only that a content comes before it, as Suricata checks


KEYWORDS = (
    Keyword("content", setup_content, "match bytes in the current buffer", _URL + "#content"),
    Keyword("nocase", setup_nocase, "the content ignores ASCII case", _URL + "#nocase",
            value=False),
    Keyword("depth", _modifier("depth", "depth", False),
            "search the first n bytes (from offset)", _URL + "#depth"),
    Keyword("offset", _modifier("offset", "offset", False), "start the search at byte n",
            _URL + "#offset"),
    Keyword("distance", _modifier("distance", "distance", True, signed=True),
            "start n bytes after the previous match", _URL + "#distance"),
    Keyword("within", _modifier("within", "within", True),
            "end within n bytes of the previous match", _URL + "#within"),
    Keyword("startswith", setup_startswith, "the content starts the buffer",
            _URL + "#startswith", value=False),
    Keyword("endswith", setup_endswith, "the content ends the buffer", _URL + "#endswith",
            value=False),
    Keyword("fast_pattern", setup_fast_pattern, "use this content in the prefilter",
            DOCS + "fast-pattern.html", value=None),
    Keyword("rawbytes", setup_rawbytes, "no effect (no telnet normalisation here)",
            _URL + "#rawbytes", value=False),
)
