"""domains/init.py as an ordinary child process (its PID-1 role is covered by the ns tests)."""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

INIT = Path(__file__).resolve().parents[2] / "domains" / "init.py"


async def start(*agent: str, grace: float | None = None) -> asyncio.subprocess.Process:
    prelude = f"import domains.init as i; i.STOP_GRACE = {grace}; " if grace else ""
    argv = ([sys.executable, "-c", prelude + "import sys; sys.exit(i.main(sys.argv[1:]))",
             *agent] if grace else [sys.executable, "-I", "-S", str(INIT), *agent])
    return await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)


async def read_until(proc: asyncio.subprocess.Process, text: str, timeout: float = 5) -> str:
    assert proc.stdout is not None
    seen = ""
    async with asyncio.timeout(timeout):
        while text not in seen:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"init ended before saying {text!r}; it said {seen!r}")
            seen += line.decode()
    return seen


async def test_restarts_a_dying_agent_with_backoff() -> None:
    proc = await start("false")
    try:
        said = await read_until(proc, "restarting agent in 1.0s")
        assert said.count("started agent") == 2
        assert "agent exited with 1" in said and "restarting agent in 0.5s" in said
    finally:
        proc.kill()
        await proc.wait()


async def test_an_agent_exiting_zero_powers_the_domain_off() -> None:
    proc = await start("true")
    said = await read_until(proc, "stopped")
    assert "agent exited with 0" in said and "restarting" not in said
    assert await asyncio.wait_for(proc.wait(), 5) == 0


async def test_sigterm_stops_the_agent_and_exits_zero() -> None:
    proc = await start("sleep", "30")
    await read_until(proc, "started agent")
    proc.send_signal(signal.SIGTERM)
    said = await read_until(proc, "stopped")
    assert "agent killed by SIGTERM" in said
    assert await asyncio.wait_for(proc.wait(), 5) == 0


async def test_an_agent_ignoring_sigterm_is_killed_after_the_grace() -> None:
    proc = await start("sh", "-c",
                       "trap '' TERM; printf 'rea%sy\\n' d; while :; do sleep 0.05; done",
                       grace=0.3)
    # Not the bare word: init's log line quoting the command must not count as the signal.
    await read_until(proc, "\nready")
    proc.send_signal(signal.SIGTERM)
    said = await read_until(proc, "stopped")
    assert "killing it" in said and "agent killed by SIGKILL" in said
    assert await asyncio.wait_for(proc.wait(), 5) == 0


@pytest.mark.parametrize("argv", [[], ["/nonexistent/agent"]])
async def test_bad_agent_commands(argv: list[str]) -> None:
    proc = await start(*argv)
    try:
        if argv:
            said = await read_until(proc, "restarting agent")
            assert "cannot start /nonexistent/agent" in said
        else:
            assert await asyncio.wait_for(proc.wait(), 5) == 2
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
