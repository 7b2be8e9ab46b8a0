"""The one supervisor: keeps a program running, and starts it again when it dies.

It runs the restart policy of `domains.restart`. The agent keeps sys-sec's services running
with it, the controller keeps ipsd inline with it, and it is a program of its own for an
engine run by hand or by a test:

    python -m domains.supervise [--pidfile PATH] -- hyperwall-ipsd --queue 0 -S ... -l ...

While the engine is down the firewall forwards nothing (NFQUEUE without bypass), so the
restart delay is the outage: the first restart is immediate, and only a child that keeps
dying young (a bad rule set, a queue held by another program) is restarted ever more
slowly, up to 5 s, so a crash loop does not eat sys-sec's CPU. SIGHUP is passed to the
child (reload); SIGTERM stops the child, then the supervisor.

A child that says it is ready does so by printing `ready` on stdout (the engine: it holds
the queue); the supervisor logs how long each outage lasted, from the death to that line,
and as a program prints `ready` itself once the first child did. (init, PID 1 and
synchronous, runs the same policy through `domains.restart` directly.)
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from domains.logsetup import setup_logging
from domains.restart import Backoff, Outage, Restarts

log = logging.getLogger("hyperwall.supervise")
# An engine's outage is the restart delay: none for a crash out of the blue.
ENGINE = Backoff(first=0.0, base=0.05, cap=5.0, stable_after=10.0)


class Supervisor:
    """The asyncio shell of `Restarts`: runs `argv` until stopped.

    `says_ready`: the child prints `ready` on stdout once it works (only then may it be
    signalled: before its handlers are set a SIGHUP would kill it); otherwise it counts
    as ready once started, and its stdout is the supervisor's. `on_status` is told
    `running` and `restarting (exited N)` as they happen; `nice` is the child's niceness."""

    def __init__(self, argv: list[str], *, name: str | None = None, backoff: Backoff = ENGINE,
                 says_ready: bool = True, nice: int = 0,
                 on_outage: Callable[[Outage], None] | None = None,
                 on_status: Callable[[str], Awaitable[object]] | None = None) -> None:
        if not argv:
            raise ValueError("supervise: no command to run")
        self.argv = argv
        self.restarts = Restarts(name or Path(argv[0]).name, backoff)
        self.says_ready = says_ready
        self.nice = nice
        self.on_outage = on_outage
        self.on_status = on_status
        self.child: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self._stopping = False

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs and has said ready, else None."""
        if self.child is None or self.child.returncode is not None or not self.ready.is_set():
            return None
        return self.child.pid

    def signal_child(self, sig: int) -> bool:
        """Pass a signal on, to a child that said ready; False if there is none."""
        if self.pid is None:
            return False
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError):
            self.child.send_signal(sig)
        return True

    async def run(self) -> None:
        """Until stop() or a cancel (which stops the child too). Raises OSError when the
        child cannot even be started: a command that is not there will not appear."""
        try:
            while not self._stopping:
                child = await self._start()
                code = await child.wait()
                if self._stopping:
                    break
                ended = self.restarts.exited(time.monotonic(), code)
                log.error("%s", ended.line)
                self._outage(ended.outage)
                await self._status(f"restarting (exited {code})")
                if ended.delay:
                    await asyncio.sleep(ended.delay)
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def _start(self) -> asyncio.subprocess.Process:
        self.ready.clear()
        child = self.child = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE if self.says_ready else None)
        self.restarts.started(time.monotonic())
        if self.nice:
            with contextlib.suppress(OSError):   # gone already: the wait says so
                os.setpriority(os.PRIO_PROCESS, child.pid, self.nice)
        if self.says_ready:
            assert child.stdout is not None
            if (await child.stdout.readline()).strip() != b"ready":
                return child    # it died (or said something else): the wait tells
        up = self.restarts.ready(time.monotonic(), child.pid)
        log.info("%s", up.line)
        self._outage(up.outage)
        self.ready.set()
        await self._status("running")
        return child

    def _outage(self, outage: Outage | None) -> None:
        if outage is not None and self.on_outage is not None:
            self.on_outage(outage)

    async def _status(self, text: str) -> None:
        if self.on_status is not None:
            await self.on_status(text)

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        child = self.child
        if child is not None and child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), timeout)
            except TimeoutError:
                child.kill()
                await child.wait()


async def amain(args: argparse.Namespace) -> int:
    sup = Supervisor(args.command)
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(sup.run())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: sup.signal_child(signal.SIGHUP))
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n")

    async def say_ready() -> None:
        await sup.ready.wait()
        print("ready", flush=True)   # as the engine says it: whoever starts us can wait
    announce = asyncio.ensure_future(say_ready())
    try:
        done, _ = await asyncio.wait([task, asyncio.ensure_future(stop.wait())],
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()   # the child could not even be started: say why
    finally:
        await sup.stop()
        task.cancel()
        announce.cancel()
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m domains.supervise",
                                description=__doc__.splitlines()[0])
    p.add_argument("--pidfile", type=Path, help="the supervisor's own pid (SIGHUP it to "
                   "reload the child, SIGTERM to stop both)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to keep running")
    args = p.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        p.error("no command: give it after --")
    setup_logging("supervise")
    try:
        sys.exit(asyncio.run(amain(args)))
    except OSError as e:
        sys.exit(f"supervise: cannot start {args.command[0]}: {e}")


if __name__ == "__main__":
    main()
