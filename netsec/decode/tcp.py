"""TCP header and options (RFC 9293)."""
from __future__ import annotations

from struct import unpack_from

from netsec.packet import Packet


def decode_tcp(pkt: Packet, buf: bytes, off: int, end: int) -> bool:
    """Fill ports, sequence numbers, flags and payload; False (with an event) when malformed."""
    if end - off < 20:
        pkt.events.append("tcp.pkt_too_small")
        return False
    pkt.sport, pkt.dport, pkt.seq, pkt.ack, offflags, pkt.window = unpack_from(
        "!HHIIHH", buf, off)
    hlen = (offflags >> 12) * 4
    if hlen < 20:
        pkt.events.append("tcp.hlen_too_small")
        return False
    if end - off < hlen:
        pkt.events.append("tcp.invalid_optlen")
        return False
    pkt.tcp_flags = offflags & 0xFF
    if hlen > 20:
        _check_options(pkt, buf, off + 20, off + hlen)
    pkt.payload = buf[off + hlen:end]
    return True


def _check_options(pkt: Packet, buf: bytes, off: int, end: int) -> None:
    """A malformed option is an event, not the end of the segment: parsing of the options
    stops there and the segment is still decoded, as Suricata's DecodeTCPOptions and the
    receivers (Linux's tcp_parse_options) do, so its data cannot slip by uninspected."""
    while off < end:
        kind = buf[off]
        if kind == 0:
            return
        if kind == 1:
            off += 1
            continue
        if off + 1 >= end or buf[off + 1] < 2 or off + buf[off + 1] > end:
            pkt.events.append("tcp.opt_invalid_len")
            return
        off += buf[off + 1]
