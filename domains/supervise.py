"""Keeps the inline engine running: starts it, and starts it again at once when it dies.

    python -m domains.supervise [--pidfile PATH] -- hyperwall-ipsd --queue 0 -S ... -l ...

While the engine is down the firewall forwards nothing (NFQUEUE without bypass), so the
restart delay is the outage: the first restart is immediate, and only a child that keeps
dying young (a bad rule set, a queue held by another program) is restarted ever more
slowly, up to `max_delay`, so a crash loop does not eat sys-sec's CPU. SIGHUP is passed to
the child (reload); SIGTERM stops the child, then the supervisor.

The child says it holds the queue by printing `ready` on stdout; the supervisor logs how
long each outage lasted, from the death to that line, and prints `ready` itself once the
first child did.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from domains.logsetup import setup_logging

log = logging.getLogger("hyperwall.supervise")


@dataclass
class RestartPolicy:
    """When to start the child again (sans-IO: times in, delays out)."""

    first_delay: float = 0.0     # the outage is the delay: none for a crash out of the blue
    base_delay: float = 0.05     # then doubling for a child that keeps dying young
    max_delay: float = 5.0
    stable_after: float = 10.0   # a child that lived this long was healthy
    quick_exits: int = 0

    def after_exit(self, lived: float) -> float:
        """The delay before the next start, for a child that ran `lived` seconds."""
        if lived >= self.stable_after:
            self.quick_exits = 0
        self.quick_exits += 1
        if self.quick_exits == 1:
            return self.first_delay
        return float(min(self.max_delay, self.base_delay * 2 ** (self.quick_exits - 2)))


@dataclass
class Outage:
    exit_code: int
    lived: float          # how long the child that died had run
    down: float | None    # death to the next child's `ready`; None if never ready


class Supervisor:
    def __init__(self, argv: list[str], policy: RestartPolicy | None = None,
                 on_outage: Callable[[Outage], None] | None = None) -> None:
        if not argv:
            raise ValueError("supervise: no command to run")
        self.argv = argv
        self.policy = policy or RestartPolicy()
        self.on_outage = on_outage
        self.child: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.starts = 0
        self.outages: list[Outage] = []
        self._stopping = False

    def signal_child(self, sig: int) -> bool:
        """Pass a signal on (only to a child that said ready: before its handlers are set,
        a SIGHUP would kill it)."""
        if self.child is None or self.child.returncode is not None or not self.ready.is_set():
            return False
        with contextlib.suppress(ProcessLookupError):
            self.child.send_signal(sig)
        return True

    async def run(self) -> None:
        died_at: float | None = None
        last_code = 0
        last_lived = 0.0
        while not self._stopping:
            started = time.monotonic()
            self.ready.clear()
            self.child = await asyncio.create_subprocess_exec(
                *self.argv, stdout=asyncio.subprocess.PIPE)
            self.starts += 1
            assert self.child.stdout is not None
            line = await self.child.stdout.readline()
            if line.strip() == b"ready":
                self.ready.set()
                log.info("%s %d ready", Path(self.argv[0]).name, self.child.pid)
            if died_at is not None:
                down = time.monotonic() - died_at if self.ready.is_set() else None
                self._outage(Outage(last_code, last_lived, down))
            code = await self.child.wait()
            died_at = time.monotonic()
            last_code, last_lived = code, died_at - started
            if self._stopping:
                break
            delay = self.policy.after_exit(last_lived)
            log.error("child %d exited with %s after %.1fs; restarting in %.2fs",
                      self.child.pid, code, last_lived, delay)
            if delay:
                await asyncio.sleep(delay)

    def _outage(self, outage: Outage) -> None:
        self.outages.append(outage)
        if outage.down is not None:
            log.info("engine back %.3fs after it died", outage.down)
        if self.on_outage is not None:
            self.on_outage(outage)

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
