"""Packet decoding, Suricata style: the link and network layers dispatched to one module per
protocol (netsec.decode.ethernet, .ipv4, .tcp, ...).

Two entry points:

- `decode(linktype, ts, pcap_cnt, frame, checksums)` decodes one frame on its own. An IP
  fragment comes back with its IP fields set, `payload` = the fragment's data, and no L4
  fields (`no_l4`: a first fragment's L4 header is not trusted until the datagram is whole).
- `Decoder(config).decode(linktype, ts, pcap_cnt, frame)` adds IP fragment reassembly: it
  returns None while a datagram is incomplete (except for a fragment that raised an anomaly,
  `ipv4.frag_overlap` say: that one comes back with `no_l4=True`, its events and no L4
  fields) and, on the fragment that completes it, a packet decoded from the whole datagram
  (`frag=True`, `raw` = that last fragment's frame, `ip_len` = the reassembled length).
  This is what `netsec.pcap.read_packets` uses.

Malformed input never raises: the layer that fails appends Suricata's event name to
`Packet.events` ("ipv4.trunc_pkt", "tcp.hlen_too_small", ...) and decoding stops there;
`no_l4` says no L4 header was decoded (so no flow, netsec.packet).
Link types: 1 Ethernet, 113 Linux SLL, 276 SLL2, 101/12 raw IP, 228 raw IPv4, 229 raw IPv6.
"""
from __future__ import annotations

from dataclasses import dataclass

from netsec.decode import checksum
from netsec.decode.defrag import Defragmenter
from netsec.decode.ethernet import decode_ethernet
from netsec.decode.icmp import decode_icmp
from netsec.decode.ipv4 import decode_ipv4
from netsec.decode.ipv6 import decode_ipv6, walk_extensions
from netsec.decode.sll import decode_sll, decode_sll2
from netsec.decode.tcp import decode_tcp
from netsec.decode.udp import decode_udp
from netsec.packet import Packet

LINKTYPES = frozenset((1, 12, 101, 113, 228, 229, 276))
_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD


@dataclass(slots=True)
class DecoderConfig:
    checksums: bool = False        # `-k all`: validate IP/TCP/UDP/ICMP checksums
    defrag: bool = True            # reassemble IP fragments
    defrag_timeout: float = 60.0   # seconds of capture time a datagram may stay incomplete
    defrag_max_datagrams: int = 65535


def _link(pkt: Packet, linktype: int, frame: bytes) -> tuple[int, int]:
    """(ethertype, offset of the network layer), offset -1 when there is none to decode."""
    if linktype == 1:
        return decode_ethernet(pkt, frame, 0)
    if linktype in (101, 12, 228, 229):
        if not frame:
            pkt.events.append("ipraw.invalid_ip_version")
            return 0, -1
        version = frame[0] >> 4
        if version not in (4, 6):
            pkt.events.append("ipraw.invalid_ip_version")
            return 0, -1
        return (_ETH_IPV4 if version == 4 else _ETH_IPV6), 0
    if linktype == 113:
        return decode_sll(pkt, frame, 0)
    if linktype == 276:
        return decode_sll2(pkt, frame, 0)
    pkt.events.append("decoder.unsupported_linktype")
    return 0, -1


def decode_l4(pkt: Packet, buf: bytes, off: int, end: int, checksums: bool,
              pseudo_src: bytes = b"", pseudo_dst: bytes = b"") -> bool:
    """Decode TCP/UDP/ICMP at buf[off:end]; other protocols keep the IP payload as `payload`.
    False when the L4 header is malformed (its event is in `pkt.events`)."""
    proto = pkt.ip_proto
    if proto == 6:
        ok = decode_tcp(pkt, buf, off, end)
    elif proto == 17:
        ok = decode_udp(pkt, buf, off, end)
    elif proto == 1 or proto == 58:
        ok = decode_icmp(pkt, buf, off, end, proto == 58)
    else:
        pkt.payload = buf[off:end]
        return True
    if ok and checksums:
        seg = buf[off:end]
        if proto == 1:
            pkt.checksum_ok = pkt.checksum_ok and checksum.valid(seg)
        elif not (proto == 17 and pkt.ip_version == 4 and seg[6:8] == b"\0\0"):
            pseudo = checksum.pseudo_header(pseudo_src, pseudo_dst, proto, len(seg))
            pkt.checksum_ok = pkt.checksum_ok and checksum.valid(seg, pseudo)
    return ok


def _addresses(buf: bytes, off: int, version: int) -> tuple[bytes, bytes]:
    if version == 4:
        return buf[off + 12:off + 16], buf[off + 16:off + 20]
    return buf[off + 8:off + 24], buf[off + 24:off + 40]


def _network(pkt: Packet, etype: int, frame: bytes, off: int,
             checksums: bool) -> tuple[int, int, int, bool, int]:
    if etype == _ETH_IPV4:
        return decode_ipv4(pkt, frame, off, checksums)
    if etype == _ETH_IPV6:
        return decode_ipv6(pkt, frame, off, checksums)
    return -1, -1, 0, False, 0


class Decoder:
    """Frame decoding with IP fragment reassembly; sans-IO (time comes from the packets)."""

    def __init__(self, config: DecoderConfig | None = None) -> None:
        self.config = config or DecoderConfig()
        self._defrag = Defragmenter(self.config.defrag_timeout,
                                    self.config.defrag_max_datagrams)

    def decode(self, linktype: int, ts: float, pcap_cnt: int, frame: bytes) -> Packet | None:
        """The decoded packet, or None while it is a fragment of an incomplete datagram."""
        checksums = self.config.checksums
        pkt = Packet(ts, pcap_cnt, frame)
        pkt.linktype = linktype
        if linktype == 1 and frame[12:14] == b"\x08\x00":   # the common case, inlined
            etype, off = _ETH_IPV4, 14
        else:
            etype, off = _link(pkt, linktype, frame)
            if off < 0:
                pkt.no_l4 = True
                return pkt
        l4off, l4end, frag_off, more, frag_id = _network(pkt, etype, frame, off, checksums)
        if l4off < 0:
            pkt.no_l4 = True
            return pkt
        if not (frag_off or more):
            if pkt.ip_proto == 6 and not checksums:
                pkt.no_l4 = not decode_tcp(pkt, frame, l4off, l4end)
            else:
                src, dst = _addresses(frame, off, pkt.ip_version) if checksums else (b"", b"")
                pkt.no_l4 = not decode_l4(pkt, frame, l4off, l4end, checksums, src, dst)
            return pkt
        if not self.config.defrag:
            pkt.payload = frame[l4off:l4end]
            pkt.no_l4 = True
            return pkt
        src, dst = _addresses(frame, off, pkt.ip_version)
        prefix = "ipv4" if pkt.ip_version == 4 else "ipv6"
        key = (pkt.ip_version, src, dst, frag_id, pkt.ip_proto if pkt.ip_version == 4 else 0)
        # What the fragmentable part may hold: 65535 less the IPv4 header, or (IPv6, whose
        # payload length excludes its fixed header) less the unfragmentable extensions.
        limit = 65535 - (l4off - off) + (40 if pkt.ip_version == 6 else 0)
        data = self._defrag.add(key, ts, frag_off, more, frame[l4off:l4end], pkt.events, prefix,
                                limit)
        if data is None:
            if not pkt.events:
                return None
            pkt.no_l4 = True   # its anomaly is logged and matched though nothing completes
            return pkt
        pkt.frag = True
        pkt.ip_len = (l4off - off) + len(data)
        start = 0
        if pkt.ip_version == 6:
            start = walk_extensions(pkt, data, 0, len(data), pkt.ip_proto)[0]
            if start < 0:
                pkt.no_l4 = True
                return pkt
        pkt.no_l4 = not decode_l4(pkt, data, start, len(data), checksums, src, dst)
        return pkt


_STATELESS = {flag: Decoder(DecoderConfig(checksums=flag, defrag=False)) for flag in (False, True)}


def decode(linktype: int, ts: float, pcap_cnt: int, frame: bytes,
           checksums: bool = False) -> Packet:
    """Decode one frame without fragment reassembly (see the module docstring)."""
    pkt = _STATELESS[checksums].decode(linktype, ts, pcap_cnt, frame)
    assert pkt is not None   # without defrag every frame gives a packet
    return pkt
