"""The supervisor: its restart policy as a table, and a real child process killed and
brought back (no root needed: the child is a small Python program)."""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from domains.supervise import Outage, RestartPolicy, Supervisor

CHILD = """
import signal, sys, time
signal.signal(signal.SIGHUP, lambda *_: open(sys.argv[1], "a").write("hup\\n"))
print("ready", flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize("lives, delays", [
    ([30.0], [0.0]),                                  # a crash out of the blue: at once
    ([0.1, 0.1, 0.1, 0.1], [0.0, 0.05, 0.1, 0.2]),    # dying young: ever more slowly
    ([0.1] * 12, [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0]),
    ([0.1, 0.1, 0.1, 30.0], [0.0, 0.05, 0.1, 0.0]),   # healthy for a while: forgiven
])
def test_restart_policy(lives: list[float], delays: list[float]) -> None:
    policy = RestartPolicy()
    assert [policy.after_exit(lived) for lived in lives] == pytest.approx(delays)


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
        assert sup.child is not first and sup.starts == 2
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


def test_no_command_is_refused() -> None:
    with pytest.raises(ValueError, match="no command"):
        Supervisor([])
