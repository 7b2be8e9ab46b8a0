"""Parser and keywords: accepted forms, bad values naming the keyword, non-payload checks."""
from __future__ import annotations

import pytest

from netsec.rules import ACTION_ORDER, RuleError, parse_rule
from netsec.rules.keywords.table import TABLE
from tests.unit.rules_helpers import FakeFlow, ins, matches, rule


def test_full_rule_fields() -> None:
    r = parse_rule('drop http $HOME_NET any <> $EXTERNAL_NET $HTTP_PORTS (msg:"ET x \\"q\\""; '
                   'flow:established,to_server; http.uri; content:"/a"; '
                   'reference:url,example.com; classtype:trojan-activity; priority:2; '
                   'metadata:created_at 2020_01_01, former_category MALWARE; '
                   'target:dest_ip; sid:2000001; rev:3; gid:1;)')
    assert (r.action, r.proto, r.app_proto, r.bidirectional) == ("drop", "http", "http", True)
    assert (r.sid, r.rev, r.gid, r.priority, r.target) == (2000001, 3, 1, 2, "dest_ip")
    assert r.msg == 'ET x "q"'
    assert r.classtype == "trojan-activity"
    assert r.metadata == {"created_at": ["2020_01_01"], "former_category": ["MALWARE"]}
    assert r.references == ["url,example.com"]
    assert r.flow_conditions == {"established", "to_server"}
    assert r.src.match("192.168.1.1") and r.dport.match(80)
    assert r.buffers == {"http.uri"}


def test_action_order_is_suricatas() -> None:
    assert ACTION_ORDER[0] == "pass" and ACTION_ORDER[1] == "drop"
    assert ACTION_ORDER.index("reject") < ACTION_ORDER.index("alert")


@pytest.mark.parametrize(("text", "fragment"), [
    ("alert tcp any any -> any any (msg:\"x\";)", "sid"),
    ("alert tcp any any -> any any (sid:1; bogus_kw:1;)", "bogus_kw"),
    ("alert tcp any any -> any any (sid:1; nocase;)", "nocase"),
    ("alert tcp any any -> any any (sid:1; content:\"a\"; depth:x;)", "depth"),
    ("alert tcp any any -> any any (sid:1; content:\"ab\"; within:1;)", "within"),
    ("alert tcp any any -> any any (sid:1; content:abc;)", "content"),
    ("alert tcp any any -> any any (sid:1; content:\"a|4\";)", "content"),
    ("alert tcp any any -> any any (sid:1; content:\"|zz|\";)", "content"),
    ("alert tcp any any -> any any (sid:1; pcre:\"/a(/\";)", "pcre"),
    ("alert tcp any any -> any any (sid:1; pcre:\"/a/G\";)", "pcre"),
    ("alert tcp any any -> any any (sid:1; flow:sideways;)", "flow"),
    ("alert tcp any any -> any any (sid:1; flow:to_server,to_client;)", "flow"),
    ("alert tcp any any -> any any (sid:1; flowbits:frob,x;)", "flowbits"),
    ("alert tcp any any -> any any (sid:1; flowbits:set,a|b;)", "flowbits"),
    ("alert tcp any any -> any any (sid:1; ttl:abc;)", "ttl"),
    ("alert tcp any any -> any any (sid:1; ttl:300;)", "ttl"),
    ("alert tcp any any -> any any (sid:1; dsize:5<>3;)", "dsize"),
    ("alert tcp any any -> any any (sid:1; flags:SX;)", "flags"),
    ("alert tcp any any -> any any (sid:1; byte_test:2,=,1;)", "byte_test"),
    ("alert tcp any any -> any any (sid:1; byte_test:2,~,1,0;)", "byte_test"),
    ("alert tcp any any -> any any (sid:1; byte_test:9,=,1,0;)", "byte_test"),
    ("alert tcp any any -> any any (sid:1; byte_jump:2,0,wobble;)", "byte_jump"),
    ("alert tcp any any -> any any (sid:1; byte_extract:2,0,1bad;)", "byte_extract"),
    ("alert tcp any any -> any any (sid:1; content:\"a\"; distance:nope;)", "distance"),
    ("alert tcp any any -> any any (sid:1; threshold:type lots,track by_src,count 1,"
     "seconds 1;)", "threshold"),
    ("alert tcp any any -> any any (sid:1; detection_filter:track by_src,count 1;)",
     "detection_filter"),
    ("alert tcp any any -> any any (sid:1; bsize:3;)", "bsize"),
    ("alert tcp any any -> any any (sid:1; urilen:3,weird;)", "urilen"),
    ("alert tcp any any -> any any (sid:1; content:\"a\"; dotprefix;)", "dotprefix"),
    ("alert tcp any any -> any any (sid:1; target:nobody;)", "target"),
    ("alert tcp any any -> any any (sid:1; fast_pattern;)", "fast_pattern"),
    ("alert tcp any any -> any any (sid:1; content:\"ab\"; fast_pattern:1,5;)", "fast_pattern"),
    ("alert tcp any any -> any any (sid:1; ip_proto:warp;)", "ip_proto"),
    ("alert tcp any any -> any any (sid:1; app-layer-protocol:;)", "app-layer-protocol"),
    ("alert tcp any any -> any any (sid:1; msg:unquoted;)", "msg"),
    ("alert tcp any any -> any any (sid:1 rev:1;)", "sid"),
    ("alert tcp any any -> any any (sid:1; content:\"a\")", "options"),
    ("alert tcp any any -> any any (sid:1;; rev:1;)", "options"),
    ("yell tcp any any -> any any (sid:1;)", "action"),
    ("alert warp any any -> any any (sid:1;)", "proto"),
    ("alert tcp any any => any any (sid:1;)", "direction"),
    ("alert tcp any any -> any (sid:1;)", "header"),
    ("alert tcp any 99999 -> any any (sid:1;)", "port"),
    ("alert tcp 1.2.3 any -> any any (sid:1;)", "address"),
    ("alert tcp any any -> any any sid:1;", "rule"),
])
def test_bad_rules_name_the_keyword(text: str, fragment: str) -> None:
    with pytest.raises(RuleError) as e:
        parse_rule(text, where="x.rules:7")
    assert e.value.where == "x.rules:7"
    assert fragment in e.value.reason


def test_every_keyword_has_docs_and_setup() -> None:
    for name, kw in TABLE.items():
        assert callable(kw.setup), name
        assert kw.url.startswith("https://docs.suricata.io/"), name
        assert kw.description, name


@pytest.mark.parametrize(("options", "fields", "expected"), [
    ("ttl:64;", {"ttl": 64}, True), ("ttl:<64;", {"ttl": 64}, False),
    ("ttl:>=64;", {"ttl": 64}, True), ("ttl:10<>20;", {"ttl": 20}, False),
    ("ttl:10-20;", {"ttl": 15}, True), ("ttl:!64;", {"ttl": 63}, True),
    ("dsize:0;", {}, True), ("dsize:>3;", {"payload": b"abcd"}, True),
    ("dsize:<3;", {"payload": b"abcd"}, False), ("dsize:2<>5;", {"payload": b"abcd"}, True),
    ("flags:S;", {"tcp_flags": 0x02}, True), ("flags:S;", {"tcp_flags": 0x12}, False),
    ("flags:S+;", {"tcp_flags": 0x12}, True), ("flags:SF*;", {"tcp_flags": 0x01}, True),
    ("flags:!R;", {"tcp_flags": 0x10}, True), ("flags:!R;", {"tcp_flags": 0x14}, False),
    ("flags:S,12;", {"tcp_flags": 0xC2}, True), ("flags:S,CE;", {"tcp_flags": 0xC2}, True),
    ("flags:0;", {"tcp_flags": 0}, True), ("tcp.flags:A;", {"tcp_flags": 0x10}, True),
    ("flags:S;", {"tcp_flags": 0x02, "ip_proto": 17}, False),
    ("itype:8;", {"icmp_type": 8, "ip_proto": 1}, True),
    ("itype:>8;", {"icmp_type": 8, "ip_proto": 1}, False),
    ("itype:8;", {}, False),
    ("icode:0<>3;", {"icmp_code": 1, "ip_proto": 1}, True),
    ("ip_proto:6;", {}, True), ("ip_proto:tcp;", {}, True), ("ip_proto:!tcp;", {}, False),
    ("ip_proto:>5;", {}, True), ("window:1024;", {"window": 1024}, True),
    ("window:!1024;", {"window": 1024}, False), ("id:5;", {"ip_id": 5}, True),
    ("seq:7;", {"seq": 7}, True), ("ack:7;", {"ack": 8}, False),
])
def test_header_keywords(options: str, fields: dict, expected: bool) -> None:
    payload = fields.pop("payload", b"")
    assert matches(options, payload, **fields) is expected


@pytest.mark.parametrize(("options", "established", "to_server", "expected"), [
    ("flow:established;", True, True, True),
    ("flow:established;", False, True, False),
    ("flow:not_established;", False, True, True),
    ("flow:to_server;", True, False, False),
    ("flow:to_client;", True, False, True),
    ("flow:from_server;", True, False, True),
    ("flow:established,from_client;", True, True, True),
    ("flow:stateless;", False, False, True),
])
def test_flow(options: str, established: bool, to_server: bool, expected: bool) -> None:
    i = ins(flow=FakeFlow(established=established), to_server=to_server)
    assert rule(options).match(i) is expected


def test_app_layer_protocol() -> None:
    assert rule("app-layer-protocol:tls;").match(ins(flow=FakeFlow(app_proto="tls")))
    assert not rule("app-layer-protocol:tls;").match(ins(flow=FakeFlow(app_proto="http")))
    assert rule("app-layer-protocol:!tls;").match(ins(flow=FakeFlow(app_proto="http")))


def test_flowbits_set_then_isset() -> None:
    setter = rule("flowbits:set,seen; flowbits:noalert;")
    reader = rule("flowbits:isset,seen;")
    flow = FakeFlow()
    i = ins(flow=flow)
    assert setter.noalert and setter.flowbits_set == {"seen"}
    assert reader.flowbits_read == {"seen"}
    assert not reader.match(i)
    assert setter.match(i)
    assert flow.flowbits == set()  # only postmatch changes state
    setter.postmatch(i)
    assert reader.match(i)


@pytest.mark.parametrize(("options", "bits", "expected"), [
    ("flowbits:isset,a|b;", {"b"}, True), ("flowbits:isset,a|b;", set(), False),
    ("flowbits:isset,a&b;", {"a"}, False), ("flowbits:isset,a&b;", {"a", "b"}, True),
    ("flowbits:isnotset,a;", {"b"}, True), ("flowbits:isnotset,a;", {"a"}, False),
    ("flowbits:isnotset,a|b;", {"a"}, True), ("flowbits:isnotset,a&b;", {"a"}, False),
])
def test_flowbits_groups(options: str, bits: set, expected: bool) -> None:
    assert rule(options).match(ins(flow=FakeFlow(flowbits=set(bits)))) is expected


@pytest.mark.parametrize(("options", "before", "after"), [
    ("flowbits:set,a&b;", set(), {"a", "b"}), ("flowbits:unset,a;", {"a", "c"}, {"c"}),
    ("flowbits:toggle,a;", {"a"}, set()), ("flowbits:toggle,a;", set(), {"a"}),
])
def test_flowbits_changes(options: str, before: set, after: set) -> None:
    flow = FakeFlow(flowbits=set(before))
    rule(options).postmatch(ins(flow=flow))
    assert flow.flowbits == after


def test_threshold_specs() -> None:
    r = rule("threshold:type limit, track by_src, count 1, seconds 60; "
             "detection_filter:track by_dst, count 5, seconds 10;")
    assert (r.threshold.type, r.threshold.track, r.threshold.count, r.threshold.seconds) == (
        "limit", "by_src", 1, 60)
    assert (r.detection_filter.track, r.detection_filter.count) == ("by_dst", 5)


def test_tag_and_rawbytes_are_accepted() -> None:
    r = rule('content:"x"; rawbytes; tag:session,5,packets;')
    assert r.match(ins(b"x"))


def test_app_protocols_and_buffers() -> None:
    assert rule('dns.query; content:"x";', proto="dns").app_proto == "dns"
    assert rule('tls.sni; content:"x";', proto="tls").buffers == {"tls.sni"}
    assert rule('tls_sni; content:"x";', proto="tls").buffers == {"tls.sni"}
    assert rule('file_data; content:"x";', proto="http").buffers == {"file.data"}
    assert rule('content:"x"; http_client_body;', proto="http").buffers == {
        "http.request_body"}
    assert rule("ja3_hash; content:\"abc\";", proto="tls").buffers == {"ja3.hash"}


def test_xbits_across_flows_with_expiry() -> None:
    shared: dict = {}
    setter = parse_rule("alert tcp any any -> any any (xbits:set,seen,track ip_src,expire 10; "
                        "sid:1;)", shared=shared)
    reader = parse_rule("alert tcp any any -> any any (xbits:isset,seen,track ip_src; sid:2;)",
                        shared=shared)
    other = parse_rule("alert tcp any any -> any any (xbits:isnotset,seen,track ip_src; "
                       "sid:3;)", shared=shared)
    first = ins(flow=FakeFlow(flow_id=1), src="10.0.0.1", dst="1.1.1.1", ts=100.0)
    later = ins(flow=FakeFlow(flow_id=2), src="10.0.0.1", dst="2.2.2.2", ts=105.0)
    too_late = ins(flow=FakeFlow(flow_id=3), src="10.0.0.1", dst="2.2.2.2", ts=111.0)
    elsewhere = ins(flow=FakeFlow(flow_id=4), src="10.0.0.2", dst="2.2.2.2", ts=105.0)
    assert not reader.match(first) and other.match(first)
    setter.postmatch(first)
    assert reader.match(later) and not other.match(later)
    assert not reader.match(too_late)
    assert not reader.match(elsewhere)
    assert setter.flowbits_set and reader.flowbits_read


@pytest.mark.parametrize("value", ["set,x", "set,x,track host", "frob,x,track ip_src",
                                   "set,x,track ip_src,expire soon"])
def test_bad_xbits(value: str) -> None:
    with pytest.raises(RuleError, match="xbits"):
        rule(f"xbits:{value};")


def test_flowint_counts_per_flow() -> None:
    add = rule("flowint:n,+,1;")
    ge2 = rule("flowint:n,>=,2;")
    isset = rule("flowint:n,isset;")
    notset = rule("flowint:n,notset;")
    flow = FakeFlow()
    i = ins(flow=flow)
    assert notset.match(i) and not isset.match(i) and not ge2.match(i)
    add.postmatch(i)
    assert isset.match(i) and not ge2.match(i)
    add.postmatch(i)
    assert ge2.match(i)
    assert not ge2.match(ins(flow=FakeFlow()))  # another flow has its own counter
    rule("flowint:n,=,10;").postmatch(i)
    rule("flowint:n,-,3;").postmatch(i)
    assert rule("flowint:n,==,7;").match(i)


@pytest.mark.parametrize("value", ["n", "n,+", "n,~,1", "n,isset,1", "n,+,bad value"])
def test_bad_flowint(value: str) -> None:
    with pytest.raises(RuleError, match="flowint"):
        rule(f"flowint:{value};")


class _Stream:
    def __init__(self, nxt: int) -> None:
        self.next = nxt


@pytest.mark.parametrize(("value", "client", "server", "expected"), [
    ("client,<,100", 50, 500, True), ("client,<,100", 150, 5, False),
    ("server,>,100", 50, 500, True), ("both,>,10", 50, 5, False),
    ("either,>,10", 50, 5, True), ("client,=,1", 0, 0, True), ("client,!=,1", 0, 0, False),
])
def test_stream_size(value: str, client: int, server: int, expected: bool) -> None:
    flow = FakeFlow()
    flow.streams = [_Stream(server), _Stream(client)]  # type: ignore[attr-defined]
    assert rule(f"stream_size:{value};").match(ins(flow=flow)) is expected
    assert not rule(f"stream_size:{value};").match(ins(flow=FakeFlow()))


@pytest.mark.parametrize("value", ["client,<", "sideways,<,1", "client,~,1", "client,<,x"])
def test_bad_stream_size(value: str) -> None:
    with pytest.raises(RuleError, match="stream_size"):
        rule(f"stream_size:{value};")
