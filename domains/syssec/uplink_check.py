"""Where is the uplink? sys-sec answers dom0's probes: "does NAME resolve to ADDRESS through
the uplink's DNS?" (a name only the corporate network's DNS knows, say). dom0 writes the
names to ask under sys-sec's `hyperwall/probes/<domain>`; sys-sec writes what each resolved
to under `data/hyperwall/probes/<domain>` ("-" when it does not), and dom0 starts the domain
whose probe matches (`autostart = { probe_name, probe_address }`).

The DNS part is sans-IO (`query`, `first_a`) with one small asyncio call (`resolve`).
"""
from __future__ import annotations

import asyncio
import ipaddress
import random
import struct

HEADER = struct.Struct("!HHHHHH")
TIMEOUT = 2.0


def query(name: str, tid: int) -> bytes:
    try:
        labels = [p.encode("idna") for p in name.rstrip(".").split(".")]
    except UnicodeError:
        labels = []
    if not labels or any(not 0 < len(label) < 64 for label in labels):
        raise ValueError(f"{name!r} is not a DNS name")
    return HEADER.pack(tid, 0x0100, 1, 0, 0, 0) + b"".join(
        bytes([len(label)]) + label for label in labels) + b"\0" + struct.pack("!HH", 1, 1)


def _skip_name(msg: bytes, off: int) -> int:
    while True:
        if off >= len(msg):
            raise ValueError("truncated name")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        if n == 0:
            return off + 1
        off += 1 + n


def first_a(reply: bytes, tid: int) -> str | None:
    """The first A record of a reply to query `tid`; None for NXDOMAIN or no A record.
    Raises ValueError for a reply that is not one (wrong id, truncated, garbage)."""
    if len(reply) < HEADER.size:
        raise ValueError("reply shorter than a DNS header")
    rid, flags, qd, an, _, _ = HEADER.unpack_from(reply)
    if rid != tid or not flags & 0x8000:
        raise ValueError("not a reply to our query")
    if flags & 0xF:
        return None
    off = HEADER.size
    for _ in range(qd):
        off = _skip_name(reply, off) + 4
    for _ in range(an):
        off = _skip_name(reply, off)
        if off + 10 > len(reply):
            raise ValueError("truncated answer")
        rtype, _, _, size = struct.unpack_from("!HHIH", reply, off)
        off += 10
        if off + size > len(reply):
            raise ValueError("truncated answer")
        if rtype == 1 and size == 4:
            return str(ipaddress.IPv4Address(reply[off:off + 4]))
        off += size
    return None


async def resolve(name: str, server: str, timeout: float = TIMEOUT,
                  port: int = 53) -> str | None:
    """Ask `server` over UDP; None when the name does not resolve or nobody answers."""
    tid = random.randrange(1 << 16)
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=(server, port))
    try:
        transport.sendto(query(name, tid))
        return first_a(await asyncio.wait_for(got, timeout), tid)
    except (TimeoutError, ValueError):
        return None
    finally:
        transport.close()
