"""netsec.app.normalize: hosts, SNI and URIs as Suricata's libhtp defaults normalise them,
checked against libhtp itself (through netsec.app.htp), and category blocking on the
normalised name through the real rule loader, flow table and engine."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsec.app import normalize
from netsec.app.htp import HtpParser
from netsec.blocklist import Blocklist, normalise_domain
from netsec.decode import Decoder
from netsec.engine import Engine, EngineConfig, Verdict
from netsec.flow import FlowConfig, FlowTable
from netsec.policy import category_rules
from netsec.rules import load_rules
from tests.unit.test_policy import FILTERED, client_hello, session


def libhtp(target: bytes, host: bytes = b"x.example") -> dict:
    """The request buffers libhtp (Suricata's configuration) gives for one request."""
    out = HtpParser().feed(b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", True)
    assert out and out[0].buffers is not None, target
    return out[0].buffers


@pytest.mark.parametrize(("raw", "norm"), [
    (b"ADULT.example.:80", b"adult.example"),
    (b" adult.example\t", b"adult.example"),
    (b"adult.example..", b"adult.example"),
    (b"adult.example:", b"adult.example"),
    (b"[2001:DB8::1]:8080", b"[2001:db8::1]"),
    (b"[fe80::1]", b"[fe80::1]"),
    ("Bücher.Example".encode(), b"xn--bcher-kva.example"),
    ("straße.example".encode(), b"xn--strae-oqa.example"),   # UTS #46 non-transitional
    (b"XN--BCHER-KVA.example", b"xn--bcher-kva.example"),
    (b"_dmarc.example", b"_dmarc.example"),
    (b"\xff\xfe.example", b"\xff\xfe.example"),               # not UTF-8: kept, not lost
])
def test_host(raw: bytes, norm: bytes) -> None:
    assert normalize.host(raw) == norm
    assert libhtp(b"/", raw).get("http.host") == norm


def test_sni_and_block_list_names_normalise_as_hosts_do() -> None:
    assert normalize.name(b"WWW.Adult.Example.") == b"www.adult.example"
    assert normalize.name("bücher.example".encode()) == b"xn--bcher-kva.example"
    assert normalise_domain("Bücher.Example.") == "xn--bcher-kva.example"
    assert normalise_domain("xn--bcher-kva.example") == "xn--bcher-kva.example"
    assert normalise_domain("\udcff.example") is None


@pytest.mark.parametrize(("uri", "host"), [
    (b"http://adult.example/x", b"adult.example"),
    (b"HTTP://Adult.Example.:81/x?q", b"Adult.Example."),
    (b"http://user:pw@adult.example", b"adult.example"),
    (b"http://[::1]:80/", b"[::1]"),
    (b"/http://adult.example/", b"allowed.example"),   # a path, not an absolute URI
    (b"http:///adult.example/", b"allowed.example"),   # three slashes: a path (libhtp)
])
def test_the_absolute_uris_authority_wins_over_host(uri: bytes, host: bytes) -> None:
    assert normalize.request_host(uri, b"allowed.example") == host
    bufs = libhtp(uri, b"allowed.example")
    assert bufs["http.host.raw"] == host
    assert bufs["http.host"] == normalize.host(host)


@pytest.mark.parametrize(("raw", "norm"), [
    (b"/a/../b", b"/b"), (b"/a/./b/", b"/a/b/"), (b"/a/b/..", b"/a"), (b"/a/..", b""),
    (b"/../../etc/passwd", b"/etc/passwd"), (b"//a///b", b"/a/b"), (b"/a\\..\\b", b"/b"),
    (b"/%2e%2e/x", b"/x"), (b"/a%2fb%5Cc", b"/a/b/c"), (b"/evil.php%00.jpg", b"/evil.php\0.jpg"),
    (b"/%zz%4", b"/%zz%4"), (b"/%u0041%uFF21%u2215", b"/AA/"), (b"/%uzzzz", b"/%uzzzz"),
    (b"/a%c0%afb", b"/a/b"), (b"/\xc3\xbc\xe6\x97\xa5", b"/\xfc?"), (b"/\xc0x", b"/?x"),
    (b"/a?b=%2e%2e/../c#fr%41g", b"/a?b=%2e%2e/../c#frAg"), (b"/A/B+C", b"/A/B+C"),
    (b"http://h.example/p/../q?x", b"/q?x"), (b"http://h.example", b""), (b"*", b"*"),
])
def test_uri(raw: bytes, norm: bytes) -> None:
    assert normalize.uri(raw) == norm
    assert libhtp(raw)["http.uri"] == norm


def test_the_best_fit_table_is_libhtps_for_every_code_point() -> None:
    # `/a%uXXXXb`: the code point's byte between two letters, clear of slash rules
    targets = [b"/a%%u%04xb" % cp for cp in range(0x100, 0x10000)]
    want = {t: libhtp(t)["http.uri"] for t in targets}
    assert {t: normalize.uri(t) for t in targets} == want
    assert want[b"/a%u2215b"] == b"/a/b" and normalize.BESTFIT[0x2215] == ord("/")


_URI_BYTES = st.sampled_from([b"/", b".", b"..", b"\\", b"%", b"%2f", b"%2e", b"%5c", b"%00",
                              b"%u", b"%u002f", b"%uff0e", b"%c0%af", b"\xc3", b"\xbc",
                              b"\xe6\x97\xa5", b"\xed\xa0", b"?", b"#", b"a", b"B", b"%41",
                              b"%4", b"+", b"~"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_URI_BYTES, max_size=14))
def test_uri_agrees_with_libhtp_on_generated_targets(parts: list[bytes]) -> None:
    target = b"/" + b"".join(parts)
    assert normalize.uri(target) == libhtp(target)["http.uri"]


@pytest.mark.parametrize("parser", ["libhtp", "python"])
@pytest.mark.parametrize(("payload", "port", "blocked"), [
    (b"GET / HTTP/1.1\r\nHost: ADULT.example.:80\r\n\r\n", 80, True),
    (b"GET http://adult.example/ HTTP/1.1\r\nHost: allowed.example\r\n\r\n", 80, True),
    (b"GET http://allowed.example/ HTTP/1.1\r\nHost: adult.example\r\n\r\n", 80, False),
    ("GET / HTTP/1.1\r\nHost: www.bücher.example\r\n\r\n".encode(), 80, True),
    (b"GET / HTTP/1.1\r\nHost: allowed.example\r\n\r\n", 80, False),   # the control
    (client_hello("adult.example."), 443, True),
    (client_hello("WWW.ADULT.EXAMPLE."), 443, True),
    (client_hello("xn--bcher-kva.example"), 443, True),
    (client_hello("allowed.example."), 443, False),
])
def test_category_rules_block_the_normalised_name(tmp_path: Path, parser: str,
                                                  payload: bytes, port: int,
                                                  blocked: bool) -> None:
    # The list names one site in UTF-8, the other as plain ASCII; traffic sends A-labels,
    # UTF-8, case, trailing dots and ports.
    (tmp_path / "adult.txt").write_text("adult.example\nbücher.example\n")
    rules_file = tmp_path / "policy.rules"
    rules_file.write_text(category_rules(Blocklist.from_files([tmp_path / "adult.txt"])[0],
                                         [FILTERED]))
    ruleset = load_rules([rules_file])
    assert len(ruleset.rules) == 4 and not ruleset.skipped
    engine = Engine(ruleset.rules, FlowTable(FlowConfig(inline=True, http_parser=parser)),
                    EngineConfig(simulate_ips=True))
    decoder = Decoder()
    verdicts = [engine.process(decoder.decode(101, 1.0 + i, i, raw))
                for i, raw in enumerate(session(FILTERED, payload, port))]
    assert (verdicts[-1] is Verdict.DROP) == blocked
    alerts = [e for e in engine.take_events() if e["event_type"] == "alert"]
    assert len(alerts) == blocked


_HOST_BYTES = st.sampled_from([b"A", b"a", b".", b":", b"[", b"]", b" ", b"8", b"\xc3\xbc",
                               b"%41", b"-", b"\t", b",", b"@", b"_"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_HOST_BYTES, min_size=1, max_size=10))
def test_host_agrees_with_libhtp_on_generated_values(parts: list[bytes]) -> None:
    value = b"".join(parts)
    # libhtp gives no hostname where we give an empty one (an unterminated `[`, blanks)
    assert normalize.host(value) == (libhtp(b"/", value).get("http.host") or b"")
