"""`--set NAME=VALUE` as Suricata takes it, for hyperwall-ids and hyperwall-ipsd: any
setting is accepted; those this engine applies are parsed (a bad value names the setting),
the others are listed once as ignored."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from domains.syssec.ipsd import ConfigError, build, parse_args
from netsec.cli import UsageError, ignored_note, parse_settings
from netsec.flow import FlowConfig

RULE = 'drop tcp any any -> any any (msg:"x"; content:"EVIL"; sid:1;)\n'


def test_applied_settings_are_parsed_and_the_others_listed_once() -> None:
    got = parse_settings([
        "stream.reassembly.depth=64kb", "exception-policy=drop-flow",
        "flow-timeouts.tcp.established=120", "mpm-algo=hs", "detect.guess-applayer-tx=yes",
        "app-layer.protocols.http.libhtp.default-config.response-body-limit=1mb",
        "mpm-algo=ac", "spm-algo=bm"])
    assert got.engine == {"exception_policy": "drop-flow"}
    assert got.flow["reassembly_depth"] == 65536
    assert got.flow["response_body_limit"] == 1 << 20
    # one timeout changes, the others keep Suricata's defaults, and the defaults stay
    assert got.flow["timeouts"]["tcp"] == {"new": 60, "established": 120, "closed": 60}
    assert FlowConfig().timeouts["tcp"]["established"] == 600
    assert got.ignored == ["mpm-algo", "detect.guess-applayer-tx", "spm-algo"]
    assert ignored_note(got) == ("--set: ignored, not applied by this engine: mpm-algo, "
                                 "detect.guess-applayer-tx, spm-algo")
    assert ignored_note(parse_settings(["stream.midstream=true"])) is None


@pytest.mark.parametrize(("pair", "says"), [
    ("exception-policy=drop-everything", "--set exception-policy=drop-everything: want one"),
    ("flow-timeouts.udp.new=soon", "--set flow-timeouts.udp.new=soon: want a whole number"),
    ("stream.reassembly.depth=lots", "stream.reassembly.depth"),
    ("app-layer.protocols.http.libhtp.default-config.request-body-limit=big",
     "request-body-limit"),
    ("mpm-algo", "--set mpm-algo: want name=value"),
    ("=1", "want name=value"),
])
def test_a_known_setting_with_a_bad_value_names_it(pair: str, says: str) -> None:
    with pytest.raises(UsageError, match=says.replace(".", r"\.")):
        parse_settings([pair])


def test_ipsd_applies_and_names_the_ignored_once(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a.rules").write_text(RULE)
    base = ["-S", str(tmp_path / "a.rules"), "-l", str(tmp_path / "log")]
    with caplog.at_level(logging.WARNING, logger="hyperwall.ipsd"):
        ipsd = build(parse_args([*base, "--set", "exception-policy=pass-flow",
                                 "--set", "mpm-algo=hs", "--set", "mpm-algo=ac",
                                 "--set", "flow-timeouts.tcp.new=5"]))
    assert ipsd.engine.config.exception_policy == "pass-flow"
    assert ipsd.engine.config.simulate_ips
    assert ipsd.flows.config.timeouts["tcp"]["new"] == 5
    assert [r.getMessage() for r in caplog.records] == [
        "--set: ignored, not applied by this engine: mpm-algo"]
    with pytest.raises(ConfigError, match="--set exception-policy=sometimes: want one of"):
        build(parse_args([*base, "--set", "exception-policy=sometimes"]))


def test_stream_bypass_is_suricatas_name_for_bypass_after_depth(tmp_path: Path) -> None:
    (tmp_path / "a.rules").write_text(RULE)
    base = ["-S", str(tmp_path / "a.rules"), "-l", str(tmp_path / "log")]
    assert build(parse_args(base)).engine.config.stream_bypass
    assert not build(parse_args([*base, "--no-bypass-after-depth"])).engine.config.stream_bypass
    assert not build(parse_args([*base, "--set", "stream.bypass=no"])).engine.config.stream_bypass
    assert parse_settings(["stream.bypass=yes"]).engine == {"stream_bypass": True}
