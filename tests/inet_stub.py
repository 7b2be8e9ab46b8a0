"""The far side of a test's uplink, run inside its `inet` namespace: an authoritative DNS
server for a small zone on UDP 53 of each address given, and plain TCP listeners that greet
and close. Prints "ready" once all listen.

Usage: inet_stub.py ZONE_JSON DNS_ADDR[,DNS_ADDR...] PORT...
(one socket per address: a socket on 0.0.0.0 would answer from the namespace's first
address, which a client that asked another one does not take as the reply)
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from dom0.simnet_servers import Dns


async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hello\n")
    await writer.drain()
    writer.close()


async def main(zone: Path, dns_addrs: list[str], ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    for addr in dns_addrs:
        await loop.create_datagram_endpoint(lambda: Dns(zone), local_addr=(addr, 53))
    for port in ports:
        await asyncio.start_server(greet, "0.0.0.0", port)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2].split(","), [int(p) for p in sys.argv[3:]]))
