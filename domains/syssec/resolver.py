"""sys-sec's filtering resolver: blocked names get a sinkhole answer, the rest go upstream.

The core (`Resolver.handle_query`) is sans-IO: a query's bytes in, either the answer's bytes
or a request to forward the query unchanged; it records each decision for the parent's
report. The asyncio shell (`serve`) listens on UDP and TCP port 53 on the vif gateway and
relays forwarded queries to the upstream resolver.

Blocked names are answered the way common filtering resolvers do: A queries with 0.0.0.0,
AAAA with ::, anything else with an empty NOERROR answer — so clients fail fast instead of
retrying other resolvers. Malformed queries get FORMERR when a header can be read, and are
dropped otherwise. Messages are read and built by the engine's codec, `netsec.app.dns`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass

from netsec.app.dns import (
    RCODE_FORMERR,
    TYPE_A,
    TYPE_AAAA,
    DnsError,
    build_answer,
    build_error,
    parse_query,
)
from netsec.blocklist import Blocklist

log = logging.getLogger("hyperwall.resolver")

# Sinkhole addresses by query type; any other type gets an empty NOERROR answer.
SINKHOLE = {TYPE_A: bytes(4), TYPE_AAAA: bytes(16)}


@dataclass(frozen=True)
class Decision:
    when: dt.datetime
    client: str
    name: str
    qtype: int
    category: str | None       # None: allowed and forwarded


class Resolver:
    """Decides per query; `decisions` keeps what it did, for reports and EVE dns events."""

    def __init__(self, blocklist: Blocklist, clock: Callable[[], dt.datetime] = dt.datetime.now,
                 keep: int = 10000, filters: Callable[[str], bool] = lambda client: True) -> None:
        self.blocklist = blocklist
        # Whose queries the block lists apply to (sys-sec: `filtered` guests only).
        self.filters = filters
        self.clock = clock
        self.keep = keep
        self.decisions: list[Decision] = []

    def handle_query(self, untrusted: bytes, client: str) -> bytes | None:
        """The answer to send back, or None to forward the query upstream unchanged.

        Raises DnsError for a query to drop without an answer (no readable header)."""
        header, q = parse_query(untrusted)
        if q is None:
            return build_error(header, RCODE_FORMERR)
        name = q.name.decode("ascii", "replace").lower()
        now = self.clock()
        category = self.blocklist.lookup(name, now) if self.filters(client) else None
        self._record(Decision(now, client, name, q.qtype, category))
        return build_answer(header, q, SINKHOLE.get(q.qtype)) if category is not None else None

    def _record(self, d: Decision) -> None:
        self.decisions.append(d)
        if len(self.decisions) > self.keep:
            del self.decisions[: len(self.decisions) - self.keep]


# -- the asyncio shell ---------------------------------------------------------------------

class _Upstream:
    """Forwards queries over UDP to one upstream resolver and matches replies by id."""

    def __init__(self, upstream: tuple[str, int], timeout: float = 3.0) -> None:
        self.upstream, self.timeout = upstream, timeout

    async def ask(self, query: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                if len(data) >= 2 and data[:2] == query[:2] and not fut.done():
                    fut.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=self.upstream)
        try:
            transport.sendto(query)
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            return None
        finally:
            transport.close()


async def serve(resolver: Resolver, listen: tuple[str, int],
                upstream: tuple[str, int]) -> list[asyncio.BaseTransport | asyncio.AbstractServer]:
    """Answer on UDP and TCP at `listen`; returns the transports/servers to close."""
    loop = asyncio.get_running_loop()
    up = _Upstream(upstream)

    async def answer(query: bytes, client: str) -> bytes | None:
        try:
            reply = resolver.handle_query(query, client)
        except DnsError as e:
            log.debug("dropping query from %s: %s", client, e)
            return None
        return reply if reply is not None else await up.ask(query)

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            async def reply() -> None:
                out = await answer(data, addr[0])
                if out is not None:
                    self.transport.sendto(out, addr)  # type: ignore[attr-defined]
            loop.create_task(reply())

    async def tcp_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = writer.get_extra_info("peername")[0]
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                out = await answer(await reader.readexactly(size), client)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=listen)
    tcp = await asyncio.start_server(tcp_client, *listen)
    return [udp, tcp]
