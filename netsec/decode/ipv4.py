"""IPv4 header and options (RFC 791), with Suricata's decoder event names.

`decode_ipv4` fills the packet's IP fields and says where the L4 data lies and whether the
datagram is a fragment; reassembly lives in `defrag.py`, shared with IPv6.
"""
from __future__ import annotations

from socket import AF_INET, inet_ntop
from struct import Struct

from netsec.decode import checksum
from netsec.packet import Packet

_HEADER = Struct("!BBHHHBBH4s4s")

NOT_DECODED = (-1, -1, 0, False, 0)
_NAMES: dict[bytes, str] = {}   # address text cache: inet_ntop is the costliest step here
_MAX_NAMES = 65536


def address(raw: bytes) -> str:
    """The dotted text of a 4-byte address (cached)."""
    text = _NAMES.get(raw)
    if text is None:
        if len(_NAMES) >= _MAX_NAMES:
            _NAMES.clear()
        text = _NAMES[raw] = inet_ntop(AF_INET, raw)
    return text


def _check_options(pkt: Packet, buf: bytes, off: int, end: int) -> bool:
    """Walk the options; False (with an event) when one overruns the header."""
    while off < end:
        kind = buf[off]
        if kind == 0:           # end of option list
            return True
        if kind == 1:           # no-op
            off += 1
            continue
        if off + 1 >= end:
            pkt.events.append("ipv4.opt_pad_required")
            return False
        olen = buf[off + 1]
        if olen < 2:
            pkt.events.append("ipv4.opt_invalid_len")
            return False
        if off + olen > end:
            pkt.events.append("ipv4.opt_malformed")
            return False
        off += olen
    return True


def decode_ipv4(pkt: Packet, buf: bytes, off: int,
                checksums: bool) -> tuple[int, int, int, bool, int]:
    """(l4 offset, l4 end, fragment offset in bytes, more fragments, id); l4 offset -1 on error."""
    avail = len(buf) - off
    if avail < 20:
        pkt.events.append("ipv4.pkt_too_small")
        return NOT_DECODED
    vhl, _tos, ip_len, ip_id, frag, ttl, proto, _sum, src, dst = _HEADER.unpack_from(buf, off)
    if vhl >> 4 != 4:
        pkt.events.append("ipv4.wrong_ip_version")
        return NOT_DECODED
    hlen = (vhl & 0x0F) * 4
    if hlen < 20:
        pkt.events.append("ipv4.hlen_too_small")
        return NOT_DECODED
    if ip_len < hlen:
        pkt.events.append("ipv4.iplen_smaller_than_hlen")
        return NOT_DECODED
    if avail < ip_len or avail < hlen:
        pkt.events.append("ipv4.trunc_pkt")
        return NOT_DECODED
    pkt.ip_version = 4
    pkt.src = address(src)
    pkt.dst = address(dst)
    pkt.ip_proto = proto
    pkt.ttl = ttl
    pkt.ip_id = ip_id
    pkt.ip_len = ip_len
    if hlen > 20 and not _check_options(pkt, buf, off + 20, off + hlen):
        return NOT_DECODED
    if checksums and not checksum.valid(buf[off:off + hlen]):
        pkt.checksum_ok = False
    return off + hlen, off + ip_len, (frag & 0x1FFF) * 8, bool(frag & 0x2000), ip_id
