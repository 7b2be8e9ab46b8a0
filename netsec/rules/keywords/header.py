"""Packet header keywords: ttl, itype, icode, ip_proto, flags (tcp.flags), dsize, window,
id, seq, ack. The numeric ones share the integer grammar of netsec.rules.intrange."""
from __future__ import annotations

import re
from collections.abc import Callable

from netsec.inspection import Inspection
from netsec.rules.errors import RuleError
from netsec.rules.intrange import parse_uint
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder, Setup

_URL = DOCS + "header-keywords.html"
PROTO_NUMBERS = {"icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "udp": 17, "ipv6": 41, "gre": 47,
                 "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132}
TCP_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20,
                 "E": 0x40, "C": 0x80, "2": 0x40, "1": 0x80, "0": 0}


def _packet_uint(name: str, read: Callable[[Inspection], int | None],
                 maximum: int) -> Setup:
    def setup(b: Builder, value: str | None) -> None:
        test = parse_uint(value or "", name, maximum)
        b.seen.add(name)

        def check(ins: Inspection) -> bool:
            v = read(ins)
            return v is not None and test(v)
        b.checks.append(check)
    return setup


def _tcp(attr: str) -> Callable[[Inspection], int | None]:
    def read(ins: Inspection) -> int | None:
        p = ins.packet
        return getattr(p, attr) if p.ip_proto == 6 else None
    return read


def setup_ip_proto(b: Builder, value: str | None) -> None:
    m = re.fullmatch(r"\s*([!<>]?)\s*([A-Za-z0-9-]+)\s*", value or "")
    if not m:
        raise RuleError(f"ip_proto: bad value {value!r}")
    op, name = m.groups()
    num = int(name) if name.isdigit() else PROTO_NUMBERS.get(name.lower())
    if num is None or num > 255:
        raise RuleError(f"ip_proto: unknown protocol {name!r}")
    test = parse_uint(f"{op}{num}", "ip_proto", 255)
    b.checks.append(lambda ins: test(ins.packet.ip_proto))


def parse_flags(value: str) -> tuple[str, int, int]:
    """`[+*!]FSRPAUCE012[,mask]` to (modifier, flags, mask)."""
    text, _, mask_text = value.partition(",")
    text = text.strip()
    mod = ""
    flags = 0
    for ch in text:
        if ch in "+*!":
            if mod:
                raise RuleError(f"flags: two modifiers in {value!r}")
            mod = ch
        elif ch.upper() in TCP_FLAG_BITS:
            flags |= TCP_FLAG_BITS[ch.upper()]
        else:
            raise RuleError(f"flags: unknown flag {ch!r}")
    if not text or text == mod:
        raise RuleError(f"flags: no flags in {value!r}")
    mask = 0
    for ch in mask_text.strip():
        if ch.upper() not in TCP_FLAG_BITS:
            raise RuleError(f"flags: unknown mask flag {ch!r}")
        mask |= TCP_FLAG_BITS[ch.upper()]
    return mod, flags, mask


def match_flags(tcp_flags: int, mod: str, flags: int, mask: int) -> bool:
    f = tcp_flags & ~mask
    if mod == "+":
        return f & flags == flags
    if mod == "*":
        return f & flags != 0
    if mod == "!":
        return f & flags == 0
    return f == flags


def setup_flags(b: Builder, value: str | None) -> None:
    mod, flags, mask = parse_flags(value or "")
    b.checks.append(lambda ins: ins.packet.ip_proto == 6
                    and match_flags(ins.packet.tcp_flags, mod, flags, mask))


def setup_window(b: Builder, value: str | None) -> None:
    v = (value or "").strip()
    negated = v.startswith("!")
    n = v.lstrip("!").strip()
    if not n.isdigit() or int(n) > 65535:
        raise RuleError(f"window: want 0..65535, got {value!r}")
    w = int(n)
    b.checks.append(lambda ins: ins.packet.ip_proto == 6
                    and (ins.packet.window == w) != negated)


def _icmp_type(ins: Inspection) -> int | None:
    return ins.packet.icmp_type


def _icmp_code(ins: Inspection) -> int | None:
    return ins.packet.icmp_code


def _ttl(ins: Inspection) -> int | None:
    return ins.packet.ttl if ins.packet.ip_version else None


def _ip_id(ins: Inspection) -> int | None:
    return ins.packet.ip_id if ins.packet.ip_version == 4 else None


def _dsize(ins: Inspection) -> int:
    return len(ins.packet.payload)


KEYWORDS = (
    Keyword("ttl", _packet_uint("ttl", _ttl, 255), "IP time to live", _URL + "#ttl"),
    Keyword("itype", _packet_uint("itype", _icmp_type, 255), "ICMP type", _URL + "#itype"),
    Keyword("icode", _packet_uint("icode", _icmp_code, 255), "ICMP code", _URL + "#icode"),
    Keyword("id", _packet_uint("id", _ip_id, 65535), "IPv4 identification", _URL + "#id"),
    Keyword("seq", _packet_uint("seq", _tcp("seq"), 2**32 - 1), "TCP sequence number",
            _URL + "#seq"),
    Keyword("ack", _packet_uint("ack", _tcp("ack"), 2**32 - 1), "TCP acknowledgement number",
            _URL + "#ack"),
    Keyword("dsize", _packet_uint("dsize", _dsize, 65535), "packet payload size",
            DOCS + "payload-keywords.html#dsize"),
    Keyword("ip_proto", setup_ip_proto, "IP protocol number or name", _URL + "#ip-proto"),
    Keyword("flags", setup_flags, "TCP flags with + * ! modifiers and a mask",
            _URL + "#flags", match=match_flags, aliases=("tcp.flags",)),
    Keyword("window", setup_window, "TCP window size", _URL + "#window"),
)
