"""Sticky buffers (`http.uri; content:...`) and the legacy content modifiers
(`content:...; http_uri;`) that move the previous content into a buffer; urilen."""
from __future__ import annotations

from netsec.rules.content_inspection import Base64Decode, BufEquals, BufLen
from netsec.rules.errors import RuleError
from netsec.rules.intrange import parse_uint
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder, Setup

_HTTP = DOCS + "http-keywords.html"

# buffer name -> (aliases that are sticky too, docs page)
STICKY: dict[str, tuple[tuple[str, ...], str]] = {
    "http.uri": ((), _HTTP), "http.uri.raw": ((), _HTTP), "http.method": ((), _HTTP),
    "http.host": ((), _HTTP), "http.host.raw": ((), _HTTP), "http.user_agent": ((), _HTTP),
    "http.header": ((), _HTTP), "http.header.raw": ((), _HTTP),
    "http.header_names": (("http_header_names",), _HTTP), "http.cookie": ((), _HTTP),
    "http.content_type": (("http_content_type",), _HTTP),
    "http.content_len": (("http_content_len",), _HTTP),
    "http.request_body": ((), _HTTP), "http.stat_code": ((), _HTTP),
    "http.stat_msg": ((), _HTTP), "http.response_body": ((), _HTTP),
    "http.request_line": (("http_request_line",), _HTTP),
    "http.response_line": (("http_response_line",), _HTTP),
    "http.protocol": (("http_protocol",), _HTTP), "http.start": (("http_start",), _HTTP),
    "http.server": (("http_server",), _HTTP), "http.location": (("http_location",), _HTTP),
    "http.referer": (("http_referer",), _HTTP), "http.accept": (("http_accept",), _HTTP),
    "http.accept_lang": (("http_accept_lang",), _HTTP),
    "http.accept_enc": (("http_accept_enc",), _HTTP),
    "http.connection": (("http_connection",), _HTTP),
    "file.data": (("file_data",), DOCS + "file-keywords.html"),
    "dns.query": (("dns_query",), DOCS + "dns-keywords.html"),
    "tls.sni": (("tls_sni",), DOCS + "tls-keywords.html"),
    "tls.cert_subject": (("tls_cert_subject",), DOCS + "tls-keywords.html"),
    "tls.cert_issuer": (("tls_cert_issuer",), DOCS + "tls-keywords.html"),
    "tls.cert_serial": (("tls_cert_serial",), DOCS + "tls-keywords.html"),
    "tls.certs": ((), DOCS + "tls-keywords.html"),
    "ja3.hash": (("ja3_hash",), DOCS + "ja3-keywords.html"),
    "ja3.string": (("ja3_string",), DOCS + "ja3-keywords.html"),
    "ja3s.hash": (("ja3s_hash",), DOCS + "ja3-keywords.html"),
    "ja3s.string": (("ja3s_string",), DOCS + "ja3-keywords.html"),
}

# legacy content modifier -> buffer
MODIFIERS = {
    "http_uri": "http.uri", "http_raw_uri": "http.uri.raw", "http_method": "http.method",
    "http_host": "http.host", "http_raw_host": "http.host.raw",
    "http_user_agent": "http.user_agent", "http_header": "http.header",
    "http_raw_header": "http.header.raw", "http_cookie": "http.cookie",
    "http_client_body": "http.request_body", "http_server_body": "http.response_body",
    "http_stat_code": "http.stat_code", "http_stat_msg": "http.stat_msg",
}


def _sticky(buffer: str) -> Setup:
    def setup(b: Builder, value: str | None) -> None:
        b.sticky = buffer
        b.transforms = []
        b.last = None
        b.redirect = None
    return setup


def _modifier(name: str, buffer: str) -> Setup:
    def setup(b: Builder, value: str | None) -> None:
        b.move_last(buffer, name)
    return setup


def setup_urilen(b: Builder, value: str | None) -> None:
    num, _, kind = (value or "").partition(",")
    kind = kind.strip() or "norm"
    if kind not in ("norm", "raw"):
        raise RuleError(f"urilen: want norm or raw, got {kind!r}")
    b.add(BufLen(parse_uint(num, "urilen", 65535)),
          "http.uri" if kind == "norm" else "http.uri.raw")
    b.last = None


def setup_tls_version(b: Builder, value: str | None) -> None:
    v = (value or "").strip().lower()
    names = _TLS_VERSIONS.get(v)
    if names is None:
        raise RuleError(f"tls.version: want 1.0, 1.1, 1.2, 1.3, ssl3 or 0xNNNN, got {value!r}")
    b.add(BufEquals(names), "tls.version")


def setup_base64_decode(b: Builder, value: str | None) -> None:
    nbytes, offset, relative = 0, 0, False
    for part in (value or "").split(","):
        key, _, arg = part.strip().partition(" ")
        arg = arg.strip()
        if key == "relative" and not arg:
            relative = True
        elif key in ("bytes", "offset") and arg.isdigit():
            if key == "bytes":
                nbytes = int(arg)
            else:
                offset = int(arg)
        elif key:
            raise RuleError(f"base64_decode: bad option {part.strip()!r}")
    b.add(Base64Decode(nbytes, offset, relative))


def setup_base64_data(b: Builder, value: str | None) -> None:
    dec = b.last_item
    if not isinstance(dec, Base64Decode):
        raise RuleError("base64_data: must follow base64_decode")
    b.redirect = dec.data_items
    b.sublists.append(dec.data_items)
    b.last = None


_TLS_VERSIONS = {
    "1.0": frozenset({b"TLS 1.0"}), "1.1": frozenset({b"TLS 1.1"}),
    "1.2": frozenset({b"TLS 1.2"}), "1.3": frozenset({b"TLS 1.3"}),
    "ssl3": frozenset({b"SSLv3"}), "0x0300": frozenset({b"SSLv3"}),
    **{f"0x030{n + 1}": frozenset({f"TLS 1.{n}".encode()}) for n in range(4)},
}

KEYWORDS = (
    *(Keyword(name, _sticky(name), f"sticky buffer {name}", url, aliases=aliases, value=False)
      for name, (aliases, url) in STICKY.items()),
    *(Keyword(mod, _modifier(mod, buf), f"the previous content inspects {buf}", _HTTP,
              value=False) for mod, buf in MODIFIERS.items()),
    Keyword("urilen", setup_urilen, "length of the (normalized or raw) URI",
            _HTTP + "#urilen"),
    Keyword("tls.version", setup_tls_version, "the negotiated TLS version",
            DOCS + "tls-keywords.html#tls-version"),
    Keyword("base64_decode", setup_base64_decode, "decode base64 at the (relative) offset",
            DOCS + "base64-keywords.html#base64-decode", value=None),
    Keyword("base64_data", setup_base64_data, "inspect what base64_decode decoded",
            DOCS + "base64-keywords.html#base64-data", value=False),
)
