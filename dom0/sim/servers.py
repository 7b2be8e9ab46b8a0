"""The simulated internet's servers, run inside its namespace by `dom0.sim.net`:
an authoritative DNS server for the zone, HTTP on port 80 and HTTPS on 443 (the certificate
for the name the client sends as SNI). Prints "ready" once all listen.

Usage: python -m dom0.sim.servers ZONE_JSON CERT_DIR
  ZONE_JSON  {"name": "address", ...}; other names get NXDOMAIN
  CERT_DIR   <name>.pem (certificate + key) per name, made by dom0.sim.net
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from netsec.app.dns import (
    RCODE_FORMERR,
    RCODE_NXDOMAIN,
    TYPE_A,
    DnsError,
    build_answer,
    build_error,
    parse_query,
)

# Linux's IP_PKTINFO (the socket module names it only from Python 3.12 on).
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IN_PKTINFO = struct.Struct("=I4s4s")
# The EICAR test string: every anti-malware product detects it; harmless by design.
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")


def answer(zone: dict[str, str], query: bytes) -> bytes | None:
    try:
        header, q = parse_query(query)
    except DnsError:
        return None
    if q is None:
        return build_error(header, RCODE_FORMERR)
    address = zone.get(q.name.decode("ascii", "replace").lower())
    if address is None:
        return build_error(header, RCODE_NXDOMAIN)
    return build_answer(header, q, ipaddress.IPv4Address(address).packed
                        if q.qtype == TYPE_A else None)


def page(host: str, path: str) -> tuple[str, bytes, str]:
    if path == "/download/eicar.txt":
        return "200 OK", EICAR, "application/octet-stream"
    return "200 OK", f"hello from {host}\n".encode(), "text/plain"


async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        _, path, _ = lines[0].split(" ", 2)
        host = next((line.split(":", 1)[1].strip() for line in lines[1:]
                     if line.lower().startswith("host:")), "")
        status, body, ctype = page(host, path)
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: "
                     f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
    except (ValueError, asyncio.IncompleteReadError, TimeoutError, ConnectionError,
            asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


SniSeen = Callable[[ssl.SSLObject, str | None], None]


def tls_context(cert_dir: Path, seen: SniSeen | None = None) -> ssl.SSLContext:
    """A server context presenting `cert_dir/<name>.pem` to a client asking for <name>
    (SNI; case and a trailing dot aside, as DNS compares names), any one of them to the
    rest. `seen` is told each connection's SNI as the client sent it."""
    contexts: dict[str, ssl.SSLContext] = {}
    for pem in cert_dir.glob("*.pem"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pem)
        contexts[pem.stem] = ctx
    default = next(iter(contexts.values()))

    def pick(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        if seen is not None:
            seen(sock, name)
        sock.context = contexts.get((name or "").rstrip(".").lower(), default)
    default.sni_callback = pick  # type: ignore[assignment]
    return default


class Dns:
    """Answers from the zone file, read again whenever it changed (names come and go)."""

    def __init__(self, zone_file: Path) -> None:
        self.zone_file = zone_file
        self.mtime = 0.0
        self.zone: dict[str, str] = {}

    def reply(self, query: bytes) -> bytes | None:
        mtime = self.zone_file.stat().st_mtime
        if mtime != self.mtime:
            self.zone, self.mtime = json.loads(self.zone_file.read_text()), mtime
        return answer(self.zone, query)


def serve_dns(dns: Dns, port: int = 53) -> socket.socket:
    """UDP DNS on every address of the namespace. Each reply leaves from the address its
    query went to (IP_PKTINFO): a resolver that connect()s its socket, as glibc's does,
    takes no answer from any other."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    sock.bind(("0.0.0.0", port))
    sock.setblocking(False)

    def readable() -> None:
        try:
            data, ancillary, _, peer = sock.recvmsg(4096, socket.CMSG_SPACE(IN_PKTINFO.size))
        except BlockingIOError:
            return
        reply = dns.reply(data)
        if reply is None:
            return
        # struct in_pktinfo {ifindex; spec_dst; addr}: the query's destination is `addr`,
        # and on sending, `spec_dst` is the source to use.
        to = [IN_PKTINFO.unpack(d[:IN_PKTINFO.size])[2] for level, kind, d in ancillary
              if level == socket.IPPROTO_IP and kind == IP_PKTINFO]
        source = [(socket.IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(0, to[0], bytes(4)))] \
            if to else []
        try:
            sock.sendmsg([reply], source, 0, peer)
        except OSError:
            pass   # the asker is gone; nothing to tell it

    asyncio.get_running_loop().add_reader(sock.fileno(), readable)
    return sock


async def main(zone_file: Path, cert_dir: Path) -> None:
    with serve_dns(Dns(zone_file)):
        # reuse_port: a test's own server may take these ports on one address of the world.
        await asyncio.start_server(http, "0.0.0.0", 80, reuse_port=True)
        await asyncio.start_server(http, "0.0.0.0", 443, ssl=tls_context(cert_dir),
                                   reuse_port=True)
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
