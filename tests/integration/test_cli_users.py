"""Every `hyperwall` command as each kind of user the README names, on the real platform
(root only): dom0d, the standard domains and sys-sec with its engine, the simulated
internet on its uplink. Real accounts made for the test (removed afterwards, also on
failure): a member of the `hyperwall` group (an owner), the user family's `users` names
(the parent) and a user named nowhere (a stranger); each runs the installed CLI under their
own uid. sys-sec's records are real: family and untrusted each download the EICAR file,
which the engine drops, so the owner has alerts of two domains to see and the parent one.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dom0.api.auth import OWNER_GROUP
from dom0.config import STANDARD_DIR
from dom0.sim.embedded import Platform
from dom0.sim.guest_scripts import EICAR_SID, FETCH
from dom0.sim.net import ZONE
from tests.conftest import HYPERWALL, as_user, group_exists, unix_accounts, venv_runs_for
from tests.simworld import embedded_world, tag

pytestmark = [pytest.mark.root, pytest.mark.slow]

TIMEOUT = 60.0
MEMBER, PARENT, STRANGER = (f"hwu{tag()}{who}" for who in ("own", "par", "str"))
USERS = (MEMBER, PARENT, STRANGER)
DENIED = "hyperwall: permission denied: "


def standard_with_the_parent() -> dict[str, str]:
    """The standard domains, family's `users` naming the test's parent."""
    files = {p.name: p.read_text() for p in sorted(STANDARD_DIR.glob("*.toml"))}
    family = files["family.toml"].replace('users = ["child"]', f'users = ["{PARENT}"]')
    assert family != files["family.toml"], "family.toml no longer lists `child`"
    return {**files, "family.toml": family}


async def hyperwall(p: Platform, user: str | None, *argv: str) -> tuple[int, str, str]:
    """The CLI as `user` (None: root) on `p`: (exit code, stdout, stderr), where stderr
    never holds a traceback and a failure says why in one line (`exec` passes on what its
    command said and its exit code)."""
    proc = await asyncio.create_subprocess_exec(
        *as_user(user, "--socket", str(p.socket), *argv), env=p.env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    said = (proc.returncode, out.decode(), err.decode())
    assert "Traceback" not in said[2], (user, argv, said)
    if proc.returncode != 0 and "--json" not in argv and "exec" not in argv:
        assert said[2].startswith("hyperwall: ") and said[2].count("\n") == 1, (user, argv, said)
    return said


async def refused(p: Platform, user: str, *argv: str) -> str:
    """`argv` as `user` is refused (exit 1, one line, with and without --json): the line."""
    code, out, err = await hyperwall(p, user, *argv)
    assert (code, out) == (1, "") and err.startswith(DENIED), (user, argv, code, out, err)
    assert err.count("\n") == 1, err
    code, out, _ = await hyperwall(p, user, "--json", *argv)
    assert code == 1 and json.loads(out)["error"]["code"] == "PERMISSION_DENIED", (argv, out)
    return err


def eicar_alerts(out: str) -> set[str]:
    """The domains of the EICAR alerts in `hyperwall --json alerts` output."""
    return {a["domain"] for a in map(json.loads, out.splitlines())
            if a["signature_id"] == EICAR_SID}


@pytest.fixture(scope="module")
def world() -> Iterator[Platform]:
    # The owner group is the platform's own name; made here only where the host lacks it.
    groups = [] if group_exists(OWNER_GROUP) else [OWNER_GROUP]
    with unix_accounts({MEMBER: [OWNER_GROUP], PARENT: [], STRANGER: []}, groups), \
            embedded_world(f"hwcu{os.getpid() % 10000}", ZONE, 8000 + os.getpid() % 1000,
                           standard_with_the_parent()) as (platform, _):
        asyncio.run(download_eicar(platform, "family", "untrusted"))
        yield platform


async def download_eicar(p: Platform, *domains: str) -> None:
    """Each of `domains` fetches the EICAR file until sys-sec has logged its drop: the
    engine takes its queue a moment after `up` returns."""
    async with asyncio.timeout(TIMEOUT):
        for domain in domains:
            while True:
                code, _, err = await hyperwall(
                    p, None, "exec", domain, "--", sys.executable, "-c", FETCH, "allowed.example",
                    "80", "allowed.example", "", "/download/eicar.txt")
                assert code == 0, err
                code, out, err = await hyperwall(p, None, "--json", "alerts", "--domain", domain)
                assert code == 0, err
                if domain in eicar_alerts(out):
                    break


def test_the_installed_cli_runs_for_every_user(world: Platform) -> None:
    # make install builds the venv from the system's interpreter (README "Running it").
    assert all(venv_runs_for(user) for user in USERS), f"{HYPERWALL} does not run for others"


async def test_who_sees_which_domains(world: Platform) -> None:
    for user, names in ((None, ["sys-sec", "family", "untrusted", "work"]),
                        (MEMBER, ["sys-sec", "family", "untrusted", "work"]),
                        (PARENT, ["family"]), (STRANGER, [])):
        code, out, err = await hyperwall(world, user, "--json", "list")
        assert code == 0, err
        assert sorted(d["name"] for d in json.loads(out)) == sorted(names), user
        code, out, err = await hyperwall(world, user, "list")
        assert code == 0 and out.startswith("Name"), err


async def test_an_owner_reads_every_domains_alerts(world: Platform) -> None:
    for user in (None, MEMBER):
        code, out, err = await hyperwall(world, user, "--json", "alerts")
        assert code == 0, err
        assert eicar_alerts(out) == {"family", "untrusted"}, user
        code, out, err = await hyperwall(world, user, "--json", "alerts", "--domain",
                                         "untrusted")
        assert code == 0 and eicar_alerts(out) == {"untrusted"}, err
        code, out, err = await hyperwall(world, user, "alerts", "--domain", "untrusted")
        assert code == 0 and "ET MALWARE EICAR test file download" in out, err


async def test_the_parent_reads_familys_alerts_and_report_only(world: Platform) -> None:
    code, out, err = await hyperwall(world, PARENT, "--json", "alerts")
    assert code == 0, err
    assert eicar_alerts(out) == {"family"}
    assert {json.loads(line)["domain"] for line in out.splitlines()} == {"family"}
    code, out, err = await hyperwall(world, PARENT, "--json", "alerts", "--domain", "family")
    assert code == 0 and eicar_alerts(out) == {"family"}, err
    code, out, err = await hyperwall(world, PARENT, "--json", "report", "--domain", "family")
    assert code == 0, err
    assert EICAR_SID in {a["signature_id"] for a in json.loads(out)["alerts"]}
    code, out, err = await hyperwall(world, PARENT, "report", "--domain", "family")
    assert code == 0 and out.startswith("Report for family"), err
    for argv in (["alerts", "--domain", "untrusted"], ["report", "--domain", "untrusted"],
                 ["alerts", "--domain", "sys-sec"], ["report", "--domain", "nope"]):
        assert f"may not use domain {argv[2]!r}" in await refused(world, PARENT, *argv)


async def test_the_parent_drives_family_and_nothing_else(world: Platform) -> None:
    for argv in (["get", "family"], ["exec", "family", "--", "true"], ["pause", "family"],
                 ["unpause", "family"]):
        code, _, err = await hyperwall(world, PARENT, *argv)
        assert code == 0, (argv, err)
    code, out, _ = await hyperwall(world, PARENT, "exec", "family", "--", "sh", "-c", "exit 3")
    assert code == 3
    for argv in (["get", "untrusted"], ["exec", "work", "--", "true"], ["start", "untrusted"],
                 ["shutdown", "work"], ["pause", "untrusted"], ["unpause", "untrusted"]):
        assert "may not use domain" in await refused(world, PARENT, *argv)
    for argv in (["create", "family"], ["destroy", "family"], ["up"], ["down"]):
        assert "reserved to the platform's owners" in await refused(world, PARENT, *argv)


async def test_a_stranger_reads_and_uses_nothing(world: Platform) -> None:
    for argv in (["alerts"], ["report", "--domain", "family"], ["get", "family"],
                 ["exec", "family", "--", "true"], ["start", "family"], ["shutdown", "family"],
                 ["pause", "family"], ["unpause", "family"], ["create", "family"],
                 ["destroy", "family"], ["up"], ["down"], ["provider", "status"]):
        assert f"{STRANGER!r}" in await refused(world, STRANGER, *argv), argv
    assert "may read no domain's alerts" in await refused(world, STRANGER, "alerts")


async def test_the_provider_status_is_the_owners_and_changing_it_roots(world: Platform) -> None:
    code, out, err = await hyperwall(world, None, "--json", "provider", "status")
    assert code == 0, err
    as_root = json.loads(out)
    code, out, err = await hyperwall(world, MEMBER, "--json", "provider", "status")
    assert code == 0, err
    assert json.loads(out) == as_root and as_root["status"] == "not enrolled"
    code, out, err = await hyperwall(world, MEMBER, "provider", "status")
    assert code == 0 and "not enrolled" in out, err
    assert "reserved to the platform's owners" in await refused(world, PARENT, "provider",
                                                                "status")
    key = Path(world.dir) / "acme.pub"
    key.write_text("not a key\n")
    for user in (MEMBER, PARENT, STRANGER):
        for argv in (["provider", "enroll", "--bundle-key", str(key)], ["provider", "revoke"]):
            assert "only root may open: run it as root" in await refused(world, user, *argv)


async def test_an_owner_drives_every_domain(world: Platform) -> None:
    for argv in (["get", "untrusted"], ["exec", "untrusted", "--", "true"],
                 ["pause", "untrusted"], ["unpause", "untrusted"]):
        code, _, err = await hyperwall(world, MEMBER, *argv)
        assert code == 0, (argv, err)
    # Not for want of permission: the domain runs already. Still one line, exit 1.
    code, out, err = await hyperwall(world, MEMBER, "--json", "create", "untrusted")
    assert code == 1 and json.loads(out)["error"]["code"] == "FAILED_PRECONDITION", out


async def test_events_show_each_user_the_events_of_their_domains(world: Platform) -> None:
    procs = {user: await asyncio.create_subprocess_exec(
        *as_user(user, "--socket", str(world.socket), "--json", "events"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        for user in USERS}
    seen: dict[str, list[dict[str, object]]] = {user: [] for user in USERS}
    try:
        async with asyncio.timeout(TIMEOUT):
            # Until both listed users' streams are live, each pause is a probe that may
            # reach no one; the first event of family's they read ends it.
            while not (seen[MEMBER] and seen[PARENT]):
                for name in ("untrusted", "family"):
                    for action in ("pause", "unpause"):
                        code, _, err = await hyperwall(world, None, action, name)
                        assert code == 0, err
                for user in (MEMBER, PARENT):
                    stdout = procs[user].stdout
                    assert stdout is not None
                    with_timeout = asyncio.wait_for(stdout.readline(), 1.0)
                    try:
                        seen[user].append(json.loads(await with_timeout))
                    except TimeoutError:
                        pass
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
    ends = {user: await asyncio.wait_for(proc.communicate(), TIMEOUT)
            for user, proc in procs.items()}
    for user, (rest, said) in ends.items():
        assert procs[user].returncode == 0, (user, said)   # Ctrl-C ends `events` cleanly
        assert b"Traceback" not in said, (user, said)
        seen[user] += [json.loads(line) for line in rest.decode().splitlines()]
    assert {e["domain"] for e in seen[PARENT]} == {"family"}
    assert {e["domain"] for e in seen[MEMBER]} >= {"family"}
    assert seen[STRANGER] == []


async def test_a_group_member_brings_the_platform_down(world: Platform) -> None:
    code, out, err = await hyperwall(world, MEMBER, "down")
    assert (code, out) == (0, "the platform is down\n"), err
    code, out, err = await hyperwall(world, PARENT, "--json", "alerts")
    assert code == 1 and "sys-sec" in json.loads(out)["error"]["message"], out
