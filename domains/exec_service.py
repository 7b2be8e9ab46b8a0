"""The agent's side of `exec` over xenstore: run what dom0 asks under `hyperwall/exec/<n>`.

The protocol (keys, limits, exit statuses) is `dom0.xenstore.execproto`'s. This loop watches the
request directory, starts each complete request once (an id whose `argv` exists), runs it
with asyncio's subprocesses (an argv list, never a shell) in its own session so that a
timeout kills its children too, and writes the result under `data/hyperwall/exec/<n>/`
with `rc` last. Requests run concurrently. A request that dom0 removes while it runs (it
gave up waiting) has its command killed and no result written.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Protocol

from dom0.xenstore.execproto import (
    OUTPUT_CAP,
    RC_LOST,
    RC_NOEXEC,
    RC_NOTFOUND,
    RC_TIMEOUT,
    RC_USAGE,
    REQUEST_HEADER_KEYS,
    REQUESTS,
    RESULTS,
    ExecProtocolError,
    ExecRequest,
    encode_result,
    is_request_id,
    parse_request,
    request_chunk_keys,
    returncode,
)

log = logging.getLogger("hyperwall.agent.exec")
DRAIN_AFTER_KILL = 1.0     # how long to wait for the pipes to close once the group is killed


class ExecStore(Protocol):
    async def read(self, path: str) -> bytes | None: ...
    async def write(self, path: str, value: str) -> None: ...
    async def ls(self, path: str) -> list[str]: ...
    def watch(self, path: str) -> AsyncIterator[str]: ...


class _Capped:
    """A stream's bytes, keeping one more than the cap (so truncation shows) and draining
    the rest so that the command never blocks on a full pipe."""

    def __init__(self, cap: int = OUTPUT_CAP) -> None:
        self.data = bytearray()
        self.cap = cap

    async def collect(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            room = self.cap + 1 - len(self.data)
            if room > 0:
                self.data += chunk[:room]


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    if proc.stdin is None:
        return
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass      # the command stopped reading: as with a pipe in a shell
    finally:
        proc.stdin.close()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_command(req: ExecRequest) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of one request, as a shell would report them."""
    name = req.argv[0]
    try:
        proc = await asyncio.create_subprocess_exec(
            *req.argv, stdin=asyncio.subprocess.PIPE if req.stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, cwd="/")
    except FileNotFoundError as e:
        return RC_NOTFOUND, b"", f"hyperwall-exec: {name}: {e.strerror}\n".encode()
    except OSError as e:
        return RC_NOEXEC, b"", f"hyperwall-exec: {name}: {e.strerror or e}\n".encode()
    out, err = _Capped(), _Capped()
    io = [asyncio.ensure_future(out.collect(proc.stdout)),
          asyncio.ensure_future(err.collect(proc.stderr)),
          asyncio.ensure_future(_feed(proc, req.stdin)),
          asyncio.ensure_future(proc.wait())]
    readers = io[:2]
    timed_out = False
    try:
        # Until the command has exited and every holder of its pipes (a child it left
        # behind) has closed them. asyncio.wait, not gather: a timeout must not cancel
        # the readers, which still hold what was read.
        _, pending = await asyncio.wait([io[3], *readers], timeout=req.timeout)
        if pending:
            timed_out = proc.returncode is None
            _kill_group(proc)
            await proc.wait()
            await asyncio.wait(readers, timeout=DRAIN_AFTER_KILL)
    finally:
        if proc.returncode is None:     # cancelled: dom0 gave up, or the agent is stopping
            _kill_group(proc)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for task in io:
            task.cancel()
    stderr = bytes(err.data)
    if timed_out:
        stderr += f"hyperwall-exec: {name}: timed out after {req.timeout:g} s; killed\n".encode()
        return RC_TIMEOUT, bytes(out.data), stderr
    assert proc.returncode is not None
    return returncode(proc.returncode), bytes(out.data), stderr


async def _read_request(store: ExecStore, rid: str) -> ExecRequest:
    d = f"{REQUESTS}/{rid}"
    values = {key: await store.read(f"{d}/{key}") for key in REQUEST_HEADER_KEYS}
    for key in request_chunk_keys(values):
        values[key] = await store.read(f"{d}/{key}")
    return parse_request(values)


async def serve_one(store: ExecStore, rid: str) -> None:
    """Answer request `rid` once: nothing if it has an `rc` already (answered before an
    agent restart), rc 125 if it had started then (not run twice)."""
    res = f"{RESULTS}/{rid}"
    if await store.read(f"{res}/rc") is not None:
        return
    if await store.read(f"{res}/started") is not None:
        rc, stdout, stderr = RC_LOST, b"", (b"hyperwall-exec: the agent restarted while this "
                                            b"request ran; it is not run again\n")
    else:
        try:
            req = await _read_request(store, rid)
        except ExecProtocolError as e:
            log.warning("exec request %s refused: %s", rid, e)
            rc, stdout, stderr = RC_USAGE, b"", f"hyperwall-exec: bad request: {e}\n".encode()
        else:
            await store.write(f"{res}/started", f"{time.time():.0f}")
            rc, stdout, stderr = await run_command(req)
            log.info("exec request %s: %s -> %d", rid, req.argv[0], rc)
    if await store.read(f"{REQUESTS}/{rid}/argv") is None:
        return          # dom0 stopped waiting and removed it: nobody will read a result
    for key, value in encode_result(rc, stdout, stderr):
        await store.write(f"{res}/{key}", value)


async def serve_exec(store: ExecStore) -> None:
    """Serve dom0's exec requests until cancelled."""
    tasks: dict[str, asyncio.Task[None]] = {}
    try:
        async for _ in store.watch(REQUESTS):
            present = {rid for rid in await store.ls(REQUESTS) if is_request_id(rid)}
            for rid in list(tasks):
                if rid not in present:          # removed by dom0: forget it (stop it)
                    tasks.pop(rid).cancel()
            for rid in sorted(present - tasks.keys()):
                if await store.read(f"{REQUESTS}/{rid}/argv") is None:
                    continue                    # not complete yet
                tasks[rid] = task = asyncio.ensure_future(serve_one(store, rid))
                task.add_done_callback(_report)
    finally:
        for task in tasks.values():
            task.cancel()


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("exec request failed: %s", task.exception())
