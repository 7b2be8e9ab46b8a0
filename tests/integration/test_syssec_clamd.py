"""sys-sec's controller runs clamd under its supervisor (domains.supervise), on the database
of the bundle in force, and only when that bundle carries one: a killed clamd is replaced by
a new one that answers PING and finds the test signature again. Observed through clamd's
own socket, as the scanners reach it."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dom0.xenstore.client import AsyncXenStore
from domains.syssec.antivirus import ClamdScanner
from domains.syssec.controller import Controller, Settings
from netsec.filescan import Outcome
from tests.clamd_lab import EICAR, short_folder, write_database, write_yara
from tests.conftest import Daemon
from tests.syssec_lab import SEC, sys_sec

pytestmark = pytest.mark.root


@pytest.fixture
def state() -> Iterator[Path]:
    with short_folder("hwclamctl-") as folder:
        yield folder


def bundle_with_database(state: Path, version: int = 7) -> Path:
    folder = state / "bundles" / str(version)
    write_database(folder / "clamav")
    (state / "bundles" / "current").symlink_to(str(version))
    return folder


async def until(ok: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(ok):  # type: ignore[arg-type]
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        await asyncio.sleep(0.05)


async def test_no_database_no_clamd(state: Path) -> None:
    ctl = Controller(None, state, Settings())
    assert ctl.supervise_clamd() is None
    (state / "bundles" / "3" / "clamav").mkdir(parents=True)   # a bundle, no database in it
    (state / "bundles" / "current").symlink_to("3")
    assert ctl.supervise_clamd() is None and ctl.clamd is None


async def test_a_killed_clamd_is_restarted_and_answers_again(
        state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="hyperwall.supervise")
    bundle_with_database(state)
    ctl = Controller(None, state, Settings())
    sup = ctl.supervise_clamd()
    assert sup is not None
    conf = (state / "run" / "clamd.conf").read_text()
    assert f"DatabaseDirectory {state}/bundles/current/clamav\n" in conf
    assert f"LocalSocket {ctl.clamd_socket}\n" in conf
    scanner = ClamdScanner(ctl.clamd_socket)
    task = asyncio.ensure_future(sup.run())
    try:
        await until(scanner.ping, 30, "the supervised clamd did not answer PING")
        assert (await asyncio.to_thread(scanner.scan, EICAR, "e")).outcome is Outcome.INFECTED
        assert sup.child is not None
        first = sup.child.pid
        os.kill(first, signal.SIGKILL)
        await until(lambda: sup.child is not None and sup.child.pid != first
                    and scanner.ping(), 30, "no new clamd answered PING")
        assert (await asyncio.to_thread(scanner.scan, EICAR, "e")).outcome is Outcome.INFECTED
        assert "clamd killed by SIGKILL after" in caplog.text, caplog.text
    finally:
        await ctl.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sup.child is not None and sup.child.returncode is not None   # nothing left running


async def test_the_first_bundle_with_a_database_starts_clamd_and_one_without_stops_it(
        state: Path) -> None:
    ctl = Controller(None, state, Settings())
    ctl.loop = asyncio.get_running_loop()   # as apply() sets it: a swap comes from a thread
    await asyncio.to_thread(ctl.reload_clamd)
    assert ctl.clamd is None                 # no bundle yet, no clamd
    bundle_with_database(state)
    try:
        await asyncio.to_thread(ctl.reload_clamd)
        sup = ctl.clamd
        assert sup is not None
        scanner = ClamdScanner(ctl.clamd_socket)
        await until(scanner.ping, 30, "clamd started by the swap did not answer PING")
        assert (await asyncio.to_thread(scanner.scan, EICAR, "e")).outcome is Outcome.INFECTED
        # a bundle without clamav/ swapped in: clamd goes, and the scanners say so
        (state / "bundles" / "8").mkdir()
        (state / "bundles" / "current").unlink()
        (state / "bundles" / "current").symlink_to("8")
        await asyncio.to_thread(ctl.reload_clamd)
        assert ctl.clamd is None
        await until(lambda: sup.child is not None and sup.child.returncode is not None, 15,
                    "clamd did not stop")
        down = scanner.scan(EICAR, "e")
        assert down.outcome is Outcome.ERROR and "scanner down" in down.error
    finally:
        await ctl.stop()
        for task in list(ctl.reapplying):
            task.cancel()
        await asyncio.gather(*ctl.reapplying, return_exceptions=True)


async def test_the_engine_is_given_the_bundles_scanners(state: Path) -> None:
    ctl = Controller(None, state, Settings())
    plain = ctl.supervise_ipsd()[0].argv
    assert "--clamd-socket" not in plain and "--yara-dir" not in plain
    folder = bundle_with_database(state)
    write_yara(folder / "yara")
    argv = ctl.supervise_ipsd()[0].argv
    assert argv[argv.index("--clamd-socket") + 1] == str(ctl.clamd_socket)
    assert argv[argv.index("--yara-dir") + 1] == str(state / "bundles" / "current" / "yara")
    # a swap to a bundle without them: for the engine's next start, flags not doubled
    (state / "bundles" / "9").mkdir()
    (state / "bundles" / "current").unlink()
    (state / "bundles" / "current").symlink_to("9")
    ctl._follow_scanners()
    assert [w.argv for w in ctl.workers][:1] == [plain]
    (state / "bundles" / "current").unlink()
    (state / "bundles" / "current").symlink_to("7")
    ctl._follow_scanners()
    assert ctl.workers[0].argv == argv


def children(pid: int) -> dict[int, str]:
    """The live children of `pid`, by pid, with their command lines."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            status = (proc / "status").read_text()
            if f"\nPPid:\t{pid}\n" in status:
                out[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ") \
                    .decode(errors="replace")
    return out


async def test_the_controller_program_runs_clamd_and_hands_ipsd_the_scanners(
        hw_xenstored: Daemon, tmp_path: Path) -> None:
    """The real thing: sys-sec's controller as sys-sec runs it, with a bundle in force that
    carries a database and YARA rules; clamd killed under it comes back, said in xenstore."""
    def bundle(state: Path) -> None:
        write_yara(bundle_with_database(state) / "yara")

    status = f"/local/domain/{SEC}/data/hyperwall/clamd"
    async with sys_sec(hw_xenstored, tmp_path, {"other": (12, "internet")}, engine=True,
                       prefix="hwclam", prepare=bundle) as w:
        xs = await AsyncXenStore.connect(("unix", str(hw_xenstored.socket)))
        try:
            assert await xs.wait_value(status, lambda v: v == b"running", 30) == b"running"
            scanner = ClamdScanner(w.state / "run" / "clamd.sock")
            await until(scanner.ping, 30, "the controller's clamd did not answer PING")
            engine = int((w.state / "run" / "ipsd.pid.0").read_text())
            controller = next(int(line.split()[1]) for line in
                              Path(f"/proc/{engine}/status").read_text().splitlines()
                              if line.startswith("PPid:"))
            kids = children(controller)
            assert f"--clamd-socket {w.state}/run/clamd.sock" in kids[engine], kids[engine]
            assert f"--yara-dir {w.state}/bundles/current/yara" in kids[engine]
            clamd = next(pid for pid, cmd in kids.items() if "clamd -c" in cmd)
            assert (await asyncio.to_thread(scanner.scan, EICAR, "e")).outcome \
                is Outcome.INFECTED
            async with contextlib.aclosing(xs.watch(status)) as events:
                await anext(events)     # a watch fires once when set
                os.kill(clamd, signal.SIGKILL)
                said: list[bytes | None] = []
                async with asyncio.timeout(30):
                    while not said or said[-1] != b"running":
                        await anext(events)
                        said.append(await xs.read(status))
            assert said == [b"restarting (exited -9)", b"running"], w.log.read_text()
            await until(scanner.ping, 30, "no new clamd answered PING")
            again = [pid for pid, cmd in children(controller).items() if "clamd -c" in cmd]
            assert again and again[0] != clamd
            assert (await asyncio.to_thread(scanner.scan, EICAR, "e")).outcome \
                is Outcome.INFECTED
        finally:
            await xs.close()
