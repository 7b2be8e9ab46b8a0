"""netsec.bundle.verify fuzzed: archives of crafted members (plain, GNU sparse, pax, GNU
long names, links, devices, damaged headers), truncated or flipped anywhere, and JSON of
any shape in the manifest (signed, so the parser behind the signature is reached) and the
signatures. Whatever comes in, verify returns a bundle or raises BundleError with a reason;
anything else escaping is a defect, and each one found is kept below as an @example."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from netsec.bundle import BundleError, verify
from tests.bundle_helpers import (
    NOW,
    deep_json,
    end,
    gnu_sparse,
    header,
    member,
    pax,
    signed_members,
    trusted,
)

NAMES = st.sampled_from(["rules/a.rules", "lists/ads.txt", "policy.toml", "selftest/t.pcap",
                         "manifest.json", "signatures.json", "../x", "/etc/x", "rules/",
                         "rules/" + "a" * 120 + ".rules"]) | st.text(max_size=120)
KINDS = st.sampled_from([b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"x", b"g",
                         b"L", b"K", b"S", b"D", b"M", b"V", b"Z", b"\xff"])
PAX_KEYS = st.sampled_from(["path", "size", "linkpath", "GNU.sparse.map", "GNU.sparse.size",
                            "GNU.sparse.major", "GNU.sparse.minor", "GNU.sparse.realsize",
                            "GNU.sparse.numblocks", "hdrcharset"]) | st.text(max_size=20)
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30)


def manifest_shape(draw: st.DrawFn) -> bytes:
    """A manifest near a real one: the right keys, each value of any shape."""
    m: dict[str, Any] = {"format": 1, "provider": "acme", "version": 2,
                         "created": NOW.isoformat(),
                         "expires": (NOW + dt.timedelta(days=1)).isoformat(),
                         "files": {}}
    for key in draw(st.lists(st.sampled_from(sorted(m)), max_size=3, unique=True)):
        m[key] = draw(JSON | st.integers(min_value=2 ** 63, max_value=2 ** 70) | st.text())
    return json.dumps(m).encode()


@st.composite
def members(draw: st.DrawFn) -> bytes:
    name = draw(NAMES)
    content = draw(st.binary(max_size=700))
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return member(name.encode("utf-8", "surrogatepass"), content)
    if choice == 1:
        return gnu_sparse(name, draw(st.integers(1, 2 ** 44)), content or b"x")
    if choice == 2:
        records = draw(st.dictionaries(PAX_KEYS, st.text(max_size=40), max_size=4))
        return pax(records, draw(st.sampled_from([b"x", b"g"]))) + member(name, content)
    if choice == 3:
        return member("././@LongLink", content, draw(st.sampled_from([b"L", b"K"])))
    if choice == 4:
        return member(name, content, draw(KINDS), linkname=draw(st.binary(max_size=100)))
    if choice == 5:    # any header field overwritten with any bytes, checksum recomputed
        at = draw(st.dictionaries(st.integers(0, 511), st.binary(min_size=1, max_size=12),
                                  max_size=3))
        return header(name, len(content), draw(KINDS), at=at) + content.ljust(
            -(-len(content) // 512) * 512, b"\0")
    sigs = draw(JSON.map(lambda v: json.dumps(v).encode()) | st.just(deep_json(5000)))
    shaped = manifest_shape(draw) if draw(st.booleans()) else json.dumps(draw(JSON)).encode()
    return signed_members(shaped, signatures=sigs if draw(st.booleans()) else None)


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    data = b"".join(draw(st.lists(members(), min_size=1, max_size=5)))
    if draw(st.booleans()):
        data += end()
    if data and draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    if data and draw(st.booleans()):
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    return data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archives())
@example(pax({"GNU.sparse.map": "zero,one", "GNU.sparse.size": "ten"}) + member("rules/a.rules")
         + end())
@example(signed_members(json.dumps({}).encode(), signatures=deep_json(30_000)) + end())
@example(signed_members(b'{"format": 1, "version": 18446744073709551616}') + end())
def test_verify_raises_nothing_but_bundle_error(data: bytes) -> None:
    try:
        verify(data, trusted(), now=NOW, min_version=0)
    except BundleError as e:
        assert str(e)
