"""The payload inspection chain, case by case: buffer bytes + keywords -> match or not."""
from __future__ import annotations

import pytest

from tests.unit.rules_helpers import ins, matches, rule

CASES = [
    # plain, depth, offset
    (b"abcdef", 'content:"cd";', True),
    (b"abcdef", 'content:"cd"; depth:3;', False),
    (b"abcdef", 'content:"cd"; depth:4;', True),
    (b"abcdef", 'content:"cd"; offset:3;', False),
    (b"abcdef", 'content:"cd"; offset:2; depth:2;', True),
    (b"abcdef", 'content:"xy";', False),
    # hex and escapes
    (b"a;b", 'content:"a|3b|b";', True),
    (b"a;b", 'content:"a\\;b";', True),
    (b'say "hi"', 'content:"\\"hi\\"";', True),
    (b"\x00\x01AB", 'content:"|00 01|AB";', True),
    (b"a|b", 'content:"a\\|b";', True),
    (b"a|b", 'content:"a|7c|b";', True),
    # nocase
    (b"HeLLo", 'content:"hello";', False),
    (b"HeLLo", 'content:"hello"; nocase;', True),
    # relative: distance/within, with backtracking over the first content
    (b"abcabd", 'content:"ab"; content:"d"; distance:0; within:1;', True),
    (b"abcabc", 'content:"ab"; content:"d"; distance:0; within:1;', False),
    (b"xaxxb", 'content:"a"; content:"b"; distance:1; within:1;', False),
    (b"xaxxb", 'content:"a"; content:"b"; distance:1; within:2;', True),
    (b"xaxxb", 'content:"a"; content:"b"; distance:2; within:1;', True),
    (b"abcd", 'content:"cd"; content:"b"; distance:-3; within:2;', True),
    (b"one two", 'content:"one"; content:"two"; distance:1;', True),
    (b"onetwo", 'content:"one"; content:"two"; distance:1;', False),
    (b"a1b2a3c", 'content:"a"; content:"c"; distance:1; within:1;', True),
    # three-deep backtracking
    (b"ab-ab+ab*", 'content:"ab"; content:"*"; distance:0; within:1;', True),
    # negation, absolute and relative (a present relative negated content lets the
    # previous content try its next occurrence)
    (b"abc", 'content:!"x";', True),
    (b"axc", 'content:!"x";', False),
    (b"abac", 'content:"a"; content:!"b"; distance:0; within:1;', True),
    (b"abab", 'content:"a"; content:!"b"; distance:0; within:1;', False),
    (b"file.exe.txt", 'content:!".exe"; endswith;', True),
    # without a following `within`, Suricata does not retry an earlier content
    (b"a\x01a\x05", 'content:"a"; byte_test:1,=,5,0,relative;', False),
    (b"a\x05", 'content:"a"; byte_test:1,=,5,0,relative;', True),
    (b"ab-ab+", 'content:"ab"; content:"+"; distance:0;', True),
    (b"ab-ab+", 'content:"ab"; pcre:"/^\\+/R";', False),
    (b"acab", 'content:"a"; content:!"b"; distance:0; within:1;', True),
    # startswith / endswith
    (b"GET / HTTP", 'content:"GET"; startswith;', True),
    (b" GET /", 'content:"GET"; startswith;', False),
    (b"file.exe", 'content:".exe"; endswith;', True),
    (b"file.exe.txt", 'content:".exe"; endswith;', False),
    (b".exe", 'content:".exe"; startswith; endswith;', True),
    (b"a.exe", 'content:"a"; content:".exe"; distance:0; endswith;', True),
    # isdataat
    (b"abc", 'content:"b"; isdataat:1,relative;', True),
    (b"abc", 'content:"c"; isdataat:1,relative;', False),
    (b"abc", 'content:"c"; isdataat:!1,relative;', True),
    (b"abc", "isdataat:2;", True),
    (b"abc", "isdataat:3;", False),
    (b"abc", "isdataat:!3;", True),
    # pcre, relative and absolute
    (b"abc123", 'content:"abc"; pcre:"/^\\d+/R";', True),
    (b"abcx123", 'content:"abc"; pcre:"/^\\d+/R";', False),
    (b"abc123", 'pcre:"/^\\d+/";', False),
    (b"ABC", 'pcre:"/abc/i";', True),
    (b"ABC", 'pcre:!"/abc/i";', False),
    (b"xyz", 'pcre:!"/abc/";', True),
    (b"a\nb", 'pcre:"/a.b/";', False),
    (b"a\nb", 'pcre:"/a.b/s";', True),
    (b"x\nab", 'pcre:"/^ab/m";', True),
    (b"a b", 'pcre:"/a b/x";', False),
    (b"ab", 'pcre:"/a b/x";', True),
    (b"k=v1;k=v22", 'content:"k="; pcre:"/^v\\d{2}/R";', False),  # no retry without within
    (b"k=v12", 'content:"k="; pcre:"/^v\\d{2}/R";', True),
    (b"v1v22;", 'pcre:"/v\\d+/"; content:"|3b|"; within:1;', True),  # pcre retries
    (b"12ab", 'pcre:"/[[:digit:]]{2}/"; content:"ab"; distance:0;', True),
    (b"xx12", 'pcre:"/\\d+/"; isdataat:!1,relative;', True),
    # byte_test
    (b"\x00\x10", "byte_test:2,=,16,0;", True),
    (b"\x00\x10", "byte_test:2,>,16,0;", False),
    (b"\x00\x10", "byte_test:2,=,4096,0,little;", True),
    (b"\x00\x10", "byte_test:2,!=,16,0;", False),
    (b"\x00\x10", "byte_test:2,!,17,0;", True),
    (b"\x00\x10", "byte_test:2,&,0x10,0;", True),
    (b"\x00\x10", "byte_test:1,>=,0,1;", True),
    (b"\x00\x10", "byte_test:2,=,16,1;", False),
    (b"123abc", "byte_test:3,>,100,0,string,dec;", True),
    (b"ff", "byte_test:2,=,255,0,string,hex;", True),
    (b"17", "byte_test:2,=,15,0,string,oct;", True),
    (b"x42", 'content:"x"; byte_test:2,=,42,0,relative,string,dec;', True),
    (b"\xf0", "byte_test:1,=,15,0,bitmask 0xf0;", True),
    (b"1234", "byte_test:0,=,1234,0,string,dec;", True),
    # byte_jump
    (b"\x02xxAB", 'byte_jump:1,0; content:"AB"; within:2;', True),
    (b"\x03xxAB", 'byte_jump:1,0; content:"AB"; within:2;', False),
    (b"\x01xyAB", 'byte_jump:1,0,post_offset 1; content:"AB"; within:2;', True),
    (b"\x02xAB", 'byte_jump:1,0,from_beginning; content:"AB"; within:2;', True),
    (b"\x01xxxxAB", 'byte_jump:1,0,multiplier 2,align; content:"AB"; within:2;', True),
    (b"\x09xAB", "byte_jump:1,0;", False),  # past the end
    (b"Q\x01xAB", 'content:"Q"; byte_jump:1,0,relative; content:"AB"; within:2;', True),
    (b"ABC", 'byte_jump:0,-2,from_end,string,dec; content:"BC"; within:2;', False),
    # byte_extract and its variables
    (b"\x03abcXYZ", 'byte_extract:1,0,len; content:"XYZ"; distance:len; within:3;', True),
    (b"\x02abcXYZ", 'byte_extract:1,0,len; content:"XYZ"; distance:len; within:3;', False),
    (b"\x05abcde", "byte_extract:1,0,n; isdataat:n,relative;", True),
    (b"\x06abcde", "byte_extract:1,0,n; isdataat:n,relative;", False),
    (b"\x05\x05", "byte_extract:1,0,n; byte_test:1,=,n,1;", True),
]


@pytest.mark.parametrize(("data", "options", "expected"), CASES)
def test_payload_chain(data: bytes, options: str, expected: bool) -> None:
    assert matches(options, data) is expected


def test_payload_rules_look_at_stream_and_packet() -> None:
    r = rule('content:"needle";')
    assert r.buffers == {"pkt", "stream"}
    assert r.match(ins(buffers={"stream": b"..needle.."}))
    assert not r.match(ins(buffers={"pkt": b"..hay.."}))
    assert rule('flow:only_stream; content:"x";').buffers == {"stream"}
    assert rule('flow:no_stream; content:"x";').buffers == {"pkt"}
    assert rule('content:"x";', proto="udp").buffers == {"pkt"}
    assert rule('dsize:>1; content:"x";').buffers == {"pkt"}
    assert rule('content:"x";', proto="tcp-pkt").buffers == {"pkt"}
    assert rule('content:"x";', proto="tcp-stream").buffers == {"stream"}


BUFFER_CASES = [
    ({"http.uri": b"/abc"}, 'http.uri; content:"/a"; bsize:4;', True),
    ({"http.uri": b"/abc"}, 'http.uri; content:"/a"; bsize:<4;', False),
    ({"http.uri": b"/abc"}, 'content:"/ab"; http_uri;', True),
    ({"http.uri": b"/abc"}, 'content:"/ab"; http_uri; content:"c"; http_uri; distance:0;', True),
    ({"pkt": b"/abc"}, 'content:"/ab"; http_uri;', False),
    ({"http.uri": b"/a?\x05"}, 'content:"?"; http_uri; byte_test:1,=,5,0,relative;', True),
    ({"http.uri": b"/ABC"}, 'content:"/abc"; http_uri; nocase;', True),
    ({"http.uri": b"/a"}, "urilen:2;", True),
    ({"http.uri": b"/a"}, "urilen:>2;", False),
    ({"http.uri.raw": b"/a%20"}, "urilen:5,raw;", True),
    ({"http.method": b"POST", "http.uri": b"/x"},
     'http.method; content:"POST"; http.uri; content:"/x";', True),
    ({"http.method": b"GET", "http.uri": b"/x"},
     'http.method; content:"POST"; http.uri; content:"/x";', False),
    ({"http.uri": b"/x"}, 'http.method; content:"POST"; http.uri; content:"/x";', False),
    ({"http.header": b"Host: a\r\n"}, 'pcre:"/Host: a/H";', True),
    ({"dns.query": [b"a.com", b"b.org"]}, 'dns.query; content:"b.org"; startswith; endswith;',
     True),
    ({"dns.query": [b"a.com", b"b.orgx"]}, 'dns.query; content:"b.org"; endswith;', False),
    ({"dns.query": [b"x.evil.com"]}, 'dns.query; dotprefix; content:".evil.com"; endswith;',
     True),
    ({"dns.query": [b"notevil.com"]}, 'dns.query; dotprefix; content:".evil.com"; endswith;',
     False),
    ({"http.host": b"ExAmple.COM"}, 'http.host; to_lowercase; content:"example.com";', True),
    ({"dns.query": [b"rs-ab.rustdesk.com"]}, 'dns.query; content:"rs-"; startswith; '
     'dotprefix; content:".rustdesk.com"; endswith;', True),
    ({"dns.query": [b"xrs-ab.rustdesk.com"]}, 'dns.query; content:"rs-"; startswith; '
     'dotprefix; content:".rustdesk.com"; endswith;', False),
    ({"http.uri": b"/a%41"}, 'http.uri; url_decode; content:"/aA";', True),
    ({"http.header": b"a  b\t c"}, 'http.header; compress_whitespace; content:"a b c";', True),
    ({"http.header": b"a  b\t c"}, 'http.header; strip_whitespace; content:"abc";', True),
    ({"tls.sni": b"abc"}, 'tls.sni; to_md5; content:"|90 01 50 98 3c d2 4f b0 d6 96 3f 7d 28 '
     'e1 7f 72|";', True),
]


@pytest.mark.parametrize(("buffers", "options", "expected"), BUFFER_CASES)
def test_sticky_buffers(buffers: dict, options: str, expected: bool) -> None:
    assert rule(options).match(ins(buffers=buffers)) is expected


@pytest.mark.parametrize(("options", "expected"), [
    ('content:"ab"; content:"abcdef";', ("pkt", b"abcdef", False)),
    ('content:"abcdef"; content:"ab"; fast_pattern;', ("pkt", b"ab", False)),
    ('content:"abcdef"; fast_pattern:2,3; nocase;', ("pkt", b"cde", True)),
    ('content:"abcdef"; fast_pattern:only;', ("pkt", b"abcdef", False)),
    ('content:!"abcdef"; content:"ab";', ("pkt", b"ab", False)),
    ('content:!"abcdef";', None),
    ("dsize:>5;", None),
    ('http.uri; content:"/x";', ("http.uri", b"/x", False)),
    ('dns.query; dotprefix; content:".evil.com";', ("dns.query", b"evil.com", False)),
    ('http.host; to_lowercase; content:"evil";', ("http.host", b"evil", True)),
    ('http.header; strip_whitespace; content:"a:b";', None),
    # application buffers before the payload, the payload before http.method
    ('content:"a-long-payload"; http.uri; content:"/x";', ("http.uri", b"/x", False)),
    ('content:"POST"; http_method; content:"ab";', ("pkt", b"ab", False)),
    # equal length: the more varied pattern
    ('content:"aaaa"; content:"abcd";', ("pkt", b"abcd", False)),
    ('content:"abcd"; content:"|00 01 02 03|";', ("pkt", b"\x00\x01\x02\x03", False)),
])
def test_prefilter_choice(options: str, expected: tuple | None) -> None:
    assert rule(options).prefilter == expected


def test_header_only_rules_have_no_buffers() -> None:
    assert rule("flow:established; dsize:0;").buffers == set()


@pytest.mark.parametrize(("data", "options", "expected"), [
    (b"x=aGVsbG8gd29ybGQ=", 'content:"x="; base64_decode:relative; base64_data; '
     'content:"world";', True),
    (b"x=aGVsbG8gd29ybGQ=", 'content:"x="; base64_decode:bytes 8,relative; base64_data; '
     'content:"world";', False),
    (b"aGVsbG8gd29ybGQ=", 'base64_decode; base64_data; content:"hello"; startswith;', True),
    (b"!!!!", 'base64_decode; base64_data; content:"hello";', False),
    (b"x=aGVsbG8=", 'content:"x="; base64_decode:offset 0,relative; base64_data; '
     'content:!"hello";', False),
])
def test_base64(data: bytes, options: str, expected: bool) -> None:
    r = rule(options)
    assert "world" not in repr(r.prefilter)
    assert r.match(ins(data)) is expected


@pytest.mark.parametrize(("value", "buffer", "expected"), [
    ("1.2", b"TLS 1.2", True), ("1.2", b"TLS 1.3", False), ("0x0303", b"TLS 1.2", True),
    ("ssl3", b"SSLv3", True),
])
def test_tls_version(value: str, buffer: bytes, expected: bool) -> None:
    r = rule(f"tls.version:{value};", proto="tls")
    assert r.buffers == {"tls.version"}
    assert r.match(ins(buffers={"tls.version": buffer})) is expected


@pytest.mark.parametrize(("data", "regex", "expected"), [
    (b"abab", r"/(?<w>ab)\k<w>/", True),
    (b"abab", r"/(ab)\g{1}/", True),
    (b"a\x02-b", r"/a\x2-b/", True),
    (b"aAb", r"/a\x{41}b/", True),
    (b"a.b", r"/\Qa.b\E/", True),
    (b"axb", r"/\Qa.b\E/", False),
    (b"a1", r"/a[[:digit:]]/", True),
    (b"end", r"/end\z/", True),
    (b"a b", r"/a\hb/", True),
    (b"a/b", r"/a\/b/", True),
])
def test_pcre_translation(data: bytes, regex: str, expected: bool) -> None:
    assert matches(f'pcre:"{regex}";', data) is expected
