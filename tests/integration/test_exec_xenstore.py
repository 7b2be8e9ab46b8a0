"""exec over xenstore end to end against Hyperwall's daemon: dom0 on the privileged socket,
the agent's exec loop on the guest's own domain socket (acting as that domid, as a ring does
on Xen), with the domain layout and permissions the toolstack writes.
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dom0.backends.base import BackendError
from dom0.config import DomainSpec
from dom0.guest_exec import exec_in_domain
from dom0.layout import domain_nodes
from dom0.xenstore import execproto as xp
from dom0.xenstore.client import AsyncXenStore, XenStore, XsError
from domains.exec_service import serve_exec
from tests.conftest import Daemon

GUEST = 5


@dataclass
class World:
    dom0: AsyncXenStore
    guest_socket: str


class Agent:
    """The agent's exec loop on the guest's own socket."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def __aenter__(self) -> Agent:
        self.store = await AsyncXenStore.connect(("unix", self.world.guest_socket))
        self.task = asyncio.ensure_future(serve_exec(self.store))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.store.close()


@pytest.fixture
async def world(hw_xenstored: Daemon) -> AsyncIterator[World]:
    dom0 = await AsyncXenStore.connect(("unix", str(hw_xenstored.socket)))
    try:
        await dom0.introduce(GUEST)
        await dom0.write_nodes(domain_nodes(GUEST, "uuid-5",
                                            DomainSpec(name="work", kind="app")))
        yield World(dom0, str(hw_xenstored.rundir / "domain" / str(GUEST) / "socket"))
    finally:
        await dom0.close()


@pytest.fixture
async def agent(world: World) -> AsyncIterator[World]:
    async with Agent(world):
        yield world


async def leftovers(dom0: AsyncXenStore) -> list[str]:
    base = f"/local/domain/{GUEST}"
    return await dom0.ls(f"{base}/{xp.REQUESTS}") + await dom0.ls(f"{base}/{xp.RESULTS}")


async def test_commands_run_in_the_guest(agent: World) -> None:
    dom0 = agent.dom0
    r = await exec_in_domain(dom0, GUEST, ["echo", "hi"], timeout=10)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"hi\n", b"")
    r = await exec_in_domain(dom0, GUEST, ["sh", "-c", "echo err >&2; exit 3"], timeout=10)
    assert (r.returncode, r.stdout, r.stderr) == (3, b"", b"err\n")
    data = bytes(range(256)) * 16 + b"\0tail"
    r = await exec_in_domain(dom0, GUEST, ["cat"], timeout=10, stdin=data)
    assert (r.returncode, r.stdout) == (0, data)
    r = await exec_in_domain(dom0, GUEST, ["no-such-program-hw"], timeout=10)
    assert r.returncode == 127 and b"no-such-program-hw" in r.stderr
    r = await exec_in_domain(dom0, GUEST, ["sleep", "10"], timeout=0.5)
    assert r.returncode == 124 and b"timed out" in r.stderr
    assert await leftovers(dom0) == []


async def test_large_output_stays_within_the_guests_quotas(agent: World) -> None:
    # Both streams at full size at once: every chunk fits the 2048-byte value quota and the
    # result stays under the 1000-node quota.
    script = "import sys; sys.stdout.write('o' * 100000); sys.stderr.write('e' * 100000)"
    r = await exec_in_domain(agent.dom0, GUEST, [sys.executable, "-c", script], timeout=20)
    assert r.returncode == 0 and r.stdout == b"o" * xp.OUTPUT_CAP
    assert r.stderr.startswith(b"e" * xp.OUTPUT_CAP) and b"stdout truncated" in r.stderr
    assert b"stderr truncated" in r.stderr


async def test_no_agent_is_a_backend_error(world: World) -> None:
    with pytest.raises(BackendError, match=r"agent did not answer within 0.5 s"):
        await exec_in_domain(world.dom0, GUEST, ["true"], timeout=0.3, grace=0.2)
    assert await leftovers(world.dom0) == []


async def test_the_guest_cannot_write_its_own_requests(world: World) -> None:
    with XenStore(("unix", world.guest_socket)) as guest:
        for path in (f"{xp.REQUESTS}/1/argv", f"/local/domain/{GUEST}/{xp.REQUESTS}/1/argv"):
            with pytest.raises(XsError) as e:
                guest.write(path, '["id"]')
            assert e.value.name == "EACCES"
        # ...while it can read dom0's requests and write its own results.
        await world.dom0.write_nodes(xp.request_nodes(GUEST, 1, ["true"], 1))
        assert guest.read(f"{xp.REQUESTS}/1/argv") == b'["true"]'
        with pytest.raises(XsError) as e:
            guest.write(f"{xp.REQUESTS}/1/argv", '["id"]')
        assert e.value.name == "EACCES"
        with pytest.raises(XsError) as e:
            guest.rm(f"{xp.REQUESTS}/1", missing_ok=False)
        assert e.value.name == "EACCES"
        guest.write(f"{xp.RESULTS}/1/rc", "0")


async def test_an_agent_restart_does_not_run_a_request_again(world: World,
                                                             tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    dom0 = world.dom0
    await dom0.write_nodes(xp.request_nodes(GUEST, 7, ["sh", "-c", f"echo run >> {runs}"], 10))
    rc_path = f"{xp.result_dir(GUEST, 7)}/rc"
    async with Agent(world):
        assert await dom0.wait_value(rc_path, lambda v: v is not None, 10) == b"0"
    async with Agent(world):      # the agent comes back; request 7 is still there
        r = await exec_in_domain(dom0, GUEST, ["cat", str(runs)], timeout=10)
    assert r.stdout == b"run\n", "request 7 ran once"
