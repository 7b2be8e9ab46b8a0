"""sys-sec's filtering resolver: blocked names get a sinkhole answer, the rest go upstream.

The core (`Resolver.handle_query`) is sans-IO: a query's bytes in, either the answer's bytes
or a request to forward the query unchanged; it records each decision for the parent's
report. The asyncio shell (`serve`) listens on UDP and TCP port 53 on the vif gateway and
relays forwarded queries to the upstream resolver.

Blocked names are answered the way common filtering resolvers do: A queries with 0.0.0.0,
AAAA with ::, anything else with an empty NOERROR answer — so clients fail fast instead of
retrying other resolvers. Malformed queries get FORMERR when a header can be read, and are
dropped otherwise.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass

from netsec.blocklist import Blocklist

log = logging.getLogger("hyperwall.resolver")

QTYPE_A, QTYPE_AAAA = 1, 28
RCODE_FORMERR = 1
SINKHOLE_TTL = 60
_HEADER = struct.Struct("!HHHHHH")


class QueryError(ValueError):
    """A query that cannot be answered; `tid` is set when the header could be read."""

    def __init__(self, reason: str, tid: int | None = None, flags: int = 0) -> None:
        super().__init__(reason)
        self.tid, self.flags = tid, flags


@dataclass(frozen=True)
class Question:
    tid: int
    flags: int
    name: str          # lowercase, no trailing dot
    qtype: int
    qclass: int
    end: int           # offset just past the question


def parse_question(untrusted: bytes) -> Question:
    if len(untrusted) < _HEADER.size:
        raise QueryError("shorter than a DNS header")
    tid, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(untrusted)
    if flags & 0x8000:
        raise QueryError("a response, not a query", tid, flags)
    if qdcount != 1:
        raise QueryError(f"{qdcount} questions (exactly one is answered)", tid, flags)
    labels: list[str] = []
    off = _HEADER.size
    while True:
        if off >= len(untrusted):
            raise QueryError("question name runs past the end", tid, flags)
        n = untrusted[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0:
            # Compression has nothing earlier to point at in a one-question query.
            raise QueryError("compressed or extended label in a query", tid, flags)
        label = untrusted[off + 1: off + 1 + n]
        if len(label) != n:
            raise QueryError("label runs past the end", tid, flags)
        labels.append(label.decode("ascii", "replace").lower())
        off += 1 + n
        if off > 255 + _HEADER.size:
            raise QueryError("name longer than 255 bytes", tid, flags)
    if off + 4 > len(untrusted):
        raise QueryError("question has no type and class", tid, flags)
    qtype, qclass = struct.unpack_from("!HH", untrusted, off)
    return Question(tid, flags, ".".join(labels), qtype, qclass, off + 4)


def build_answer(query: bytes, q: Question, ipv4: bytes = bytes(4),
                 ipv6: bytes | None = bytes(16)) -> bytes:
    """An answer that echoes the question (and drops any EDNS record): by default the
    sinkhole; `ipv4`/`ipv6` give real addresses (None: no AAAA record)."""
    rd = q.flags & 0x0100
    flags = 0x8000 | 0x0400 | rd | 0x0080   # QR, AA, RD copied, RA
    rdata = {QTYPE_A: ipv4, QTYPE_AAAA: ipv6}.get(q.qtype)
    ancount = 1 if rdata is not None else 0
    out = _HEADER.pack(q.tid, flags, 1, ancount, 0, 0) + query[_HEADER.size:q.end]
    if rdata is not None:
        # The answer's name is a pointer to the question's name at offset 12.
        out += struct.pack("!HHHIH", 0xC00C, q.qtype, q.qclass, SINKHOLE_TTL, len(rdata)) + rdata
    return out


def build_error(tid: int, flags: int, rcode: int) -> bytes:
    return _HEADER.pack(tid, 0x8000 | (flags & 0x0100) | 0x0080 | rcode, 0, 0, 0, 0)


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

        Raises QueryError for a query to drop without an answer (no readable header)."""
        try:
            q = parse_question(untrusted)
        except QueryError as e:
            if e.tid is None:
                raise
            return build_error(e.tid, e.flags, RCODE_FORMERR)
        now = self.clock()
        category = self.blocklist.lookup(q.name, now) if self.filters(client) else None
        self._record(Decision(now, client, q.name, q.qtype, category))
        return build_answer(untrusted, q) if category is not None else None

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
        except QueryError as e:
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
