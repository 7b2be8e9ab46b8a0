"""pcre: `[!]"/regex/flags"`, compiled with Python's re on bytes.

PCRE constructs Python lacks are translated where the meaning is the same (\\z, \\h,
POSIX classes, \\Q..\\E); a pattern Python still cannot compile skips the rule.
Flags: i s m x (re flags), A (anchored), E (dollar at the very end), R (relative to the
previous match), O (match limits; ignored), and the buffer flags U I P Q H D M C S Y V
W Z B naming the buffer the regex runs on.
"""
from __future__ import annotations

import re
import warnings

from netsec.rules.byteops import ByteExtract, ByteJump
from netsec.rules.content_inspection import Content, Pcre
from netsec.rules.errors import RuleError
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder, Chain

_URL = DOCS + "payload-keywords.html#pcre-perl-compatible-regular-expressions"

BUFFER_FLAGS = {
    "U": "http.uri", "I": "http.uri.raw", "P": "http.request_body", "Q": "http.response_body",
    "H": "http.header", "D": "http.header.raw", "M": "http.method", "C": "http.cookie",
    "S": "http.stat_code", "Y": "http.stat_msg", "V": "http.user_agent", "W": "http.host",
    "Z": "http.host.raw",
}
_RE_FLAGS = {"i": re.I, "s": re.S, "m": re.M, "x": re.X}
_POSIX = {"alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
          "lower": "a-z", "space": r"\s", "xdigit": "0-9A-Fa-f", "punct": r"!-/:-@\[-`{-~",
          "print": r"\x20-\x7e", "graph": r"\x21-\x7e", "cntrl": r"\x00-\x1f\x7f",
          "blank": r" \t", "word": r"\w"}
_TRANSLATE = re.compile(
    r"\\Q(?P<quote>.*?)(?:\\E|$)"             # \Q..\E literal text
    r"|\[:(?P<posix>\w+):\]"                  # [:digit:] inside a class
    r"|\\g\{?(?P<backref>\d+)\}?"             # \g1, \g{1}
    r"|\\k[<{'](?P<named>\w+)[>}']"           # \k<name>
    r"|\(\?<(?P<group>[A-Za-z_]\w*)>"         # (?<name>
    r"|\\x\{(?P<hexbrace>[0-9A-Fa-f]{1,2})\}"  # \x{41}
    r"|\\x(?P<hex1>[0-9A-Fa-f])(?![0-9A-Fa-f])"  # \x2 (one digit)
    r"|\\(?P<esc>.)", re.S)
_ESCAPES = {"z": r"\Z", "h": r"[ \t]", "e": r"\x1b", "/": "/"}


def _translate(src: str) -> str:
    def sub(m: re.Match[str]) -> str:
        g = m.lastgroup
        v = m.group(g) if g else ""
        if g == "quote":
            return re.escape(v)
        if g == "posix":
            if v not in _POSIX:
                raise RuleError(f"pcre: unknown POSIX class [:{v}:]")
            return _POSIX[v]
        if g == "backref":
            return f"(?:\\{v})"
        if g == "named":
            return f"(?P={v})"
        if g == "group":
            return f"(?P<{v}>"
        if g in ("hexbrace", "hex1"):
            return f"\\x{int(v, 16):02x}"
        return _ESCAPES.get(v, m.group(0))
    return _TRANSLATE.sub(sub, src)


def setup_pcre(b: Builder, value: str | None) -> None:
    v = (value or "").strip()
    negated = v.startswith("!")
    if negated:
        v = v[1:].strip()
    if len(v) < 2 or v[0] != '"' or v[-1] != '"':
        raise RuleError(f"pcre: value must be quoted: {value!r}")
    v = v[1:-1].replace('\\"', '"').replace("\\;", ";")
    if not v.startswith("/") or v.rfind("/") == 0:
        raise RuleError(f"pcre: want /regex/flags, got {value!r}")
    end = v.rfind("/")
    src, flags = v[1:end], v[end + 1:]
    reflags, relative, anchored, buffer = 0, False, False, None
    for f in flags:
        if f in _RE_FLAGS:
            reflags |= _RE_FLAGS[f]
        elif f == "R":
            relative = True
        elif f == "A":
            anchored = True
        elif f in "EOB":
            pass  # E is Python's $ near enough; O tunes limits; B is rawbytes
        elif f in BUFFER_FLAGS:
            if buffer is not None:
                raise RuleError(f"pcre: two buffer flags in {flags!r}")
            buffer = BUFFER_FLAGS[f]
        else:
            raise RuleError(f"pcre: unsupported flag {f!r}")
    try:
        with warnings.catch_warnings():
            # "possible nested set" warns about future syntax; today's meaning is PCRE's.
            warnings.simplefilter("ignore", FutureWarning)
            regex = re.compile(_translate(src).encode("utf-8", "surrogateescape"), reflags)
    except (re.error, OverflowError, RecursionError) as e:
        raise RuleError(f"pcre: Python cannot compile /{src}/: {e}") from None
    item = Pcre(regex, negated, relative, anchored, src)
    if b.redirect is not None and buffer is None:   # after base64_data
        b.add(item)
        return
    b.add(item, chain=_chain(b, buffer, relative, flags))


# Keywords that leave a match position a relative pcre can start from.
_ANCHORS = (Content, Pcre, ByteJump, ByteExtract)


def _chain(b: Builder, buffer: str | None, relative: bool, flags: str) -> Chain:
    """The list the pcre joins, as Suricata's DetectPcreSetup picks it: the sticky buffer,
    else the buffer its flag names, else the payload. Unlike content modifiers, a relative
    pcre does not follow the previous content into its buffer: `/R` without a buffer flag
    is relative to the payload's last match (`content:"a"; http_uri; pcre:"/b/R"` fails)."""
    if b.sticky is not None:
        # Suricata's Q flag is its file_data list, the one `file_data` makes sticky.
        if buffer is not None and buffer != b.sticky and \
                (buffer, b.sticky) != ("http.response_body", "file.data"):
            raise RuleError(f"pcre: flags {flags!r} name {buffer} while the sticky buffer "
                            f"{b.sticky} is set")
        return b.chain()
    ch = b.chain(buffer)
    if relative and not any(isinstance(i, _ANCHORS) for i in ch.items):
        raise RuleError("pcre: with /R (relative) needs a preceding match in the same "
                        f"buffer ({buffer or 'payload'})")
    return ch


KEYWORDS = (Keyword("pcre", setup_pcre, "match a regular expression in the buffer", _URL),)
