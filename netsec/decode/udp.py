"""UDP header (RFC 768)."""
from __future__ import annotations

from struct import unpack_from

from netsec.packet import Packet


def decode_udp(pkt: Packet, buf: bytes, off: int, end: int) -> bool:
    """Fill ports and payload; False (with an event) when the header or its length is bad."""
    if end - off < 8:
        pkt.events.append("udp.pkt_too_small")
        return False
    pkt.sport, pkt.dport, ulen = unpack_from("!HHH", buf, off)
    if ulen < 8:
        pkt.events.append("udp.hlen_too_small")
        return False
    if ulen > end - off:
        pkt.events.append("udp.hlen_invalid")
        return False
    pkt.payload = buf[off + 8:off + ulen]
    return True
