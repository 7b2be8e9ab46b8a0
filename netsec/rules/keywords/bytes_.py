"""byte_test, byte_jump, byte_extract, isdataat, bsize: byte-level tests in a buffer."""
from __future__ import annotations

import re

from netsec.rules.byteops import OPS, ByteExtract, ByteJump, ByteRead, ByteTest
from netsec.rules.content_inspection import BufLen, IsDataAt
from netsec.rules.errors import RuleError
from netsec.rules.intrange import parse_uint
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder

_URL = DOCS + "payload-keywords.html"
_BASES = {"dec": 10, "hex": 16, "oct": 8}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _parts(value: str | None, keyword: str, least: int) -> list[str]:
    parts = [p.strip() for p in (value or "").split(",")]
    if len(parts) < least or not all(parts):
        raise RuleError(f"{keyword}: want at least {least} comma-separated fields, got {value!r}")
    return parts


def _nbytes(text: str, keyword: str) -> int:
    if not text.isdigit() or int(text) > 23:
        raise RuleError(f"{keyword}: byte count must be 0..23, got {text!r}")
    return int(text)


class _Options:
    """The optional words byte_* share, read once."""

    def __init__(self, words: list[str], keyword: str, allowed: set[str]) -> None:
        self.relative = self.little = self.align = False
        self.from_beginning = self.from_end = False
        self.base: int | None = None
        self.mask = 0
        self.multiplier = 1
        self.post_offset = 0
        for w in words:
            key, _, arg = w.partition(" ")
            arg = arg.strip()
            if key not in allowed:
                raise RuleError(f"{keyword}: unknown option {w!r}")
            if key == "relative":
                self.relative = True
            elif key in ("big", "little"):
                self.little = key == "little"
            elif key == "dce":
                raise RuleError(f"{keyword}: dce needs DCERPC state (unsupported)")
            elif key == "string":
                if arg and arg not in _BASES:
                    raise RuleError(f"{keyword}: string wants dec|hex|oct, got {arg!r}")
                self.base = _BASES.get(arg, 10)
            elif key in _BASES:
                if self.base is None:
                    raise RuleError(f"{keyword}: {key} needs string before it")
                self.base = _BASES[key]
            elif key == "bitmask":
                try:
                    self.mask = int(arg, 0)
                except ValueError:
                    raise RuleError(f"{keyword}: bad bitmask {arg!r}") from None
            elif key == "multiplier":
                if not arg.isdigit() or int(arg) == 0:
                    raise RuleError(f"{keyword}: bad multiplier {arg!r}")
                self.multiplier = int(arg)
            elif key == "post_offset":
                try:
                    self.post_offset = int(arg)
                except ValueError:
                    raise RuleError(f"{keyword}: bad post_offset {arg!r}") from None
            elif key == "align":
                self.align = True
            elif key == "from_beginning":
                self.from_beginning = True
            elif key == "from_end":
                self.from_end = True
            else:
                raise RuleError(f"{keyword}: option {key!r} not valid here")

    def reader(self, nbytes: int, keyword: str) -> ByteRead:
        if self.base is None and not 1 <= nbytes <= 8:
            raise RuleError(f"{keyword}: binary reads are 1..8 bytes, got {nbytes}")
        return ByteRead(nbytes, self.little, self.base, self.mask)


_COMMON = {"relative", "big", "little", "dce", "string", "hex", "dec", "oct", "bitmask"}


def setup_byte_test(b: Builder, value: str | None) -> None:
    p = _parts(value, "byte_test", 4)
    n = _nbytes(p[0], "byte_test")
    op = p[1].replace(" ", "")
    negated = op.startswith("!")
    if negated:
        op = op[1:]
    if op == "" and negated:
        op, negated = "=", True
    if op not in OPS:
        raise RuleError(f"byte_test: bad operator {p[1]!r}")
    opts = _Options(p[4:], "byte_test", _COMMON)
    b.add(ByteTest(opts.reader(n, "byte_test"), b.var(p[3], "byte_test"), op, negated,
                   b.var(p[2], "byte_test"), opts.relative))


def setup_byte_jump(b: Builder, value: str | None) -> None:
    p = _parts(value, "byte_jump", 2)
    n = _nbytes(p[0], "byte_jump")
    opts = _Options(p[2:], "byte_jump", _COMMON | {"multiplier", "post_offset", "align",
                                                   "from_beginning", "from_end"})
    b.add(ByteJump(opts.reader(n, "byte_jump"), b.var(p[1], "byte_jump"), opts.relative,
                   opts.multiplier, opts.align, opts.from_beginning, opts.from_end,
                   opts.post_offset))


def setup_byte_extract(b: Builder, value: str | None) -> None:
    p = _parts(value, "byte_extract", 3)
    n = _nbytes(p[0], "byte_extract")
    try:
        offset = int(p[1])
    except ValueError:
        raise RuleError(f"byte_extract: bad offset {p[1]!r}") from None
    if not _NAME.fullmatch(p[2]):
        raise RuleError(f"byte_extract: bad variable name {p[2]!r}")
    words, align = [], 0
    for w in p[3:]:
        if w.startswith("align"):
            a = w.partition(" ")[2].strip()
            if a not in ("2", "4"):
                raise RuleError(f"byte_extract: align wants 2 or 4, got {a!r}")
            align = int(a)
        else:
            words.append(w)
    opts = _Options(words, "byte_extract", _COMMON | {"multiplier"})
    b.add(ByteExtract(opts.reader(n, "byte_extract"), offset, p[2], opts.relative,
                      opts.multiplier, align))
    b.extracted.add(p[2])


def setup_isdataat(b: Builder, value: str | None) -> None:
    p = [x.strip() for x in (value or "").split(",")]
    first = p[0]
    negated = first.startswith("!")
    if negated:
        first = first[1:].strip()
    relative = False
    for w in p[1:]:
        if w == "relative":
            relative = True
        elif w != "rawbytes":
            raise RuleError(f"isdataat: unknown option {w!r}")
    n = b.var(first, "isdataat")
    if isinstance(n, int) and n < 0:
        raise RuleError(f"isdataat: negative {first!r}")
    b.add(IsDataAt(n, negated, relative))


def setup_bsize(b: Builder, value: str | None) -> None:
    if b.sticky is None:
        raise RuleError("bsize: needs a sticky buffer")
    b.add(BufLen(parse_uint(value or "", "bsize")))


KEYWORDS = (
    Keyword("byte_test", setup_byte_test, "compare bytes read as a number",
            _URL + "#byte-test"),
    Keyword("byte_jump", setup_byte_jump, "move the offset by bytes read as a number",
            _URL + "#byte-jump"),
    Keyword("byte_extract", setup_byte_extract, "read a number into a variable",
            _URL + "#byte-extract"),
    Keyword("isdataat", setup_isdataat, "is there data at this offset", _URL + "#isdataat"),
    Keyword("bsize", setup_bsize, "the sticky buffer's length", _URL + "#bsize"),
)
