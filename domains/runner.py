"""The one way dom0 runs system commands (`ip`, `nft`, `iptables`, `bwrap`, `nsenter`, ...).

Commands are argv lists, never shell strings. A failure raises `CommandError` naming the
command, its exit status and its stderr, so a broken step says what broke without a
traceback hunt. `netns` runs the command inside a named network namespace through
`ip netns exec`.
"""
from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_TIMEOUT = 30.0


class CommandError(RuntimeError):
    """A command failed or timed out; carries what ran and what it said."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: bytes,
                 reason: str = "") -> None:
        self.argv, self.returncode, self.stderr = list(argv), returncode, stderr
        said = stderr.decode(errors="replace").strip()
        why = reason or f"exited with {returncode}"
        super().__init__(f"`{shlex.join(self.argv)}` {why}" + (f": {said}" if said else ""))


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes


def full_argv(argv: Sequence[str], netns: str | None) -> list[str]:
    if not argv:
        raise ValueError("empty command")
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def _finish(argv: list[str], returncode: int, out: bytes, err: bytes, check: bool) -> Completed:
    if check and returncode != 0:
        raise CommandError(argv, returncode, err)
    return Completed(argv, returncode, out, err)


async def run(argv: Sequence[str], *, input: bytes | None = None,
              timeout: float = DEFAULT_TIMEOUT, check: bool = True, netns: str | None = None,
              env: dict[str, str] | None = None) -> Completed:
    """Run a command to completion; its output is captured, stdin is `input` or empty."""
    cmd = full_argv(argv, netns)
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            start_new_session=True)
    except OSError as e:
        raise CommandError(cmd, None, b"", f"could not start: {e}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    except TimeoutError:
        # The whole group: what the command forked may hold its pipes open (asyncio waits
        # for them to close), and nsenter's child lives on after nsenter itself.
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise CommandError(cmd, None, b"", f"timed out after {timeout}s") from None
    assert proc.returncode is not None
    return _finish(cmd, proc.returncode, out, err, check)


def run_sync(argv: Sequence[str], *, input: bytes | None = None,
             timeout: float = DEFAULT_TIMEOUT, check: bool = True,
             netns: str | None = None) -> Completed:
    """`run` for tools and tests that have no event loop."""
    cmd = full_argv(argv, netns)
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except OSError as e:
        raise CommandError(cmd, None, b"", f"could not start: {e}") from None
    except subprocess.TimeoutExpired:
        raise CommandError(cmd, None, b"", f"timed out after {timeout}s") from None
    return _finish(cmd, proc.returncode, proc.stdout, proc.stderr, check)
