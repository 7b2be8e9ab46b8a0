"""sys-sec's controller keeps its inline engine running (domains.supervise): a killed ipsd
is replaced by a new one, nothing crosses the firewall meanwhile, and the controller says
both in `data/hyperwall/ips`. Observed at a listener on the far side."""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dom0.xenstore.client import AsyncXenStore
from domains.syssec.ipsd import read_stats
from tests.conftest import Daemon
from tests.syssec_lab import LISTEN, SEC, SysSec, sys_sec
from tests.wall_probes import send

pytestmark = pytest.mark.root

GUESTS = {"other": (12, "internet")}
SITE = "198.51.100.80"
IPS = f"/local/domain/{SEC}/data/hyperwall/ips"


@pytest.fixture
async def world(hw_xenstored: Daemon, tmp_path: Path) -> AsyncIterator[SysSec]:
    async with sys_sec(hw_xenstored, tmp_path, GUESTS, engine=True, far=(SITE,),
                       prefix="hwsup") as w:
        yield w


def received(world: SysSec, queue: int) -> int:
    return int(read_stats(world.state / "run" / f"ipsd.sock.{queue}")["queue"]["received"])


def parent(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^PPid:\s+(\d+)$", status, re.M)
    assert found, status
    return int(found.group(1))


async def test_a_killed_engine_is_restarted_by_the_controller(
        world: SysSec, hw_xenstored: Daemon) -> None:
    site = world.listen("inet", LISTEN, "tcp:8080")
    xs = await AsyncXenStore.connect(("unix", str(hw_xenstored.socket)))
    try:
        # Positive control: the guest reaches the site through the engine, through the
        # worker whose queue the address pair hashes to (the one whose counters move).
        before = [received(world, q) for q in range(world.workers)]
        assert send(world.ns["other"], f"tcp,{SITE},8080,before") == ["OPEN"]
        assert site.wait_for(lambda line: line.startswith("tcp 8080 "), 5)
        site.take()
        owner = next(q for q in range(world.workers) if received(world, q) > before[q])
        engine = int((world.state / "run" / f"ipsd.pid.{owner}").read_text())
        controller = parent(engine)
        async with contextlib.aclosing(xs.watch(IPS)) as events:
            await anext(events)   # a watch fires once when set: no later write is missed
            # Hold the controller so that the engine stays down while we look.
            os.kill(controller, signal.SIGSTOP)
            try:
                os.kill(engine, signal.SIGKILL)
                assert send(world.ns["other"], f"tcp,{SITE},8080,down") == ["TIMEOUT"]
                assert site.take() == [], "traffic crossed while the engine was down"
            finally:
                os.kill(controller, signal.SIGCONT)
            said: list[bytes | None] = []
            async with asyncio.timeout(30):
                while not said or said[-1] != b"running":
                    await anext(events)
                    said.append(await xs.read(IPS))
        # With more workers (one per core) the others keep running meanwhile.
        down = [b"restarting (exited -9)" if q == owner else b"running"
                for q in range(world.workers)]
        assert said == [down[0] if world.workers == 1 else b", ".join(
            b"queue %d: %s" % (q, text) for q, text in enumerate(down)), b"running"], \
            (said, world.controller_log())
        again = int((world.state / "run" / f"ipsd.pid.{owner}").read_text())
        assert again != engine and parent(again) == controller
        assert send(world.ns["other"], f"tcp,{SITE},8080,after") == ["OPEN"]
        assert site.wait_for(lambda line: line.startswith("tcp 8080 "), 5)
        log = world.controller_log()
        assert "ipsd killed by SIGKILL after" in log and f"ipsd {again} running" in log, log
    finally:
        site.stop()
        await xs.close()
