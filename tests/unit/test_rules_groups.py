"""Variables, address and port groups, classification.config."""
from __future__ import annotations

from pathlib import Path

import pytest

from netsec.rules import RuleError, Variables
from netsec.rules.addresses import AddressMatcher
from netsec.rules.classification import parse_classification
from netsec.rules.ports import PortMatcher

V = Variables()


@pytest.mark.parametrize(("spec", "addr", "expected"), [
    ("any", "1.2.3.4", True),
    ("any", "2001:db8::1", True),
    ("10.0.0.0/8", "10.9.8.7", True),
    ("10.0.0.0/8", "11.0.0.1", False),
    ("!10.0.0.0/8", "11.0.0.1", True),
    ("!10.0.0.0/8", "10.0.0.1", False),
    ("[10.0.0.0/8,192.168.1.1]", "192.168.1.1", True),
    ("[10.0.0.0/8,!10.1.0.0/16]", "10.1.2.3", False),
    ("[10.0.0.0/8,!10.1.0.0/16]", "10.2.2.3", True),
    ("[!10.0.0.0/8]", "8.8.8.8", True),
    ("[1.1.1.1, [2.2.2.2, 3.3.3.3]]", "3.3.3.3", True),
    ("$HOME_NET", "192.168.5.5", True),
    ("$HOME_NET", "8.8.8.8", False),
    ("$EXTERNAL_NET", "8.8.8.8", True),
    ("$EXTERNAL_NET", "172.16.3.3", False),
    ("$EXTERNAL_NET", "2001:db8::1", True),
    ("$HTTP_SERVERS", "10.1.1.1", True),
    ("2001:db8::/32", "2001:db8:1::5", True),
    ("2001:db8::/32", "2001:db9::5", False),
    ("!2001:db8::/32", "10.0.0.1", True),
    ("[$HOME_NET,!192.168.0.0/24]", "192.168.0.7", False),
    ("any", "not-an-address", True),
    ("10.0.0.0/8", "not-an-address", False),
])
def test_addresses(spec: str, addr: str, expected: bool) -> None:
    assert AddressMatcher(spec, V).match(addr) is expected


@pytest.mark.parametrize(("spec", "port", "expected"), [
    ("any", 1, True), ("80", 80, True), ("80", 81, False), ("!80", 81, True), ("!80", 80, False),
    ("[80,443]", 443, True), ("[80,443]", 444, False), ("1024:", 1024, True),
    ("1024:", 1023, False), (":1023", 0, True), (":1023", 1024, False),
    ("[1000:2000,!1500]", 1500, False), ("[1000:2000,!1500]", 1501, True),
    ("$HTTP_PORTS", 80, True), ("$SHELLCODE_PORTS", 80, False), ("$SHELLCODE_PORTS", 81, True),
    ("$FILE_DATA_PORTS", 143, True), ("$FILE_DATA_PORTS", 80, True),
    ("[$HTTP_PORTS,8080]", 8080, True), ("![1:1024]", 0, True), ("![1:1024]", 5, False),
])
def test_ports(spec: str, port: int, expected: bool) -> None:
    assert PortMatcher(spec, V).match(port) is expected


@pytest.mark.parametrize("spec", ["99999", "abc", "[80", "80]", "2000:1000", "$NOPE", "[]",
                                  "!any"])
def test_bad_ports(spec: str) -> None:
    with pytest.raises(RuleError, match="port"):
        PortMatcher(spec, V)


@pytest.mark.parametrize("spec", ["1.2.3", "10.0.0.0/33", "[1.1.1.1", "$NOPE", "!any", "[,]"])
def test_bad_addresses(spec: str) -> None:
    with pytest.raises(RuleError, match="address"):
        AddressMatcher(spec, V)


def test_variables_nest_and_loop_is_an_error() -> None:
    v = Variables({"A": "$B", "B": "$A"})
    with pytest.raises(RuleError, match="too deep"):
        AddressMatcher("$A", v)


def test_variables_from_yaml(tmp_path: Path) -> None:
    f = tmp_path / "suricata.yaml"
    f.write_text('vars:\n  address-groups:\n    HOME_NET: "[10.10.0.0/16]"\n'
                 '  port-groups:\n    HTTP_PORTS: "[80,8080]"\n')
    v = Variables.from_yaml(f)
    assert AddressMatcher("$HOME_NET", v).match("10.10.1.1")
    assert not AddressMatcher("$HOME_NET", v).match("192.168.1.1")
    assert AddressMatcher("$EXTERNAL_NET", v).match("192.168.1.1")
    assert PortMatcher("$HTTP_PORTS", v).match(8080)
    assert v.ports["SSH_PORTS"] == "22"  # defaults stay


def test_classification() -> None:
    c = parse_classification("# comment\n\nconfig classification: trojan-activity,"
                             "A Network Trojan was detected,1\n")
    assert c["trojan-activity"].priority == 1
    assert c["trojan-activity"].description == "A Network Trojan was detected"
    with pytest.raises(RuleError, match="classification"):
        parse_classification("config classification: broken,2\n")
