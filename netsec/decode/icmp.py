"""ICMPv4 (RFC 792) and ICMPv6 (RFC 4443): type, code and the data after the 4-byte header
(Suricata's `pkt` payload for ICMP starts after type/code/checksum and the rest-of-header)."""
from __future__ import annotations

from netsec.packet import Packet


def decode_icmp(pkt: Packet, buf: bytes, off: int, end: int, v6: bool) -> bool:
    """Fill type, code and payload; False (with an event) when shorter than the header."""
    if end - off < 8:
        pkt.events.append("icmpv6.pkt_too_small" if v6 else "icmpv4.pkt_too_small")
        return False
    pkt.icmp_type = buf[off]
    pkt.icmp_code = buf[off + 1]
    pkt.payload = buf[off + 8:end]
    return True
