"""content and its modifiers: nocase, depth, offset, distance, within, startswith,
endswith, fast_pattern, rawbytes."""
from __future__ import annotations

import re

from netsec.rules.errors import RuleError
from netsec.rules.inspect import Content
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder

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
    parts = v.split("|")
    if len(parts) % 2 == 0:
        raise RuleError(f"{keyword}: unclosed hex |..| in {value!r}")
    for n, part in enumerate(parts):
        if n % 2:
            if not _HEX.match(part):
                raise RuleError(f"{keyword}: bad hex {part!r}")
            digits = "".join(part.split())
            if len(digits) % 2:
                raise RuleError(f"{keyword}: odd number of hex digits in {part!r}")
            out += bytes.fromhex(digits)
        else:
            i = 0
            while i < len(part):
                ch = part[i]
                if ch == "\\":
                    if i + 1 >= len(part):
                        raise RuleError(f"{keyword}: dangling backslash in {value!r}")
                    ch = part[i + 1]
                    i += 1
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


def _modifier(name: str, attr: str, relative: bool, signed: bool = False):
    def setup(b: Builder, value: str | None) -> None:
        c = b.content(name)
        v = b.var(value or "", name)
        if isinstance(v, int) and v < 0 and not signed:
            raise RuleError(f"{name}: must not be negative: {value!r}")
        setattr(c, attr, v)
        if relative:
            c.relative = True
            if attr == "distance":
                c.has_distance = True
            else:
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
    b.content("rawbytes").rawbytes = True


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
