"""What a `reject` rule answers with, as bytes to send from sys-sec (sans-IO).

A rejected TCP packet is dropped and both ends get a RST, so the guest learns at once that
the connection is over instead of waiting for a timeout (Suricata's `rejectboth`; its plain
`reject` only answers the sender, which leaves a guest whose download was cut hanging).
Anything else gets ICMP port unreachable back to its sender, as Suricata sends. IPv4 only:
an IPv6 packet is dropped without an answer.
"""
from __future__ import annotations

import ipaddress
import struct

from netsec.packet import Packet

_TCP_RST, _TCP_ACK, _TCP_SYN, _TCP_FIN = 0x04, 0x10, 0x02, 0x01
_ICMP_UNREACH, _ICMP_PORT_UNREACH = 3, 3
_TTL = 64


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: str, dst: str, proto: int, body: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0x4000, _TTL, proto, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + body


def _tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, 0, 0, 0)
    pseudo = struct.pack("!4s4sBBH", ipaddress.IPv4Address(src).packed,
                         ipaddress.IPv4Address(dst).packed, 0, 6, len(seg))
    seg = seg[:16] + struct.pack("!H", checksum(pseudo + seg)) + seg[18:]
    return _ipv4(src, dst, 6, seg)


def tcp_resets(pkt: Packet) -> list[bytes]:
    """RSTs for a dropped TCP packet: one to its sender, one to its receiver."""
    if pkt.ip_version != 4 or pkt.ip_proto != 6 or pkt.tcp_flags & _TCP_RST:
        return []
    length = len(pkt.payload) + (1 if pkt.tcp_flags & _TCP_SYN else 0) + \
        (1 if pkt.tcp_flags & _TCP_FIN else 0)
    # To the sender, as if from the receiver: it acknowledges what was (not) delivered.
    to_sender = _tcp(pkt.dst, pkt.src, pkt.dport, pkt.sport,
                     pkt.ack if pkt.tcp_flags & _TCP_ACK else 0, pkt.seq + length,
                     _TCP_RST | _TCP_ACK)
    # To the receiver, as if from the sender: at the sequence number it expects, since the
    # dropped packet never reached it.
    to_receiver = _tcp(pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.seq, 0, _TCP_RST)
    return [to_sender, to_receiver]


def icmp_unreachable(pkt: Packet, original: bytes) -> list[bytes]:
    """ICMP port unreachable to the sender, quoting the IP header and 8 bytes (RFC 792)."""
    if pkt.ip_version != 4 or pkt.ip_proto == 1:
        return []   # never answer ICMP with ICMP
    ihl = (original[0] & 0x0F) * 4
    quote = original[:ihl + 8]
    body = struct.pack("!BBHI", _ICMP_UNREACH, _ICMP_PORT_UNREACH, 0, 0) + quote
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return [_ipv4(pkt.dst, pkt.src, 1, body)]


def answers(pkt: Packet, original: bytes) -> list[bytes]:
    """The packets that carry out `reject` for `pkt` (raw IP, to be sent as they are)."""
    return tcp_resets(pkt) if pkt.ip_proto == 6 else icmp_unreachable(pkt, original)
