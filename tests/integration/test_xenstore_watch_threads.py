"""AsyncXenStore's watches against the real daemon: a watch that ends leaves no thread."""
from __future__ import annotations

import asyncio
import contextlib
import threading

from dom0.xenstore.client import AsyncXenStore, XenStore
from tests.conftest import Daemon


def pumps() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("xs-watch ")]


async def test_watches_ended_while_their_path_is_written_leave_no_thread(
        hw_xenstored: Daemon) -> None:
    store = await AsyncXenStore.connect(("unix", str(hw_xenstored.socket)))
    stop = threading.Event()

    def write() -> None:
        # Events in flight at every moment, also while each watch below is being removed.
        with XenStore(("unix", str(hw_xenstored.socket))).connect() as xs:
            i = 0
            while not stop.is_set():
                xs.write("/busy/value", str(i))
                i += 1

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        for _ in range(30):
            async with contextlib.aclosing(store.watch("/busy/value")) as events:
                seen = 0
                async for _ in events:
                    seen += 1
                    if seen == 3:
                        break
        async with asyncio.timeout(10):
            while pumps():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        writer.join(10)
        await store.close()
