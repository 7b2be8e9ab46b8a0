"""The far side of a test's uplink, run inside its `inet` namespace: the simulated internet's
authoritative DNS for a small zone (UDP 53 on every address, each reply from the address
asked), and plain TCP listeners that greet and close. Prints "ready" once all listen.

Usage: inet_stub.py ZONE_JSON PORT...
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from dom0.sim.servers import Dns, serve_dns


async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hello\n")
    await writer.drain()
    writer.close()


async def main(zone: Path, ports: list[int]) -> None:
    with serve_dns(Dns(zone)):
        for port in ports:
            await asyncio.start_server(greet, "0.0.0.0", port)
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), [int(p) for p in sys.argv[2:]]))
