"""Internet checksums (RFC 1071) for IPv4 headers and TCP/UDP/ICMP(v6) over IPv4 and IPv6."""
from __future__ import annotations

from struct import pack, unpack


def ones_complement_sum(data: bytes) -> int:
    """The folded 16-bit one's complement sum of `data` (odd length padded with a zero)."""
    if len(data) & 1:
        data += b"\0"
    total: int = sum(unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def valid(data: bytes, pseudo: bytes = b"") -> bool:
    """True when `data` (with its checksum field in place) sums to 0xFFFF."""
    return ones_complement_sum(pseudo + data) == 0xFFFF


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """The IPv4 (4-byte addresses) or IPv6 (16-byte) pseudo-header for an L4 checksum."""
    if len(src) == 4:
        return src + dst + pack("!BBH", 0, proto, length)
    return src + dst + pack("!IxxxB", length, proto)
