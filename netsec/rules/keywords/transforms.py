"""Transforms on the current sticky buffer: dotprefix, to_lowercase, strip_whitespace,
compress_whitespace, url_decode, to_md5, to_sha1, to_sha256."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from netsec.rules.errors import RuleError
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder, Setup

_URL = DOCS + "transforms.html"
_WS = re.compile(rb"[ \t\n\v\f\r]+")


def _url_decode(data: bytes) -> bytes:
    # Suricata's url_decode also turns '+' into a space.
    return unquote_to_bytes(data.replace(b"+", b" "))


FUNCS: dict[str, Callable[[bytes], bytes]] = {
    "dotprefix": lambda d: b"." + d,
    "to_lowercase": bytes.lower,
    "to_uppercase": bytes.upper,
    "strip_whitespace": lambda d: _WS.sub(b"", d),
    "compress_whitespace": lambda d: _WS.sub(b" ", d),
    "url_decode": _url_decode,
    "to_md5": lambda d: hashlib.md5(d).digest(),
    "to_sha1": lambda d: hashlib.sha1(d).digest(),
    "to_sha256": lambda d: hashlib.sha256(d).digest(),
}


def _transform(name: str) -> Setup:
    func = FUNCS[name]

    def setup(b: Builder, value: str | None) -> None:
        if b.sticky is None:
            raise RuleError(f"{name}: a transform needs a sticky buffer before it")
        # Contents already added keep the buffer as it was; the ones after see it
        # transformed (Suricata picks the transformed list when a keyword is appended).
        b.transforms.append((name, func))
        b.last = None
    return setup


KEYWORDS = tuple(Keyword(name, _transform(name), f"transform: {name}", f"{_URL}#{name}",
                         value=False) for name in FUNCS)
