"""Rule text to Rule: the header (`action proto src sport -> dst dport`), then each
`name[:value];` option handed to its keyword's setup, in order."""
from __future__ import annotations

import re
from typing import Any

from netsec.inspection import PKT, STREAM
from netsec.rules.addresses import AddressMatcher
from netsec.rules.classification import Classtype
from netsec.rules.errors import RuleError
from netsec.rules.keywords.table import lookup
from netsec.rules.ports import PortMatcher
from netsec.rules.rule import ACTIONS, Builder, Rule
from netsec.rules.variables import Variables

# proto -> (IP protocol or None for any, application protocol or None)
PROTOS: dict[str, tuple[int | None, str | None]] = {
    "ip": (None, None), "pkthdr": (None, None), "ipv4": (None, None), "ipv6": (None, None),
    "tcp": (6, None), "tcp-pkt": (6, None),
    "tcp-stream": (6, None), "udp": (17, None), "icmp": (1, None), "icmpv4": (1, None),
    "icmpv6": (58, None), "sctp": (132, None),
    **{p: (6, p) for p in ("http", "http1", "http2", "tls", "ssh", "smtp", "ftp", "ftp-data",
                           "imap", "pop3", "smb", "dcerpc", "rdp", "rfb", "mqtt", "modbus",
                           "dnp3", "enip", "telnet", "irc", "bittorrent", "pgsql", "ldap",
                           "websocket")},
    **{p: (17, p) for p in ("dhcp", "ntp", "tftp", "snmp", "quic", "ikev2", "ike",
                            "bittorrent-dht", "sip")},
    **{p: (None, p) for p in ("dns", "krb5", "nfs")},
}
_IP_VERSIONS = {"ipv4": 4, "ipv6": 6}   # `alert ipv6 ...`: IP, of that version only
_OPTION = re.compile(r"\s*((?:[^;\\]|\\.)*);", re.S)
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_VIRGIN = Variables()


def _split_header(header: str, where: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in header:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch.isspace() and depth <= 0:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    if len(out) != 7:
        raise RuleError(f"header: want 'action proto src sport -> dst dport', got {header!r}",
                        where)
    return out


def _matcher(cls: type, text: str, variables: Variables) -> Any:
    key = (cls.__name__, text)
    m = variables.cache.get(key)
    if m is None:
        m = variables.cache[key] = cls(text, variables)
    return m


def split_options(body: str, where: str) -> list[tuple[str, str | None]]:
    """`msg:"x"; sid:1;` to [("msg", '"x"'), ("sid", "1")]; `\\;` stays inside a value."""
    out: list[tuple[str, str | None]] = []
    pos = 0
    for m in _OPTION.finditer(body):
        if m.start() != pos:
            break
        pos = m.end()
        opt = m.group(1).strip()
        if not opt:
            raise RuleError("options: empty option (';;')", where)
        name, sep, value = opt.partition(":")
        name = name.strip()
        if not _NAME.fullmatch(name):
            raise RuleError(f"options: bad keyword name {name!r}", where)
        out.append((name, value.strip() if sep else None))
    if body[pos:].strip():
        raise RuleError(f"options: missing ';' after {body[pos:].strip()[:40]!r}", where)
    return out


def parse_rule(text: str, variables: Variables | None = None, where: str = "<string>:1",
               classification: dict[str, Classtype] | None = None,
               shared: dict[str, Any] | None = None) -> Rule:
    """Parse one rule; `shared` holds cross-rule match state (xbits) for a rule set."""
    variables = variables or _VIRGIN
    text = text.strip()
    start, end = text.find("("), text.rfind(")")
    if start < 0 or end < start or text[end + 1:].strip():
        raise RuleError("rule: want 'header (options)'", where)
    action, proto, src, sport, direction, dst, dport = _split_header(text[:start], where)
    rule = Rule()
    rule.text, rule.where = text, where
    if action not in ACTIONS:
        raise RuleError(f"action: unknown action {action!r}", where)
    if proto not in PROTOS:
        raise RuleError(f"proto: unsupported protocol {proto!r}", where)
    if direction not in ("->", "<>"):
        raise RuleError(f"direction: want -> or <>, got {direction!r}", where)
    rule.action, rule.proto, rule.bidirectional = action, proto, direction == "<>"
    rule.ip_proto, rule.app_proto = PROTOS[proto]
    try:
        rule.src = _matcher(AddressMatcher, src, variables)
        rule.dst = _matcher(AddressMatcher, dst, variables)
        rule.sport = _matcher(PortMatcher, sport, variables)
        rule.dport = _matcher(PortMatcher, dport, variables)
        b = Builder(rule, shared)
        if proto in _IP_VERSIONS:
            version = _IP_VERSIONS[proto]
            b.checks.append(lambda ins: ins.packet.ip_version == version)
        for name, value in split_options(text[start + 1:end], where):
            kw = lookup(name)
            if kw.value is True and not value:
                raise RuleError(f"{name}: needs a value")
            if kw.value is False and value:
                raise RuleError(f"{name}: takes no value, got {value!r}")
            kw.setup(b, value)
        _finish(b, classification)
    except RuleError as e:
        if e.where != where:
            raise RuleError(e.reason, where) from None
        raise
    return rule


def _finish(b: Builder, classification: dict[str, Classtype] | None) -> None:
    rule = b.rule
    if not rule.sid:
        raise RuleError("sid: missing")
    if rule.classtype is not None and classification is not None:
        ct = classification.get(rule.classtype)
        if ct is None:
            raise RuleError(f"classtype: {rule.classtype!r} is not in classification.config")
        if "priority" not in b.seen:
            rule.priority = ct.priority
    # dsize makes a rule packet-only in Suricata: its contents never see the stream.
    if (rule.ip_proto in (17, 1, 58) or rule.proto == "tcp-pkt" or "no_stream" in b.flow
            or "dsize" in b.seen):
        sources: tuple[str, ...] = (PKT,)
    elif "only_stream" in b.flow or rule.proto == "tcp-stream":
        sources = (STREAM,)
    else:
        sources = (PKT, STREAM)
    b.finish(sources)
