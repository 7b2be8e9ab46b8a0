"""IPv6 header and extension headers (RFC 8200): hop-by-hop, routing, fragment, destination
options (and AH, skipped by its length). `ip_proto` becomes the final next header."""
from __future__ import annotations

from socket import AF_INET6, inet_ntop
from struct import unpack_from

from netsec.packet import Packet

NOT_DECODED = (-1, -1, 0, False, 0)
_HOP, _ROUTING, _FRAGMENT, _AH, _NONE, _DSTOPTS = 0, 43, 44, 51, 59, 60
_EXT_HEADERS = frozenset((_HOP, _ROUTING, _FRAGMENT, _AH, _DSTOPTS))
MAX_EXT_HEADERS = 16  # more is an evasion attempt, not a real packet


def decode_ipv6(pkt: Packet, buf: bytes, off: int,
                checksums: bool) -> tuple[int, int, int, bool, int]:
    """(l4 offset, l4 end, fragment offset, more fragments, fragment id); -1 offset on error.

    A packet with a fragment header reports its fragment offset/flag/id; an atomic fragment
    (offset 0, M=0) reads as unfragmented. `checksums` is for symmetry with IPv4 (no header sum).
    """
    avail = len(buf) - off
    if avail < 40:
        pkt.events.append("ipv6.pkt_too_small")
        return NOT_DECODED
    vtc, plen, nxt, hlim = unpack_from("!IHBB", buf, off)
    if vtc >> 28 != 6:
        pkt.events.append("ipv6.wrong_ip_version")
        return NOT_DECODED
    if avail < 40 + plen:
        pkt.events.append("ipv6.trunc_pkt")
        return NOT_DECODED
    pkt.ip_version = 6
    pkt.src = inet_ntop(AF_INET6, buf[off + 8:off + 24])
    pkt.dst = inet_ntop(AF_INET6, buf[off + 24:off + 40])
    pkt.ttl = hlim
    pkt.ip_len = 40 + plen
    return walk_extensions(pkt, buf, off + 40, off + 40 + plen, nxt)


def walk_extensions(pkt: Packet, buf: bytes, off: int, end: int,
                    nxt: int) -> tuple[int, int, int, bool, int]:
    """Skip extension headers from `off` (the first one of type `nxt`); sets `ip_proto`.

    Also used on a reassembled datagram, whose fragmentable part may start with one.
    """
    frag_off, more, frag_id = 0, False, 0
    seen = 0
    fragment_header = False
    events = pkt.events
    while nxt in _EXT_HEADERS:
        seen += 1
        if seen > MAX_EXT_HEADERS or end - off < 8:
            events.append("ipv6.trunc_exthdr")
            return NOT_DECODED
        if nxt == _FRAGMENT:
            if fragment_header:
                events.append("ipv6.exthdr_dupl_fh")
                return NOT_DECODED
            fragment_header = True
            if buf[off + 1]:   # reserved; a covert channel or a fingerprint, not fatal
                events.append("ipv6.fh_non_zero_reserved_field")
            fo, frag_id = unpack_from("!HI", buf, off + 2)
            frag_off, more = fo & 0xFFF8, bool(fo & 1)
            if not more and not frag_off:
                # an atomic fragment (RFC 6946): decoded at once, but it is odd
                events.append("ipv6.exthdr_useless_fh")
                frag_id = 0
            elif more and (end - off - 8) % 8:
                # every fragment but the last carries a multiple of 8 bytes (RFC 8200 4.5)
                events.append("ipv6.frag_invalid_length")
            nxt, hlen = buf[off], 8
        elif nxt == _AH:
            nxt, hlen = buf[off], (buf[off + 1] + 2) * 4
        else:
            nxt, hlen = buf[off], (buf[off + 1] + 1) * 8
        if off + hlen > end:
            events.append("ipv6.trunc_exthdr")
            return NOT_DECODED
        off += hlen
        if frag_off or more:
            break  # the fragmentable part starts here; it is opaque until reassembled
    pkt.ip_proto = nxt
    return off, end, frag_off, more, frag_id
