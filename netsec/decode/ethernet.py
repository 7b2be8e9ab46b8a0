"""Ethernet II with 802.1Q / 802.1ad VLAN tags: the ethertype and where its payload starts."""
from __future__ import annotations

from struct import unpack_from

from netsec.packet import Packet

_VLAN_TYPES = frozenset((0x8100, 0x88A8, 0x9100))
MAX_VLAN_LAYERS = 3  # Suricata decodes at most three stacked tags


def decode_ethernet(pkt: Packet, buf: bytes, off: int) -> tuple[int, int]:
    """(ethertype, payload offset), or (0, -1) with an event set when the frame is too short."""
    if len(buf) - off < 14:
        pkt.events.append("ethernet.pkt_too_small")
        return 0, -1
    etype = unpack_from("!H", buf, off + 12)[0]
    off += 14
    vlans: list[int] = []
    while etype in _VLAN_TYPES:
        if len(buf) - off < 4:
            pkt.events.append("vlan.header_too_small")
            return 0, -1
        if len(vlans) == MAX_VLAN_LAYERS:
            pkt.events.append("vlan.too_many_layers")
            return 0, -1
        tci, etype = unpack_from("!HH", buf, off)
        vlans.append(tci & 0x0FFF)
        off += 4
    if vlans:
        pkt.vlan = tuple(vlans)
    return etype, off
