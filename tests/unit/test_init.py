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


def _module(tmp_path: Path, name: str, body: str) -> dict[str, str]:
    (tmp_path / f"{name}.py").write_text(body)
    return {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}


async def start_preloaded(env: dict[str, str], *agent: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", str(INIT), "--preload", *agent, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def test_a_preloaded_agent_is_imported_once_and_forked_for_each_start(
        tmp_path: Path) -> None:
    # What the agent imports logs each import; the agent prints its pid and argv, then fails.
    log = tmp_path / "imports"
    _module(tmp_path, "probe_dep",
            f"import os\nopen({str(log)!r}, 'a').write(f'{{os.getpid()}}\\n')\n")
    env = _module(tmp_path, "probe", (
        "import os, sys\nimport probe_dep\n"
        "if __name__ == '__main__':\n"
        "    print(f'agent {os.getpid()} {os.getppid()} {\"/\".join(sys.argv[1:])}')\n"
        "    sys.exit(3)\n"))
    proc = await start_preloaded(env, sys.executable, "-S", "-m", "probe", "x", "y")
    try:
        said = await read_until(proc, "restarting agent in 1.0s")
        runs = [line.split() for line in said.splitlines() if line.startswith("agent ")]
        assert [r[2:] for r in runs] == [[str(proc.pid), "x/y"]] * 2, said   # init's children
        assert runs[0][1] != runs[1][1] and "agent exited with 3" in said     # a fork each
        # Imported by init alone, once: the two starts found it imported already.
        assert log.read_text().split() == [str(proc.pid)]
    finally:
        proc.kill()
        await proc.wait()


async def test_a_preloaded_agent_that_does_not_import_fails_visibly_and_is_restarted(
        tmp_path: Path) -> None:
    env = _module(tmp_path, "broken", "import no_such_module_here\n")
    proc = await start_preloaded(env, sys.executable, "-S", "-m", "broken")
    try:
        said = await read_until(proc, "restarting agent in 1.0s")
        assert "cannot preload broken: ModuleNotFoundError" in said
        assert said.count("No module named 'no_such_module_here'") >= 2   # each start's own
        assert "agent exited with 1" in said
    finally:
        proc.kill()
        await proc.wait()


@pytest.mark.parametrize("agent", [["sleep", "1"], [sys.executable, "-m", "x"]])
async def test_preload_takes_only_a_python_module_agent(agent: list[str]) -> None:
    proc = await start_preloaded({"PATH": "/usr/bin:/bin"}, *agent)
    out, _ = await asyncio.wait_for(proc.communicate(), 5)
    assert proc.returncode == 2 and b"--preload needs an agent `PYTHON -S -m MODULE`" in out
