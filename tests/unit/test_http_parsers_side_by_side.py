"""The two HTTP parsers side by side on the evasion corpus (tests/http_evasion.py), each
shape fed byte-identically whole, one byte per feed and in random splits, compared with
libhtp fed whole (the reference: LibHTP as Suricata configures it).

The table of what differs is pinned: a change to either parser that makes a shape agree
or disagree where it did not shows here. What libhtp's semantics mean for a blocker is
asserted on the shapes that matter (smuggling, compression, pipelining, hosts)."""
from __future__ import annotations

from pathlib import Path

import pytest

from netsec.app import htp
from netsec.cli import UsageError, parse_sets
from netsec.flow import FlowConfig, FlowTable
from tests.http_evasion import MALWARE, PARSERS, SHAPES, Shape, diff, run, segmentings

ALL = ("whole", "1-byte", "random")
# (parser, shape) -> the segmentings in which the parser's view differs from the reference
DIFFERS = {
    # libhtp's hard field limit applies to a field buffered across feeds only
    ("libhtp", "overlong header (20000)"): ("1-byte", "random"),
    # libhtp reads the second Content-Length's bytes as a request once, not fed byte-wise
    ("libhtp", "two Content-Length"): ("1-byte",),
    # the Python parser: first of repeated headers (libhtp joins them with ", "), folded
    # lines joined by one space (libhtp keeps the fold's), a URI ends at a space (libhtp
    # allows spaces, as Suricata sets it), its field limit applies to whole feeds too,
    # request bodies are not decompressed, and `chunked, identity` reads as chunked
    ("python", "space in URI"): ALL, ("python", "duplicate Host"): ALL,
    ("python", "duplicate User-Agent"): ALL, ("python", "folded header"): ALL,
    ("python", "overlong header (20000)"): ALL, ("python", "gzip request body"): ALL,
    ("python", "two Content-Length"): ALL, ("python", "TE not chunked last"): ALL,
}
BY_NAME = {s.name: s for s in SHAPES}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_each_shape_differs_from_libhtp_whole_exactly_where_the_table_says(
        shape: Shape) -> None:
    reference = run(shape, "libhtp", "whole")
    assert reference["txs"], "every shape yields at least one transaction"
    for parser in PARSERS:
        got = tuple(seg for seg in ALL if diff(reference, run(shape, parser, seg)))
        assert got == DIFFERS.get((parser, shape.name), ()), (parser, got)


def test_the_table_names_only_shapes_of_the_corpus() -> None:
    assert {name for _, name in DIFFERS} <= set(BY_NAME)
    assert set(segmentings()) == set(ALL)


@pytest.mark.parametrize("segmenting", ALL)
def test_libhtp_semantics_that_blocking_relies_on(segmenting: str) -> None:
    def txs(name: str) -> list[dict]:
        return run(BY_NAME[name], "libhtp", segmenting)["txs"]

    # hosts: the absolute URI's wins, normalised; IDN in A-labels
    assert txs("absolute URI vs Host")[0]["http.host"] == b"adult.example"
    assert txs("host dot+port+case")[0]["http.host"] == b"adult.example"
    assert txs("IDN host (UTF-8)")[0]["http.host"] == b"xn--bcher-kva.example"
    # request smuggling: Transfer-Encoding wins over Content-Length, so the request
    # behind the chunked body is a transaction of its own and its host is seen
    cl_te = txs("smuggling CL+TE request")
    assert cl_te[0]["http.request_body"] == b"abc"
    assert (cl_te[1]["http.uri"], cl_te[1]["http.host"]) == (b"/smuggled", b"adult.example")
    assert txs("smuggling TE+CL response")[0]["http.response_body"] == MALWARE
    # every body shape reaches file.data whole and decoded
    for name in ("chunked response", "chunk extensions", "chunk sizes odd (0-padded, upper)",
                 "chunk size trailing space", "chunked with trailer", "gzip response",
                 "deflate (zlib) response", "deflate (raw) response", "gzip chunked response",
                 "body until close"):
        assert txs(name)[0]["http.response_body"] == MALWARE, name
    assert txs("gzip request body")[0]["http.request_body"] == MALWARE
    piped = txs("pipelining (3)")
    assert [t["http.uri"] for t in piped] == [b"/1", b"/2", b"/3"]
    assert piped[1]["http.host"] == b"adult.example"
    assert piped[1]["http.response_body"] == MALWARE
    assert txs("100-continue")[0]["eve"][2] == 200
    assert txs("HEAD with Content-Length")[0].get("http.response_body") is None


def test_a_missing_libhtp_dev_is_a_clear_error(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(htp, "_lib", None)
    monkeypatch.setattr(htp, "HEADERS", tmp_path / "htp.h")
    monkeypatch.setenv("HYPERWALL_CACHE", str(tmp_path))
    with pytest.raises(htp.HtpUnavailable, match="htp.h not found: install libhtp-dev"):
        htp.HtpParser()
    # the flow table fails when it is made, not on its first HTTP flow
    with pytest.raises(htp.HtpUnavailable):
        FlowTable(FlowConfig(http_parser="libhtp"))
    assert len(FlowTable(FlowConfig(http_parser="python"))) == 0   # no binding needed


def test_the_binding_is_built_in_the_first_place_that_takes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")   # a read-only checkout, as a domain sees it (tests run as root)
    monkeypatch.setattr(htp, "cache_dirs", lambda: [not_a_dir / "build", tmp_path / "tmp"])
    path = htp._find_or_build()
    assert path.parent == tmp_path / "tmp" and path.stat().st_size > 0
    assert htp._find_or_build() == path   # built once
    # a domain image without the headers uses the module built elsewhere
    monkeypatch.setattr(htp, "HEADERS", tmp_path / "absent.h")
    assert htp._find_or_build() == path


def test_the_parser_setting_names_libhtp_or_python() -> None:
    assert htp.parser_class("libhtp") is htp.HtpParser
    with pytest.raises(ValueError, match="app-layer.protocols.http.parser: 'htp'"):
        htp.parser_class("htp")


def test_set_chooses_the_parser_by_suricatas_name() -> None:
    assert parse_sets(["app-layer.protocols.http.parser=python"]) == {"http_parser": "python"}
    with pytest.raises(UsageError, match="want libhtp or python"):
        parse_sets(["app-layer.protocols.http.parser=htp"])
    assert FlowConfig().http_parser == "libhtp"
