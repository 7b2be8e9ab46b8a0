"""pcap and pcapng reading: frames in, decoded `Packet`s out.

pcap: both byte orders, microsecond (0xa1b2c3d4) and nanosecond (0xa1b23c4d) timestamps.
pcapng: SHB (either byte order, several sections), IDB (per-interface link type and
if_tsresol), EPB, SPB and the obsolete Packet Block. Other blocks are skipped.

A truncated or corrupt file yields every good packet before the damage, then raises
`PcapError` naming the file and the byte offset.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from struct import unpack_from

from netsec.decode import Decoder, DecoderConfig
from netsec.packet import Packet


class PcapError(ValueError):
    """The capture file is not a pcap/pcapng file, or is damaged at a given offset."""

    def __init__(self, path: str | Path, offset: int, what: str) -> None:
        super().__init__(f"{path}: {what} at offset {offset}")
        self.path = str(path)
        self.offset = offset


_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


def read_frames(path: str | Path) -> Iterator[tuple[int, float, bytes]]:
    """(linktype, timestamp, frame) for every packet of a pcap or pcapng file."""
    data = Path(path).read_bytes()
    magic = data[:4]
    if magic in _PCAP_MAGIC:
        yield from _pcap(path, data)
    elif magic == _PCAPNG_SHB:
        yield from _pcapng(path, data)
    else:
        raise PcapError(path, 0, f"not a pcap or pcapng file (magic {magic.hex() or 'empty'})")


def read_packets(path: str | Path, config: DecoderConfig | None = None) -> Iterator[Packet]:
    """Decoded packets of a capture, IP fragments reassembled; `pcap_cnt` counts frames."""
    decoder = Decoder(config)
    for cnt, (linktype, ts, frame) in enumerate(read_frames(path), 1):
        pkt = decoder.decode(linktype, ts, cnt, frame)
        if pkt is not None:
            yield pkt


def _pcap(path: str | Path, data: bytes) -> Iterator[tuple[int, float, bytes]]:
    order, unit = _PCAP_MAGIC[data[:4]]
    if len(data) < 24:
        raise PcapError(path, 0, "truncated pcap file header")
    linktype = unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    rec = order + "IIII"
    off, size = 24, len(data)
    while off < size:
        if size - off < 16:
            raise PcapError(path, off, "truncated pcap record header")
        sec, frac, incl, _orig = unpack_from(rec, data, off)
        if incl > 0x4000000:
            raise PcapError(path, off, f"corrupt pcap record (captured length {incl})")
        if size - off - 16 < incl:
            raise PcapError(path, off, "truncated pcap record")
        yield linktype, sec + frac * unit, data[off + 16:off + 16 + incl]
        off += 16 + incl


def _tsresol(opts: bytes, order: str) -> float:
    """The interface's timestamp unit from its options (default microseconds)."""
    off = 0
    while off + 4 <= len(opts):
        code, olen = unpack_from(order + "HH", opts, off)
        if code == 0:
            break
        if code == 9 and olen >= 1:
            v = opts[off + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        off += 4 + ((olen + 3) & ~3)
    return 1e-6


def _pcapng(path: str | Path, data: bytes) -> Iterator[tuple[int, float, bytes]]:
    order = "<"
    ifaces: list[tuple[int, float]] = []  # (linktype, timestamp unit) per interface
    off, size = 0, len(data)
    while off < size:
        if size - off < 12:
            raise PcapError(path, off, "truncated pcapng block header")
        btype = data[off:off + 4]
        if btype == _PCAPNG_SHB:
            bom = data[off + 8:off + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise PcapError(path, off, "corrupt pcapng section header (byte-order magic)")
            ifaces = []
        kind, blen = unpack_from(order + "II", data, off)
        if blen < 12 or blen % 4 or blen > size - off:
            raise PcapError(path, off, f"truncated or corrupt pcapng block (length {blen})")
        body = off + 8
        if kind == 1:                                   # Interface Description Block
            linktype = unpack_from(order + "H", data, body)[0]
            ifaces.append((linktype, _tsresol(data[body + 8:off + blen - 4], order)))
        elif kind in (6, 2):                            # Enhanced / obsolete Packet Block
            if kind == 6:
                iface, hi, lo, caplen = unpack_from(order + "IIII", data, body)
            else:
                iface, _drops, hi, lo, caplen = unpack_from(order + "HHIII", data, body)
            start = body + 20
            if iface >= len(ifaces):
                raise PcapError(path, off, f"packet block for undeclared interface {iface}")
            if start + caplen > off + blen - 4:
                raise PcapError(path, off, f"corrupt pcapng packet block (length {caplen})")
            linktype, unit = ifaces[iface]
            yield linktype, ((hi << 32) | lo) * unit, data[start:start + caplen]
        elif kind == 3:                                 # Simple Packet Block
            if not ifaces:
                raise PcapError(path, off, "simple packet block before any interface")
            orig = unpack_from(order + "I", data, body)[0]
            caplen = min(orig, blen - 16)
            yield ifaces[0][0], 0.0, data[body + 4:body + 4 + caplen]
        off += blen
