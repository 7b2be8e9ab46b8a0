"""The controller and an engine it did not start (--ipsd-pidfile): it signals the pid in the
pidfile when rules change, and says the engine is gone when that pid is not alive."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from domains.syssec.controller import Controller, Launch, Settings
from netsec.policy import VifKeys, plan

# Stands in for hyperwall-ipsd: says ready once its SIGHUP handler is set, "hup" per SIGHUP
# ("usr1" per SIGUSR1, a marker a test sends after what it expects).
ENGINE = """
import signal, sys, time
signal.signal(signal.SIGHUP, lambda *_: print("hup", flush=True))
signal.signal(signal.SIGUSR1, lambda *_: print("usr1", flush=True))
print("ready", flush=True)
time.sleep(10)   # the bound on a test that waits for a line in vain
"""


@pytest.fixture
def engine() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", ENGINE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    yield proc
    proc.kill()
    proc.wait()


def controller(tmp_path: Path, pidfile: Path) -> Controller:
    launch = Launch.defaults(tmp_path)
    return Controller(None, tmp_path, Settings(),
                      Launch(launch.lists, launch.rules_dir, ipsd_pidfile=pidfile))


def test_rules_changes_reach_an_engine_run_elsewhere(
        tmp_path: Path, engine: subprocess.Popen[str]) -> None:
    pidfile = tmp_path / "ipsd.pid"
    pidfile.write_text(f"{engine.pid}\n")
    ctl = controller(tmp_path, pidfile)
    assert ctl.engine_state() == "running"
    assert engine.stdout is not None
    # One at a time: two SIGHUPs sent together may arrive as one.
    ctl.reload_ipsd()
    assert engine.stdout.readline() == "hup\n"
    ctl.reload_content()
    assert engine.stdout.readline() == "hup\n"


def test_a_stale_or_garbled_pidfile_is_an_engine_that_is_not_there(
        tmp_path: Path, engine: subprocess.Popen[str]) -> None:
    pidfile = tmp_path / "ipsd.pid"
    engine.kill()
    engine.wait()
    for text in (f"{engine.pid}\n", "not a pid\n"):
        pidfile.write_text(text)
        ctl = controller(tmp_path, pidfile)
        assert ctl.engine_state() == "restarting"
        ctl.reload_ipsd()   # nothing to signal: logged, not raised
        # A bundle swapped in must not count as applied when no engine took it.
        with pytest.raises(OSError, match="not running"):
            ctl.reload_content()


def test_the_engine_is_reloaded_only_when_its_rules_change(
        tmp_path: Path, engine: subprocess.Popen[str]) -> None:
    """Every policy apply publishes the plan; guests' keys change often while they start,
    and a reload costs the engine a rule load each time."""
    pidfile = tmp_path / "ipsd.pid"
    pidfile.write_text(f"{engine.pid}\n")
    ctl = controller(tmp_path, pidfile)
    (tmp_path / "run").mkdir(exist_ok=True)
    assert engine.stdout is not None
    family = plan([VifKeys(3, 0, b"10.137.0.3", b"internet", b"family")])
    ctl.publish(family)                       # the first rules file: a reload
    assert engine.stdout.readline() == "hup\n"
    names = tmp_path / "run" / "domains.json"
    inode = names.stat().st_ino
    ctl.publish(family)                       # the same plan again: nothing
    both = plan([VifKeys(3, 0, b"10.137.0.3", b"internet", b"family"),
                 VifKeys(4, 0, b"10.137.0.4", b"internet", b"untrusted")])
    ctl.publish(both)                         # a new name, no new rules: no reload either
    assert names.stat().st_ino != inode and "untrusted" in names.read_text()
    # SIGHUP is delivered before SIGUSR1 when both are pending: a reload would come first.
    os.kill(engine.pid, signal.SIGUSR1)
    assert engine.stdout.readline() == "usr1\n"
