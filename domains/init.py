"""A domain's PID 1: runs the agent, keeps it running, reaps orphans, stops on SIGTERM.

Usage: `python -I -S domains/init.py [--power-off] [--preload] AGENT [ARG...]`. Standard
library only (and `domains.restart`, the restart policy every supervisor here runs, itself
standard library only), and run with `-S`, so it starts in a few milliseconds and does not
depend on the venv's site setup.

`--preload` is for an agent that is Python, `PYTHON -S -m MODULE [ARG...]`: init imports
MODULE once (from the PYTHONPATH it was given) and starts the agent by forking itself and
running MODULE as `__main__`, instead of a new interpreter that imports it all again. The
agent's imports were most of a domain's start, and a restart after a crash forks the same
clean state again: init itself never runs the agent's code, only imports it. The pages
stay shared between init and the agent, so the domain holds one copy of them.

`--power-off` is for the PID 1 of a whole machine (a Xen guest), whose exit would panic its
kernel: once stopped, init powers the machine off (after SIGTERM or the agent's own exit)
or reboots it (after SIGINT, as ctrl-alt-del), as any init does.

As PID 1 of a PID namespace it must reap every orphan, and it only receives the signals
it has asked for. Signals are blocked and taken synchronously with `sigtimedwait`, so no
handler races the main loop; the agent is started with an empty signal mask.

The agent exiting 0 means the domain was asked to power off (`control/shutdown`): init
exits 0 too. If the agent dies otherwise it is restarted after a backoff that doubles
from 0.5 s up to 30 s and starts over once a run lasted a minute. On SIGTERM (or SIGINT)
init passes SIGTERM to the agent, gives it `STOP_GRACE` seconds before SIGKILL, and exits
0 once it is gone; the kernel then kills whatever else was left in the namespace.
Everything init says goes to stdout, which the backend keeps as the console log.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

if __name__ == "__main__":   # a script under -I: the checkout is not on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from domains.restart import Backoff, Restarts  # noqa: E402

AGENT_BACKOFF = Backoff(first=0.5, base=1.0, cap=30.0, stable_after=60.0)
STOP_GRACE = 10.0
SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
# The first launch of the agent ends in one of these; the backend's start waits for it.
LAUNCHED = "init: started agent"
NOT_LAUNCHED = "init: cannot start"


def log(message: str) -> None:
    print(f"init: {message}", flush=True)


class Init:
    def __init__(self, argv: list[str], preloaded: str | None = None) -> None:
        self.argv = argv
        self.preloaded = preloaded   # the module forked instead of executing argv
        self.agent: int | None = None
        self.restarts = Restarts("agent", AGENT_BACKOFF)
        self.restart_at = 0.0
        self.stop_deadline: float | None = None
        self.stop_signal = 0

    def spawn(self) -> None:
        try:
            if self.preloaded is not None:
                self.agent = fork_module(self.preloaded, self.argv[4:])
            else:
                # posix_spawnp searches PATH as `which` would; shutil (and the re it
                # imports) was a third of init's start, which every domain's start waits on.
                self.agent = os.posix_spawnp(self.argv[0], self.argv, os.environ,
                                             setsigmask=())
        except OSError as e:
            now = time.monotonic()
            failed = self.restarts.failed(now, f"{self.argv[0]}: {e}")
            print(f"{NOT_LAUNCHED} {failed.line}", flush=True)
            self.restart_at = now + (failed.delay or 0.0)
            return
        self.restarts.started(time.monotonic())
        print(f"{LAUNCHED} pid {self.agent}: {' '.join(self.argv)}", flush=True)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.agent:
                self.agent = None
                now = time.monotonic()
                # Exiting 0 is the agent's power-off; during a stop, its answer to SIGTERM.
                ended = self.restarts.exited(now, os.waitstatus_to_exitcode(status),
                                             restart=self.stop_deadline is None and status != 0)
                log(ended.line)
                if ended.delay is None:
                    self.stop_deadline = self.stop_deadline or now
                else:
                    self.restart_at = now + ended.delay

    def stop(self) -> None:
        if self.stop_deadline is None:
            log("stopping")
            self.stop_deadline = time.monotonic() + STOP_GRACE
            if self.agent is not None:
                os.kill(self.agent, signal.SIGTERM)

    def timeout(self, now: float) -> float | None:
        if self.stop_deadline is not None:
            return max(self.stop_deadline - now, 0.0)
        if self.agent is None:
            return max(self.restart_at - now, 0.0)
        return None

    def run(self) -> int:
        while True:
            now = time.monotonic()
            if self.stop_deadline is not None:
                if self.agent is None:
                    log("stopped")
                    return 0
                if now >= self.stop_deadline:
                    log("agent ignored SIGTERM, killing it")
                    os.kill(self.agent, signal.SIGKILL)
                    self.stop_deadline = now + STOP_GRACE
            elif self.agent is None and now >= self.restart_at:
                self.spawn()
                continue
            wait = self.timeout(now)
            info = (signal.sigwaitinfo(SIGNALS) if wait is None
                    else signal.sigtimedwait(SIGNALS, wait))
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                self.stop_signal = self.stop_signal or info.si_signo
                self.stop()
            self.reap()


def preload(argv: list[str]) -> str:
    """Import the module of an agent command `PYTHON -S -m MODULE [ARG...]`; its name.
    A module that fails to import is reported and left to the agent's own start, which
    fails the same way, visibly, and is restarted with backoff as any agent is."""
    if len(argv) < 4 or argv[1:3] != ["-S", "-m"]:
        raise ValueError(f"--preload needs an agent `PYTHON -S -m MODULE`, not {argv}")
    # Run with -I, init ignored PYTHONPATH; the agent it stands for would have used it.
    sys.path[1:1] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    import importlib
    import runpy  # noqa: F401  (the fork runs the module with it; imported once, here)
    try:
        importlib.import_module(argv[3])
    except Exception as e:   # noqa: BLE001  (the agent's start reports it in full)
        log(f"cannot preload {argv[3]}: {e!r}")
    return argv[3]


def fork_module(module: str, args: list[str]) -> int:
    """A child running `module` as `__main__`, as `python -S -m module args` would."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        # What PYTHONUNBUFFERED gave the agent: its lines reach the console as written.
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True, write_through=True)  # type: ignore[union-attr]
        import runpy
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:   # noqa: BLE001  (a child of init must never return into init)
        import traceback
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# reboot(2) commands (linux/reboot.h).
POWER_OFF, RESTART = 0x4321FEDC, 0x01234567


def end_machine(command: int) -> None:
    import ctypes
    os.sync()
    ctypes.CDLL(None, use_errno=True).reboot(command)
    raise OSError(ctypes.get_errno(), "reboot(2) failed")


def main(argv: list[str]) -> int:
    machine = bool(argv) and argv[0] == "--power-off"
    argv = argv[1:] if machine else argv
    preloading = bool(argv) and argv[0] == "--preload"
    argv = argv[1:] if preloading else argv
    if not argv:
        print("usage: init.py [--power-off] [--preload] AGENT [ARG...]", file=sys.stderr)
        return 2
    # A blocked signal is queued, never dropped, even for a namespace's PID 1.
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    log(f"pid {os.getpid()} on {os.uname().nodename}")
    try:
        module = preload(argv) if preloading else None
    except ValueError as e:
        print(f"init: {e}", file=sys.stderr)
        return 2
    init = Init(argv, module)
    code = init.run()
    if machine:
        log("rebooting" if init.stop_signal == signal.SIGINT else "powering off")
        end_machine(RESTART if init.stop_signal == signal.SIGINT else POWER_OFF)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
