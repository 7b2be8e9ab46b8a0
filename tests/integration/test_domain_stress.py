"""Domains started and destroyed by the hundred, with a CPU hog beside them (root only).

The whole platform (dom0d, its xenstored, the ns backend, sys-sec's and every guest's
agent) through the control API. A start returns once both ends of the guest's vif are
Connected; one that a lost watch event leaves waiting shows up here as a start past the
limit (dom0d itself gives up only after its connect timeout).
"""
from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from dom0.sim.embedded import Platform
from proto.gen.hyperwall.control.v1 import control_pb2 as pb
from proto.gen.hyperwall.control.v1 import control_pb2_grpc as pb_grpc
from tests.conftest import started
from tests.integration.test_dom0d import assert_gone

pytestmark = [pytest.mark.root, pytest.mark.slow]

DOMAINS = 200
AT_ONCE = 10
START_LIMIT = 5.0
# Domids are allocated upwards from here without reuse until the range wraps, so the range
# must hold every domain of the run; well clear of the other tests' ranges (below 10000).
FIRST_DOMID = 10000 + (os.getpid() % 80) * 250
CONNECTED = b"4"

SYS_SEC = """name = "sys-sec"
kind = "sys-sec"
backend = "ns"
memory = 256
policy = "uplink"
"""
GUEST = """name = "{name}"
kind = "disposable"
backend = "ns"
memory = 64
policy = "internet"
"""


@pytest.fixture
def cpu_hog() -> Iterator[subprocess.Popen[bytes]]:
    """A child spinning on one core for as long as the test runs."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield hog
    finally:
        hog.kill()
        hog.wait()


@pytest.fixture
async def platform() -> AsyncIterator[Platform]:
    config = {"sys-sec.toml": SYS_SEC} | {
        f"s{i}.toml": GUEST.format(name=f"s{i}") for i in range(AT_ONCE)}
    async with started(Platform(config, first_domid=FIRST_DOMID), log_tail=20000) as p:
        yield p


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def test_200_domains_started_and_destroyed_10_at_a_time_beside_a_cpu_hog(
        platform: Platform, cpu_hog: subprocess.Popen[bytes]) -> None:
    times: list[float] = []
    domids: set[int] = set()
    with platform.xenstore() as xs:
        async with grpc.aio.insecure_channel(f"unix:{platform.socket}") as channel:
            stub = pb_grpc.ControlServiceStub(channel)
            await stub.Start(pb.StartRequest(name="sys-sec"))
            sys_sec = platform.domid("sys-sec")

            async def cycle(name: str, rounds: int) -> None:
                for _ in range(rounds):
                    t0 = time.monotonic()
                    reply = await stub.Start(pb.StartRequest(name=name))
                    times.append(time.monotonic() - t0)
                    domid = reply.domain.domid
                    domids.add(domid)
                    assert reply.domain.state == pb.DOMAIN_STATE_RUNNING, reply
                    fe = f"/local/domain/{domid}/device/vif/0/state"
                    be = f"/local/domain/{sys_sec}/backend/vif/{domid}/0/state"
                    states = await asyncio.to_thread(lambda fe=fe, be=be: (xs.read(fe),
                                                                           xs.read(be)))
                    assert states == (CONNECTED, CONNECTED), (name, domid, states)
                    await stub.Destroy(pb.DestroyRequest(name=name))

            await asyncio.gather(*(cycle(f"s{i}", DOMAINS // AT_ONCE) for i in range(AT_ONCE)))
            await stub.Destroy(pb.DestroyRequest(name="sys-sec"))
    assert cpu_hog.poll() is None, "the hog ran all along"
    print(f"{len(times)} starts, {AT_ONCE} at a time: max {max(times):.2f}s, "
          f"p50 {statistics.median(times):.2f}s, p95 {pct(times, 95):.2f}s")
    assert len(times) == DOMAINS and len(domids) == DOMAINS
    assert max(times) <= START_LIMIT, sorted(times)[-10:]
    assert_gone(platform, [sys_sec, *domids])
