"""The control API's authorisation with real Unix users running the real `hyperwall` CLI.

Creates throw-away accounts (removed afterwards, also on failure): an owner-group member,
a user listed in some domains' `users`, and one listed nowhere; serves the API (real proxy,
real SO_PEERCRED) over the stand-in toolstack, and runs the CLI as each of them.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dom0.api.server import serve
from dom0.config import DomainSpec
from dom0.sim.embedded import Platform
from tests.conftest import as_user, started, unix_accounts
from tests.control_fakes import StandInToolstack, short_dir

pytestmark = pytest.mark.root

TIMEOUT = 15.0
GROUP = "hwt-owners"
MEMBER, ALICE, MALLORY = "hwt-member", "hwt-alice", "hwt-mallory"
ALL = ["sys-sec", "family", "untrusted", "work"]


@pytest.fixture(scope="module")
def accounts() -> Iterator[None]:
    with unix_accounts({MEMBER: [GROUP], ALICE: [], MALLORY: []}, [GROUP]):
        yield


@pytest.fixture
async def served(accounts: None) -> AsyncIterator[tuple[Path, StandInToolstack]]:
    specs = {s.name: s for s in (
        DomainSpec("sys-sec", "sys-sec", policy="uplink"),
        DomainSpec("work", "app", policy="filtered", users=(ALICE,)),
        DomainSpec("family", "app", users=(ALICE, "someone-else")),
        DomainSpec("untrusted", "disposable", policy="offline"),
    )}
    with short_dir() as run:
        toolstack = StandInToolstack(specs)
        server = await serve(toolstack, run / "hyperwall" / "control.sock", owner_group=GROUP)
        try:
            yield run / "hyperwall" / "control.sock", toolstack
        finally:
            await server.stop(None)


@pytest.fixture
def socket_path(served: tuple[Path, StandInToolstack]) -> Path:
    return served[0]


async def hyperwall(socket: Path, user: str | None, *argv: str) -> tuple[int, str, str]:
    """Run the CLI as `user` (None: as root); returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *as_user(user, "--socket", str(socket), *argv),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def names(socket: Path, user: str | None) -> list[str]:
    code, out, err = await hyperwall(socket, user, "--json", "list")
    assert code == 0, err
    return [d["name"] for d in json.loads(out)]


async def test_who_sees_what(socket_path: Path) -> None:
    assert await names(socket_path, None) == ALL
    assert await names(socket_path, MEMBER) == ALL
    assert await names(socket_path, ALICE) == ["family", "work"]
    assert await names(socket_path, MALLORY) == []


async def test_a_listed_user_drives_their_domain(socket_path: Path) -> None:
    for argv in (["start", "work"], ["pause", "work"], ["unpause", "work"],
                 ["get", "work"], ["shutdown", "work"]):
        code, _, err = await hyperwall(socket_path, ALICE, *argv)
        assert code == 0, (argv, err)


@pytest.mark.parametrize("argv", [["start", "untrusted"], ["get", "sys-sec"],
                                  ["exec", "untrusted", "--", "id"], ["start", "no-such"]])
async def test_a_listed_user_is_refused_other_domains(socket_path: Path,
                                                      argv: list[str]) -> None:
    code, out, err = await hyperwall(socket_path, ALICE, *argv)
    assert (code, out) == (1, "")
    assert err == (f"hyperwall: permission denied: user {ALICE!r} may not use domain "
                   f"{argv[1]!r}: the user is not in its `users` (an owner can add it to the "
                   "domain's definition)\n")


@pytest.mark.parametrize("argv", [["create", "work"], ["destroy", "work"], ["up"], ["down"]])
async def test_platform_operations_need_an_owner(socket_path: Path, argv: list[str]) -> None:
    code, out, _ = await hyperwall(socket_path, ALICE, "--json", *argv)
    assert code == 1
    assert json.loads(out)["error"]["code"] == "PERMISSION_DENIED"


async def test_a_group_member_is_an_owner(socket_path: Path) -> None:
    for argv in (["create", "untrusted"], ["destroy", "untrusted"], ["up"], ["down"]):
        code, _, err = await hyperwall(socket_path, MEMBER, *argv)
        assert code == 0, (argv, err)


async def test_an_unlisted_user_uses_nothing(socket_path: Path) -> None:
    code, out, _ = await hyperwall(socket_path, MALLORY, "--json", "start", "work")
    assert code == 1 and json.loads(out)["error"]["code"] == "PERMISSION_DENIED"
    assert f"{MALLORY!r}" in json.loads(out)["error"]["message"]


async def test_events_are_filtered_for_a_listed_user(
        served: tuple[Path, StandInToolstack]) -> None:
    socket_path, toolstack = served
    proc = await asyncio.create_subprocess_exec(
        *as_user(ALICE, "--socket", str(socket_path), "--json", "events"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT):
            await toolstack.subscribed.wait()
            await toolstack.start("untrusted")
            await toolstack.start("work")
            line = await proc.stdout.readline()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), TIMEOUT)
    assert (json.loads(line)["kind"], json.loads(line)["domain"]) == ("created", "work")


async def test_users_cannot_reach_grpc_without_the_proxy(socket_path: Path) -> None:
    internal = socket_path.with_name(socket_path.name + ".d") / "grpc.sock"
    assert internal.exists()
    code, out, _ = await hyperwall(internal, MALLORY, "--json", "list")
    assert code == 1 and json.loads(out)["error"]["code"] == "UNAVAILABLE"


# -- end to end: the real hyperwall-dom0d ---------------------------------------------------

CONFIG = {
    "sys-sec.toml": 'name = "sys-sec"\nkind = "sys-sec"\npolicy = "uplink"\n',
    "work.toml": f'name = "work"\nkind = "app"\npolicy = "filtered"\nusers = ["{ALICE}"]\n',
}


@pytest.fixture
async def dom0d(accounts: None) -> AsyncIterator[Path]:
    """The real daemon on a config dir of two domains; yields its control socket."""
    async with started(Platform(CONFIG, first_domid=4000 + os.getpid() % 1000)) as platform:
        yield platform.socket


@pytest.mark.slow
async def test_dom0d_serves_the_control_api(dom0d: Path) -> None:
    code, out, err = await hyperwall(dom0d, None, "--json", "list")
    assert code == 0, err
    assert [(d["name"], d["state"], d["domid"]) for d in json.loads(out)] == [
        ("sys-sec", "defined", None), ("work", "defined", None)]
    assert await names(dom0d, ALICE) == ["work"]
    assert await names(dom0d, MALLORY) == []
    code, out, _ = await hyperwall(dom0d, None, "--json", "get", "nope")
    assert code == 1 and json.loads(out)["error"]["code"] == "NOT_FOUND"
    code, out, _ = await hyperwall(dom0d, ALICE, "--json", "up")
    assert code == 1 and json.loads(out)["error"]["code"] == "PERMISSION_DENIED"
