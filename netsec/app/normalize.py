"""Normalisation of the names and URIs rules and block lists are matched against, as
Suricata configures libhtp by default (`app-layer.protocols.http.libhtp.default-config`:
personality IDS, with path lowercasing turned off as Suricata does), plus IDN.

Hosts (`http.host`, `tls.sni`, block-list entries): surrounding whitespace removed, the port
dropped (an IPv6 literal keeps its brackets), lowercased, trailing dots removed (libhtp's
htp_normalize_hostname), and a name in UTF-8 turned into its A-labels (UTS #46, non-
transitional, as browsers resolve it) so that a block list written in A-labels matches.
The last step is ours: libhtp leaves UTF-8 as sent.

The request target: an absolute URI's authority is the request's host (RFC 9112 §3.2.2,
libhtp's request_hostname): `request_host` chooses. `http.uri` is built as Suricata's
SCHTPGenerateNormalizedUri does from libhtp's parsed URI: the path normalised, then `?` and
the query as sent, then `#` and the fragment percent-decoded. The path normalisation,
in libhtp's order (htp_decode_path_inplace, htp_utf8_decode_path_inplace,
htp_normalize_uri_path_inplace):
- `%XX` decoded, `%uXXXX` too (IIS's encoding; code points past U+00FF to one best-fit
  byte, `?` when there is none); an invalid or truncated escape is kept as sent; `%00`
  gives a NUL byte (it does not end the path); `%2F` and `%5C` are decoded;
- backslashes become slashes, runs of slashes are compressed to one;
- UTF-8 sequences (overlong ones included) become one best-fit byte;
- `.` and `..` segments are removed (RFC 3986 §5.2.4).
"""
from __future__ import annotations

import idna

_HEX = frozenset(b"0123456789abcdefABCDEF")
_WS = b" \t\r\n"
# Windows best-fit code page 1252 (Unicode's WindowsBestFit/bestfit1252.txt) as libhtp 0.5.42
# applies it to code points past U+00FF: 4 hex digits of the code point, 2 of the byte.
# Read off libhtp itself (every %uXXXX through the binding); tests/unit/test_normalize.py
# checks the table against it.
_BESTFIT_HEX = (
    "010041010161010241010361010441010561010643010763010843010963010a43010b63010c43010d63"
    "010e44010f64011164011245011365011445011565011645011765011845011965011a45011b65011c47"
    "011d67011e47011f67012047012167012247012367012448012568012648012768012849012969012a49"
    "012b69012c49012d69012e49012f6901304901316901344a01356a01364b01376b01394c013a6c013b4c"
    "013c6c013d4c013e6c01414c01426c01434e01446e01454e01466e01474e01486e014c4f014d6f014e4f"
    "014f6f01504f01516f015452015572015652015772015852015972015a53015b73015c53015d73015e53"
    "015f73016254016374016454016574016654016774016855016975016a55016b75016c55016d75016e55"
    "016f7501705501717501725501737501745701757701765901777901795a017b5a017c7a018062019749"
    "019a6c019f4f01a04f01a16f01ab7401ae5401af5501b07501b67a01c07c01c32101cd4101ce6101cf49"
    "01d06901d14f01d26f01d35501d47501d55501d67501d75501d87501d95501da7501db5501dc7501de41"
    "01df6101e44701e56701e64701e76701e84b01e96b01ea4f01eb6f01ec4f01ed6f01f06a02616702b927"
    "02ba2202bc2702c45e02c82702cb6002cd5f03006003025e03037e030e2203315f03325f037e3b039347"
    "03985403a35303a64603a94f03b16103b46403b56503c07003c37303c47403c66604bb6805893a066a25"
    "20002020012020022020032020042020052020062020102d20112d20173d20322720356020442f207434"
    "207535207636207737207838207f6e208030208131208232208333208434208535208636208737208838"
    "20893920a750210243210745210a67210b48210c48210d48210e6821104921114921124c21136c21154e"
    "211850211950211a51211b52211c52211d5221245a21285a212a4b212c42212d43212e65212f65213045"
    "21314621334d21346f22122d22152f22162f22172a221a76221e3822237c22296e22363a223c7e22613d"
    "22643d22653d23035e23202823212923293c232a3e25002d250c2b25102b25142b25182b251c2b252c2d"
    "25342d253c2b25502d25522b25532b25542b25552b25562b25572b25582b25592b255a2b255b2b255c2b"
    "255d2b25642d25652d25662d25672d25682d25692d256a2b256b2b256c2b25845f27587c30002030083c"
    "30093e301a5b301b5dff0121ff0222ff0323ff0424ff0525ff0626ff0727ff0828ff0929ff0a2aff0b2b"
    "ff0c2cff0d2dff0e2eff0f2fff1030ff1131ff1232ff1333ff1434ff1535ff1636ff1737ff1838ff1939"
    "ff1a3aff1b3bff1c3cff1d3dff1e3eff2040ff2141ff2242ff2343ff2444ff2545ff2646ff2747ff2848"
    "ff2949ff2a4aff2b4bff2c4cff2d4dff2e4eff2f4fff3050ff3151ff3252ff3353ff3454ff3555ff3656"
    "ff3757ff3858ff3959ff3a5aff3b5bff3c2fff3d5dff3e5eff3f5fff4060ff4161ff4262ff4363ff4464"
    "ff4565ff4666ff4767ff4868ff4969ff4a6aff4b6bff4c6cff4d6dff4e6eff4f6fff5070ff5171ff5272"
    "ff5373ff5474ff5575ff5676ff5777ff5878ff5979ff5a7aff5b7bff5c7cff5d7dff5e7e"
)
BESTFIT = {int(_BESTFIT_HEX[i:i + 4], 16): int(_BESTFIT_HEX[i + 4:i + 6], 16)
           for i in range(0, len(_BESTFIT_HEX), 6)}


def host(raw: bytes) -> bytes:
    """A Host header value, an authority or a name as it is compared with block lists."""
    value = raw.strip(_WS)
    if value.startswith(b"["):   # IPv6 literal: `[::1]:8080` -> `[::1]`
        end = value.find(b"]")
        return value[:end + 1].lower() if end >= 0 else b""   # unterminated: no host
    return name(value.split(b":", 1)[0])


def name(raw: bytes) -> bytes:
    """A DNS name (TLS SNI, a DNS query, a host without port): lowercase, no trailing dot,
    A-labels for UTF-8 labels. Bytes that are not a name are only lowercased (ASCII)."""
    value = raw.strip(_WS).rstrip(b".")
    if value.isascii():
        return value.lower()
    try:
        mapped = idna.uts46_remap(value.decode("utf-8"), std3_rules=False,
                                  transitional=False)
        labels = [label if label.isascii() else idna.alabel(label).decode("ascii")
                  for label in mapped.rstrip(".").split(".")]
    except (UnicodeError, idna.IDNAError):
        return value.lower()
    return ".".join(labels).encode("ascii")


def authority(uri: bytes) -> bytes | None:
    """The authority of an absolute request URI (`http://user@host:80/p` -> `host:80`),
    None for a path; split as libhtp's htp_parse_uri does."""
    if uri.startswith(b"/"):
        return None
    colon = uri.find(b":")
    if colon < 0 or uri[colon + 1:colon + 3] != b"//" or uri[colon + 3:colon + 4] == b"/":
        return None
    rest = uri[colon + 3:]
    end = len(rest)
    for stop in b"/?#":
        i = rest.find(bytes((stop,)))
        if 0 <= i < end:
            end = i
    auth = rest[:end]
    return auth.rpartition(b"@")[2] if b"@" in auth else auth


def request_host(uri: bytes, host_header: bytes) -> bytes:
    """The raw host a request is for (`http.host.raw`): an absolute URI's host, as sent
    without its port (libhtp's parsed_uri_raw hostname), wins over the Host header."""
    auth = authority(uri)
    if not auth:
        return host_header
    if auth.startswith(b"["):
        return auth[:auth.find(b"]") + 1] if b"]" in auth else auth
    return auth.split(b":", 1)[0]


def uri(raw: bytes) -> bytes:
    """`http.uri` for a request target as sent (`http.uri.raw`)."""
    rest = raw
    auth = authority(raw)
    if auth is not None:   # absolute URI: drop scheme and authority
        start = raw.find(b"//") + 2
        cut = [i for i in (raw.find(c, start) for c in (b"/", b"?", b"#")) if i >= 0]
        rest = raw[min(cut):] if cut else b""
    path, fragment = rest, None
    hash_at = rest.find(b"#")
    if hash_at >= 0:
        path, fragment = rest[:hash_at], rest[hash_at + 1:]
    path, qmark, query = path.partition(b"?")
    out = path_normalize(path)
    if qmark:
        out += b"?" + query
    if fragment is not None:
        out += b"#" + _percent_decode(fragment)
    return out


def path_normalize(path: bytes) -> bytes:
    decoded = _utf8_bestfit(_decode_path(path))
    out = remove_dot_segments(decoded)
    # libhtp drops the slash a dot segment at the end leaves (`/a/b/..` is `/a`, `/./` is
    # empty), where RFC 3986 keeps it
    if out.endswith(b"/") and decoded.endswith((b"/.", b"/..", b"/./", b"/../")):
        out = out[:-1]
    return out


def _decode_path(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    prev_sep = False
    while i < n:
        c = data[i]
        if c == 0x25 and i + 2 < n:   # '%' with two bytes after it (libhtp's test)
            if data[i + 1] in b"uU":
                if i + 5 < n and all(b in _HEX for b in data[i + 2:i + 6]):
                    c = _bestfit(int(data[i + 2:i + 6], 16))
                    i += 6
                else:
                    i += 1   # invalid %u: the percent is kept
            elif data[i + 1] in _HEX and data[i + 2] in _HEX:
                c = int(data[i + 1:i + 3], 16)
                i += 3
            else:
                i += 1
        else:
            i += 1
        if c == 0x5C:
            c = 0x2F
        if c == 0x2F:
            if not prev_sep:
                out.append(c)
            prev_sep = True
        else:
            out.append(c)
            prev_sep = False
    return bytes(out)


def _bestfit(codepoint: int) -> int:
    """One byte for a code point: itself below U+0100, else its best-fit byte or `?`."""
    return codepoint if codepoint < 0x100 else BESTFIT.get(codepoint, 0x3F)


def _utf8_bestfit(data: bytes) -> bytes:
    """UTF-8 sequences to one best-fit byte each, as libhtp's decoder does: overlong forms
    are accepted (`%c0%af` is `/`); an invalid sequence becomes one `?` and the byte that
    broke it is read afresh; an unfinished sequence at the end is dropped."""
    if data.isascii():
        return data
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c < 0x80:
            out.append(c)
            i += 1
            continue
        size = 2 if 0xC0 <= c < 0xE0 else 3 if 0xE0 <= c < 0xF0 else 4 if 0xF0 <= c < 0xF5 \
            else 0
        # the first continuation byte's range: no surrogates (ED), nothing past U+10FFFF (F4)
        low, high = (0x80, 0x9F) if c == 0xED else (0x80, 0x8F) if c == 0xF4 else (0x80, 0xBF)
        cp, j = c & (0x7F >> size), i + 1
        while size and j < i + size and j < n:
            b = data[j]
            if not (low <= b <= high if j == i + 1 else 0x80 <= b <= 0xBF):
                break
            cp = cp << 6 | b & 0x3F
            j += 1
        if size and j == i + size:
            out.append(_bestfit(cp))
        elif j == n and size:
            break   # unfinished at the end
        else:   # the byte that broke the sequence starts afresh
            out.append(0x3F)
            j = max(j, i + 1)
        i = j
    return bytes(out)


def remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 §5.2.4."""
    inp, out = path, bytearray()
    while inp:
        if inp.startswith(b"../"):
            inp = inp[3:]
        elif inp.startswith(b"./"):
            inp = inp[2:]
        elif inp.startswith(b"/./"):
            inp = inp[2:]
        elif inp == b"/.":
            inp = b"/"
        elif inp.startswith(b"/../") or inp == b"/..":
            inp = b"/" + inp[4:]
            cut = out.rfind(b"/")
            del out[max(cut, 0):]
        elif inp in (b".", b".."):
            inp = b""
        else:
            nxt = inp.find(b"/", 1)
            seg, inp = (inp, b"") if nxt < 0 else (inp[:nxt], inp[nxt:])
            out += seg
    return bytes(out)


def _percent_decode(data: bytes) -> bytes:
    """`%XX` and `%uXXXX` decoded, nothing else (libhtp's htp_tx_urldecode_uri_inplace)."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        if data[i] == 0x25 and i + 2 < n:
            if data[i + 1] in b"uU" and i + 5 < n and all(b in _HEX for b in data[i + 2:i + 6]):
                out.append(_bestfit(int(data[i + 2:i + 6], 16)))
                i += 6
                continue
            if data[i + 1] in _HEX and data[i + 2] in _HEX:
                out.append(int(data[i + 1:i + 3], 16))
                i += 3
                continue
        out.append(data[i])
        i += 1
    return bytes(out)
