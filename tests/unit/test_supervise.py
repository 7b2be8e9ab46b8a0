"""The supervisor's asyncio shell with real child processes, killed and brought back (no
root needed: the child is a small Python program). Its policy: test_restart.py."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from domains.restart import Backoff, Outage
from domains.supervise import Supervisor

CHILD = """
import signal, sys, time
signal.signal(signal.SIGHUP, lambda *_: open(sys.argv[1], "a").write("hup\\n"))
print("ready", flush=True)
while True:
    time.sleep(1)
"""


async def test_a_killed_child_is_back_at_once_and_gets_the_sighup(tmp_path: Path) -> None:
    marks = tmp_path / "hups"
    outages: asyncio.Queue[Outage] = asyncio.Queue()
    sup = Supervisor([sys.executable, "-c", CHILD, str(marks)], on_outage=outages.put_nowait)
    task = asyncio.ensure_future(sup.run())
    try:
        await asyncio.wait_for(sup.ready.wait(), 10)
        first = sup.child
        assert first is not None
        first.send_signal(signal.SIGKILL)
        outage = await asyncio.wait_for(outages.get(), 10)
        assert outage.exit_code == -signal.SIGKILL
        assert outage.down is not None and outage.down < 1.0, outage
        assert sup.child is not first and sup.restarts.starts == 2
        assert sup.signal_child(signal.SIGHUP)
        for _ in range(200):   # the child's handler writes the mark: wait for it
            if marks.exists() and marks.read_text() == "hup\n":
                break
            await asyncio.sleep(0.01)
        assert marks.read_text() == "hup\n"
    finally:
        await sup.stop()
        task.cancel()
    assert sup.child is not None and sup.child.returncode is not None

# Exits 0 the first time, then stays.
QUIET = """
import os, sys, time
first = not os.path.exists(sys.argv[1])
open(sys.argv[1], "a").close()
time.sleep(0.1 if first else 30)
"""


def test_no_command_is_refused() -> None:
    with pytest.raises(ValueError, match="no command"):
        Supervisor([])


async def test_a_child_that_says_nothing_is_reported_and_a_cancel_stops_it(
        tmp_path: Path) -> None:
    """As the agent runs sys-sec's services: up once started, restarted when it exits,
    and gone when the agent is (it cancels the supervisor)."""
    said: asyncio.Queue[str] = asyncio.Queue()

    async def status(text: str) -> None:
        await said.put(text)
    sup = Supervisor([sys.executable, "-c", QUIET, str(tmp_path / "ran")], says_ready=False,
                     nice=3, backoff=Backoff(0.0, 0.01, 0.01, 10.0), on_status=status)
    task = asyncio.ensure_future(sup.run())
    got = [await asyncio.wait_for(said.get(), 10) for _ in range(3)]
    assert got == ["running", "restarting (exited 0)", "running"]
    assert sup.pid is not None and os.getpriority(os.PRIO_PROCESS, sup.pid) == max(3, os.nice(0))
    last = sup.child
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert last is not None and last.returncode == -signal.SIGTERM
