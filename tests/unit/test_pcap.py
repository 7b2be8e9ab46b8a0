"""pcap/pcapng reading: byte orders, timestamp units, link types, damaged files."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, wrpcap

from netsec.pcap import PcapError, read_frames, read_packets

FRAME = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"hi")


def _pcap(order: str, magic: int, linktype: int, records: list[tuple[int, int, bytes]]) -> bytes:
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, data in records:
        out += struct.pack(order + "IIII", sec, frac, len(data), len(data)) + data
    return out


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("magic,frac,expect", [(0xA1B2C3D4, 250000, 5.25),
                                               (0xA1B23C4D, 250000000, 5.25)])
def test_pcap_byte_orders_and_units(tmp_path: Path, order: str, magic: int, frac: int,
                                    expect: float) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(_pcap(order, magic, 1, [(5, frac, FRAME)]))
    [(linktype, ts, frame)] = list(read_frames(path))
    assert (linktype, ts, frame) == (1, pytest.approx(expect), FRAME)


def test_scapy_pcap_decodes(tmp_path: Path) -> None:
    path = tmp_path / "s.pcap"
    wrpcap(str(path), [Ether(FRAME), Ether(FRAME)])
    pkts = list(read_packets(path))
    assert [p.pcap_cnt for p in pkts] == [1, 2]
    assert (pkts[0].src, pkts[0].dport, pkts[0].payload) == ("10.0.0.1", 2, b"hi")


def test_raw_ip_linktype(tmp_path: Path) -> None:
    path = tmp_path / "raw.pcap"
    path.write_bytes(_pcap("<", 0xA1B2C3D4, 101, [(1, 0, FRAME[14:])]))
    [pkt] = list(read_packets(path))
    assert (pkt.linktype, pkt.ip_version, pkt.sport) == (101, 4, 1)


def test_pcapng_with_tsresol(tmp_path: Path) -> None:
    path = tmp_path / "x.pcapng"
    w = PcapNgWriter(str(path))
    pkt = Ether(FRAME)
    pkt.time = 1700000000.5
    w.write(pkt)
    w.close()
    [p] = list(read_packets(path))
    assert p.ts == pytest.approx(1700000000.5, abs=1e-5)
    assert p.payload == b"hi"


def _block(btype: int, body: bytes, order: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_handmade_nanosecond_big_endian(tmp_path: Path, order: str) -> None:
    shb = _block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)
    opts = struct.pack(order + "HH", 9, 1) + b"\x09\0\0\0" + struct.pack(order + "HH", 0, 0)
    idb = _block(1, struct.pack(order + "HHI", 101, 0, 0) + opts, order)
    ts = 3_500_000_000
    epb = _block(6, struct.pack(order + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF,
                                len(FRAME) - 14, len(FRAME) - 14) + FRAME[14:], order)
    spb = _block(3, struct.pack(order + "I", len(FRAME) - 14) + FRAME[14:], order)
    path = tmp_path / "h.pcapng"
    path.write_bytes(shb + idb + epb + spb)
    frames = list(read_frames(path))
    assert frames[0] == (101, pytest.approx(3.5), FRAME[14:])
    assert frames[1][0] == 101 and frames[1][2] == FRAME[14:]


def test_truncated_pcap_yields_good_packets_then_names_offset(tmp_path: Path) -> None:
    data = _pcap("<", 0xA1B2C3D4, 1, [(1, 0, FRAME), (2, 0, FRAME)])
    path = tmp_path / "t.pcap"
    path.write_bytes(data[:-5])
    got = []
    with pytest.raises(PcapError) as err:
        for p in read_packets(path):
            got.append(p)
    assert len(got) == 1
    assert str(path) in str(err.value) and f"offset {24 + 16 + len(FRAME)}" in str(err.value)


def test_truncated_pcapng_block(tmp_path: Path) -> None:
    path = tmp_path / "t.pcapng"
    w = PcapNgWriter(str(path))
    w.write(Ether(FRAME))
    w.write(Ether(FRAME))
    w.close()
    path.write_bytes(path.read_bytes()[:-8])
    frames = []
    with pytest.raises(PcapError, match="offset"):
        for f in read_frames(path):
            frames.append(f)
    assert len(frames) == 1


def test_not_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"hello world, not a pcap")
    with pytest.raises(PcapError, match="not a pcap or pcapng file"):
        list(read_frames(path))
