"""Where is the uplink? sys-sec answers dom0's probes: "does NAME resolve to ADDRESS through
the uplink's DNS?" (a name only the corporate network's DNS knows, say). dom0 writes the
names to ask under sys-sec's `hyperwall/probes/<domain>`; sys-sec writes what each resolved
to under `data/hyperwall/probes/<domain>` ("-" when it does not), and dom0 starts the domain
whose probe matches (`autostart = { probe_name, probe_address }`).

The reply's reading is sans-IO (`first_a`, on the codec `netsec.app.dns`) with one small
asyncio call (`resolve`).
"""
from __future__ import annotations

import asyncio
import random

from netsec.app.dns import FLAG_QR, TYPE_A, DnsError, build_query, parse_header, parse_message

TIMEOUT = 2.0


def first_a(reply: bytes, tid: int) -> str | None:
    """The first A record of a reply to query `tid`; None for an error rcode or no A record.
    Raises DnsError (a ValueError) for a reply that is not one (wrong id, truncated,
    garbage)."""
    header = parse_header(reply)
    if header.id != tid or not header.flags & FLAG_QR:
        raise DnsError(f"not a reply to query {tid}")
    if header.flags & 0xF:
        return None
    answers = parse_message(reply).answers
    return next((r.rdata for r in answers if r.rtype == TYPE_A and r.rdata), None)


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

    try:
        # An uplink that is down (no route, refused) is an answer too: not resolving.
        transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=(server, port))
    except OSError:
        return None
    try:
        transport.sendto(build_query(name, tid))
        return first_a(await asyncio.wait_for(got, timeout), tid)
    except (TimeoutError, ValueError, OSError):
        return None
    finally:
        transport.close()
