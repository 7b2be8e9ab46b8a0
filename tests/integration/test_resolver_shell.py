"""The resolver's asyncio shell on loopback: UDP and TCP clients, a real upstream socket."""
from __future__ import annotations

import asyncio
import socket
import struct

from scapy.layers.dns import DNS, DNSQR, DNSRR

from domains.syssec.resolver import Resolver, serve
from netsec.blocklist import Blocklist, Category


class Upstream(asyncio.DatagramProtocol):
    """Answers every query with 192.0.2.7, as an upstream resolver would."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        q = DNS(data)
        reply = DNS(id=q.id, qr=1, rd=q.rd, ra=1, qd=q.qd,
                    an=DNSRR(rrname=q.qd.qname, rdata="192.0.2.7"))
        self.transport.sendto(bytes(reply), addr)  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def udp_ask(port: int, query: bytes) -> DNS:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bytes] = loop.create_future()

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            fut.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(P, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(query)
        return DNS(await asyncio.wait_for(fut, 5))
    finally:
        transport.close()


async def test_udp_and_tcp_sinkhole_and_forward() -> None:
    loop = asyncio.get_running_loop()
    up_transport, _ = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
    up_port = up_transport.get_extra_info("sockname")[1]
    port = free_port()
    resolver = Resolver(Blocklist([Category("gambling", {"casino.example"})]))
    closers = await serve(resolver, ("127.0.0.1", port), ("127.0.0.1", up_port))
    try:
        blocked = await udp_ask(port, bytes(DNS(id=1, rd=1, qd=DNSQR(qname="casino.example"))))
        assert blocked.an.rdata == "0.0.0.0"
        allowed = await udp_ask(port, bytes(DNS(id=2, rd=1, qd=DNSQR(qname="news.example"))))
        assert allowed.an.rdata == "192.0.2.7"

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for qid, name, want in ((3, "www.casino.example", "0.0.0.0"),
                                (4, "news.example", "192.0.2.7")):
            q = bytes(DNS(id=qid, rd=1, qd=DNSQR(qname=name)))
            writer.write(struct.pack("!H", len(q)) + q)
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))[0]
            answer = DNS(await reader.readexactly(size))
            assert answer.id == qid and answer.an.rdata == want
        writer.close()
        assert [d.category for d in resolver.decisions] == ["gambling", None, "gambling", None]
    finally:
        for c in closers:
            c.close()
        up_transport.close()
