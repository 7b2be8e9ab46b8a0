"""The IDS benchmark's traffic: a deterministic mixed pcap (HTTP, DNS, TLS, bulk TCP).

Packets are built with scapy, then written as a plain pcap by hand (scapy's writer is
the slow part). The file is cached under bench/.cache/ keyed by its packet count.
"""
from __future__ import annotations

import random
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

_ETH = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}  # no ARP lookups
CACHE = Path(__file__).resolve().parent / ".cache"
_SYN, _ACK, _PSH, _FIN = 0x02, 0x10, 0x08, 0x01

HOSTS = ["example.com", "update.vendor.net", "cdn.static.org", "mail.corp.local",
         "api.service.io", "news.site.com", "shop.store.net", "files.share.org"]


class _Tcp:
    """One TCP connection's packets with consistent sequence numbers."""

    def __init__(self, rng: random.Random, client: str, server: str, dport: int) -> None:
        self.c, self.s = (client, rng.randint(1025, 65000)), (server, dport)
        self.cseq, self.sseq = rng.randint(0, 2**31), rng.randint(0, 2**31)

    def _pkt(self, from_client: bool, flags: int, payload: bytes = b"") -> bytes:
        (src, sport), (dst, dport) = (self.c, self.s) if from_client else (self.s, self.c)
        seq, ack = (self.cseq, self.sseq) if from_client else (self.sseq, self.cseq)
        p = (Ether(**_ETH) / IP(src=src, dst=dst) /
             TCP(sport=sport, dport=dport, flags=flags, seq=seq,
                 ack=ack if flags & _ACK else 0, window=65535) / payload)
        step = len(payload) + (1 if flags & (_SYN | _FIN) else 0)
        if from_client:
            self.cseq = (self.cseq + step) % 2**32
        else:
            self.sseq = (self.sseq + step) % 2**32
        return bytes(p)

    def open(self) -> list[bytes]:
        return [self._pkt(True, _SYN), self._pkt(False, _SYN | _ACK), self._pkt(True, _ACK)]

    def send(self, from_client: bool, data: bytes) -> list[bytes]:
        return [self._pkt(from_client, _PSH | _ACK, data), self._pkt(not from_client, _ACK)]

    def close(self) -> list[bytes]:
        return [self._pkt(True, _FIN | _ACK), self._pkt(False, _FIN | _ACK),
                self._pkt(True, _ACK)]


def _client_hello(sni: str) -> bytes:
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    body = (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x04\x13\x01\xc0\x2f" + b"\x01\x00"
            + struct.pack("!H", len(sni_ext)) + sni_ext)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def _http(rng: random.Random, client: str, server: str) -> list[bytes]:
    host = rng.choice(HOSTS)
    path = f"/{rng.choice(['index.html', 'api/v1/items', 'img/logo.png', 'search'])}" \
           f"?q={rng.randint(0, 99999)}"
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (X11; Linux "
           f"x86_64)\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n").encode()
    body = bytes(rng.getrandbits(8) for _ in range(rng.randint(200, 1200)))
    resp = (f"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    t = _Tcp(rng, client, server, 80)
    return t.open() + t.send(True, req) + t.send(False, resp) + t.close()


def _tls(rng: random.Random, client: str, server: str) -> list[bytes]:
    t = _Tcp(rng, client, server, 443)
    out = t.open() + t.send(True, _client_hello(rng.choice(HOSTS)))
    server_hello = b"\x16\x03\x03\x00\x4a\x02\x00\x00\x46\x03\x03" + bytes(70)
    out += t.send(False, server_hello)
    for _ in range(3):
        out += t.send(True, b"\x17\x03\x03\x01\x00" + rng.randbytes(256))
        out += t.send(False, b"\x17\x03\x03\x04\x00" + rng.randbytes(1024))
    return out + t.close()


def _dns(rng: random.Random, client: str, server: str) -> list[bytes]:
    name, qid, sport = rng.choice(HOSTS), rng.randint(0, 65535), rng.randint(1025, 65000)
    q = Ether(**_ETH) / IP(src=client, dst=server) / UDP(sport=sport, dport=53) / \
        DNS(id=qid, rd=1, qd=DNSQR(qname=name))
    r = Ether(**_ETH) / IP(src=server, dst=client) / UDP(sport=53, dport=sport) / \
        DNS(id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name),
            an=DNSRR(rrname=name, rdata=f"93.184.{rng.randint(0, 255)}.{rng.randint(1, 254)}"))
    return [bytes(q), bytes(r)]


def _bulk(rng: random.Random, client: str, server: str) -> list[bytes]:
    t = _Tcp(rng, client, server, rng.choice([22, 445, 8080, 9000]))
    out = t.open()
    chunk = rng.randbytes(1400)
    for _ in range(30):
        out += t.send(False, chunk)
    return out + t.close()


# Each session kind with its weight (sessions, not packets).
_MIX = ((_http, 4), (_dns, 6), (_tls, 2), (_bulk, 1))


def sessions(count: int, seed: int = 1) -> Iterator[bytes]:
    """Frames for at least `count` packets (whole sessions, one after another)."""
    rng = random.Random(seed)
    kinds = [k for k, w in _MIX for _ in range(w)]
    made = 0
    while made < count:
        client = f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        server = f"198.51.100.{rng.randint(1, 254)}"
        for frame in rng.choice(kinds)(rng, client, server):
            made += 1
            yield frame


def mixed_pcap(count: int, progress: bool = True) -> Path:
    """The cached pcap of about `count` packets, generated on first use."""
    path = CACHE / f"mixed-{count}.pcap"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    ts = 1_700_000_000.0
    with open(tmp, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n, frame in enumerate(sessions(count)):
            ts += 0.0001
            f.write(struct.pack("<IIII", int(ts), int(ts % 1 * 1e6), len(frame), len(frame)))
            f.write(frame)
            if progress and n % 20000 == 0:
                print(f"\rgenerating {path.name}: {n}/{count} packets", end="",
                      file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    tmp.rename(path)
    return path
