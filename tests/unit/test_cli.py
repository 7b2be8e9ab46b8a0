"""The `hyperwall` CLI against the real API (real gRPC, real proxy) over the stand-in toolstack.

The CLI runs as the real console script in its own process, as people run it (gRPC does
not support a sync client beside an asyncio server in one process); the API is served
from the test's event loop.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dom0.api.server import serve
from dom0.backends.base import ExecResult
from dom0.cli import main as cli
from dom0.model import DomainEvent, EventKind, PermissionRefused
from tests.control_fakes import StandInToolstack, short_dir

TIMEOUT = 10.0
HYPERWALL = Path(sys.executable).with_name("hyperwall")
needs_owner = pytest.mark.skipif(os.geteuid() != 0, reason="the caller must be an owner")


class Served:
    def __init__(self, socket: Path, toolstack: StandInToolstack) -> None:
        self.socket, self.toolstack = socket, toolstack


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    with short_dir() as run:
        toolstack = StandInToolstack()
        server = await serve(toolstack, run / "control.sock")
        try:
            yield Served(run / "control.sock", toolstack)
        finally:
            await server.stop(None)


async def run_cli(served: Served, *argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(HYPERWALL), "--socket", str(served.socket), *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# -- list -----------------------------------------------------------------------------------

@needs_owner
async def test_list_is_a_table_like_xl_list(served: Served) -> None:
    await served.toolstack.start("work")
    code, out, _ = await run_cli(served, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)", "Policy"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["work"] == ["work", "1", "1024", "2", "r-----", "1.5", "filtered"]
    assert rows["untrusted"] == ["untrusted", "-", "256", "1", "------", "-", "offline"]
    assert lines[1].startswith("sys-sec ")
    # Columns line up: every row is as wide as the header up to the Policy column.
    assert len({line.rindex("  ") for line in lines}) == 1


@needs_owner
@pytest.mark.parametrize("where", ["before", "after"])
async def test_list_json(served: Served, where: str) -> None:
    await served.toolstack.start("work")
    argv = ["--json", "list"] if where == "before" else ["list", "--json"]
    code, out, _ = await run_cli(served, *argv)
    assert code == 0
    domains = {d["name"]: d for d in json.loads(out)}
    assert domains["work"] == {
        "name": "work", "domid": 1, "uuid": "00000000-0000-0000-0000-000000000001",
        "kind": "app", "backend": "ns", "memory_mb": 1024, "vcpus": 2, "policy": "filtered",
        "state": "running", "cpu_time": 1.5, "users": ["alice"]}
    assert domains["untrusted"]["domid"] is None
    assert domains["untrusted"]["state"] == "defined"


# -- lifecycle ------------------------------------------------------------------------------

@needs_owner
async def test_lifecycle_commands(served: Served) -> None:
    for argv, said in [
        (["create", "work"], "created work (id 1)"), (["start", "work"], "started work (id 1)"),
        (["pause", "work"], "paused work"), (["unpause", "work"], "unpaused work"),
        (["shutdown", "--reboot", "--timeout", "3", "work"], "rebooted work"),
        (["destroy", "work"], "destroyed work"),
    ]:
        assert await run_cli(served, *argv) == (0, said + "\n", "")
    assert ("shutdown", "work", "reboot=True", "timeout=3.0") in served.toolstack.calls


@needs_owner
async def test_start_json_is_the_domain(served: Served) -> None:
    code, out, _ = await run_cli(served, "--json", "start", "family")
    assert code == 0 and json.loads(out)["state"] == "running"


@needs_owner
async def test_up_and_down(served: Served) -> None:
    code, out, _ = await run_cli(served, "up")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == [
        "sys-sec", "work"]
    assert await run_cli(served, "--json", "down") == (0, '{"done": "down"}\n', "")


# -- exec -----------------------------------------------------------------------------------

@needs_owner
async def test_exec_prints_output_as_is_and_passes_the_exit_code(served: Served) -> None:
    await served.toolstack.start("work")
    served.toolstack.exec_result = ExecResult(7, b"hello\n", b"oops\n")
    assert await run_cli(served, "exec", "work", "--", "sh", "-c", "exit 7") == (
        7, "hello\n", "oops\n")
    assert served.toolstack.calls[-1][:5] == ("exec", "work", "sh", "-c", "exit 7")


@needs_owner
async def test_exec_killed_by_a_signal_exits_like_a_shell(served: Served) -> None:
    await served.toolstack.start("work")
    served.toolstack.exec_result = ExecResult(-9, b"", b"")
    assert (await run_cli(served, "exec", "work", "--", "sleep", "9"))[0] == 137


@needs_owner
async def test_exec_json(served: Served) -> None:
    await served.toolstack.start("work")
    served.toolstack.exec_result = ExecResult(1, b"a", b"b")
    code, out, _ = await run_cli(served, "--json", "exec", "work", "--", "false")
    assert (code, json.loads(out)) == (1, {"exit_code": 1, "stdout": "a", "stderr": "b"})


# -- errors ---------------------------------------------------------------------------------

def test_no_daemon_says_how_to_start_it(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    assert cli.run(["--socket", str(tmp_path / "none.sock"), "list"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "hyperwall-dom0d" in err and str(tmp_path / "none.sock") in err
    assert "Traceback" not in err


def test_no_daemon_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.run(["--socket", str(tmp_path / "none.sock"), "--json", "list"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "UNAVAILABLE" and "hyperwall-dom0d" in error["message"]


def test_the_socket_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HYPERWALL_SOCKET", "/nonexistent/hw.sock")
    assert cli.run(["list"]) == 1
    assert "/nonexistent/hw.sock" in capsys.readouterr().err


@needs_owner
async def test_unknown_domain(served: Served) -> None:
    code, out, err = await run_cli(served, "start", "nope")
    assert (code, out) == (1, "") and "'nope'" in err and "hyperwall list" in err
    code, out, _ = await run_cli(served, "--json", "start", "nope")
    assert code == 1 and json.loads(out)["error"]["code"] == "NOT_FOUND"


@needs_owner
async def test_permission_denied_is_said_with_the_servers_reason(served: Served) -> None:
    served.toolstack.fail_with = PermissionRefused("user 'bob' may not use domain 'work'")
    code, _, err = await run_cli(served, "start", "work")
    assert code == 1
    assert err == "hyperwall: permission denied: user 'bob' may not use domain 'work'\n"


@needs_owner
async def test_internal_errors_carry_no_traceback(served: Served) -> None:
    served.toolstack.fail_with = RuntimeError("boom")
    code, out, _ = await run_cli(served, "--json", "start", "work")
    assert code == 1
    assert json.loads(out)["error"] == {
        "code": "INTERNAL", "message": "dom0d failed (internal error); its log has the details"}


@pytest.mark.parametrize("error, says", [
    (PermissionError(13, "Permission denied", "/x/eve.json"),
     ("UNAVAILABLE", "/x/eve.json: Permission denied")),
    (RuntimeError("boom"),
     ("INTERNAL", "list failed: RuntimeError: boom (a bug in hyperwall)")),
])
def test_any_other_failure_is_one_line_too(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           error: Exception, says: tuple[str, str]) -> None:
    def fails(s: object, args: object) -> int:
        raise error
    monkeypatch.setitem(cli.COMMANDS, "list", dataclasses.replace(cli.COMMANDS["list"],
                                                                  run=fails))
    assert cli.run(["list"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"hyperwall: {says[1]}\n")
    assert cli.run(["--json", "list"]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == {"code": says[0],
                                                            "message": says[1]}


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["start"], ["exec", "work"],
                                  ["shutdown", "--timeout", "soon", "work"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.run(argv)
    assert exit_.value.code == 2


def test_every_command_has_help() -> None:
    text = cli.parser().format_help()
    for name in ("list", "create", "start", "shutdown", "destroy", "pause", "unpause", "exec",
                 "events", "up", "down"):
        assert name in cli.COMMANDS and name in text


# -- events, through the real console script ----------------------------------------------

@needs_owner
@pytest.mark.parametrize("as_json", [False, True])
async def test_events_follow_until_ctrl_c(served: Served, as_json: bool) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(HYPERWALL), "--socket", str(served.socket), *(["--json"] if as_json else []),
        "events", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT):
            await served.toolstack.subscribed.wait()
            await served.toolstack.start("work")
            lines = [(await proc.stdout.readline()).decode() for _ in range(2)]
            proc.send_signal(signal.SIGINT)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if as_json:
        events = [json.loads(line) for line in lines]
        assert [(e["kind"], e["domain"], e["domid"]) for e in events] == [
            ("created", "work", 1), ("started", "work", 1)]
    else:
        assert [line.split()[1:] for line in lines] == [
            ["created", "work", "(id", "1)"], ["started", "work", "(id", "1)"]]


def test_event_line_shows_detail_and_utc_time() -> None:
    event = DomainEvent(EventKind.VIF_CONNECTED, "work", 3, "vif3.0", timestamp=0.0)
    assert cli.event_line(event) == "1970-01-01T00:00:00Z vif-connected work (id 3): vif3.0"


# -- scan and recover -----------------------------------------------------------------------

PROGRESS = {"domain": "family", "scan_id": "s1", "dirs": 3, "files": 2, "bytes": 2_000_000,
            "infected": 1, "errors": 0, "skipped": {"symlink": 1}, "truncated": False,
            "done": True}
ALERT = {"event_type": "alert", "alert": {"signature": "clamav: EICAR in a/eicar.com"},
         "hyperwall": {"domain": "family", "path": "a/eicar.com", "scanner": "clamav",
                       "finding": "EICAR", "sha256": "ab" * 32}}
RESULT = {"domain": "family", "scan_id": "s1", "files": 2, "errors": 0,
          "infected": [{"path": "a/eicar.com", "sha256": "ab" * 32,
                        "findings": [{"scanner": "clamav", "signature": "EICAR"}]}]}
STEP = {"domain": "family", "action": "quarantine", "detail": "a/eicar.com moved"}


@needs_owner
async def test_scan_shows_progress_on_stderr_and_findings_on_stdout(served: Served) -> None:
    served.toolstack.scan_updates = [{"progress": PROGRESS}, {"record": ALERT},
                                     {"result": RESULT}]
    code, out, err = await run_cli(served, "scan", "--no-policy", "family", "home")
    # found and no recovery step: exit 3, as a scanner that found something does
    assert code == 3
    assert "FOUND a/eicar.com: clamav EICAR" in out and "1 infected" in out
    assert "family: 2 files, 2.0 MB, 1 infected, 0 unscannable, 1 skipped" in err
    assert served.toolstack.calls[-1] == ("scan", "family", "home", "apply_policy=False")


@needs_owner
async def test_scan_json_and_a_recovery_step(served: Served) -> None:
    served.toolstack.scan_updates = [{"record": ALERT}, {"result": RESULT}, {"step": STEP}]
    code, out, _ = await run_cli(served, "--json", "scan", "family")
    assert code == 0
    assert json.loads(out) == {"scans": [RESULT], "alerts": [ALERT], "steps": [STEP]}


@needs_owner
async def test_recover(served: Served) -> None:
    served.toolstack.scan_updates = [{"step": STEP}]
    code, out, _ = await run_cli(served, "recover", "family", "--action", "reset")
    assert (code, out) == (0, "quarantine: a/eicar.com moved\n")
    assert served.toolstack.calls[-1] == ("recover", "family", "reset")
    code, _, _ = await run_cli(served, "recover", "family", "--action", "nuke")
    assert code == 2


async def test_scan_is_for_owners_and_names_a_domain(served: Served) -> None:
    code, _, err = await run_cli(served, "scan", "nosuch")
    assert code == 1 and ("no domain named 'nosuch'" in err or "reserved" in err)
