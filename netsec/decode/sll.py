"""Linux cooked captures: SLL (DLT 113) and SLL2 (DLT 276) headers."""
from __future__ import annotations

from struct import unpack_from

from netsec.packet import Packet


def decode_sll(pkt: Packet, buf: bytes, off: int) -> tuple[int, int]:
    """(protocol, payload offset) of an SLL frame, or (0, -1) when truncated."""
    if len(buf) - off < 16:
        pkt.events.append("sll.pkt_too_small")
        return 0, -1
    return unpack_from("!H", buf, off + 14)[0], off + 16


def decode_sll2(pkt: Packet, buf: bytes, off: int) -> tuple[int, int]:
    """(protocol, payload offset) of an SLL2 frame, or (0, -1) when truncated."""
    if len(buf) - off < 20:
        pkt.events.append("sll.pkt_too_small")
        return 0, -1
    return unpack_from("!H", buf, off)[0], off + 20
