"""The agent's exec loop and dom0's client together, over an in-memory tree with xenstore's
watch semantics (initial firing, subtree changes, removals). The same two sides run against
the real daemon, with the guest on its own domain socket, in
tests/integration/test_exec_xenstore.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dom0.backends.base import BackendError
from dom0.guest_exec import exec_in_domain
from dom0.xenstore import execproto as xp
from domains.exec_service import serve_exec

GUEST = 5
PY = sys.executable


class Tree:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.watchers: list[tuple[str, asyncio.Queue[str]]] = []

    def _fire(self, path: str) -> None:
        for prefix, q in self.watchers:
            if path == prefix or path.startswith(prefix + "/") or prefix.startswith(path + "/"):
                q.put_nowait(path)

    def set(self, path: str, value: str | bytes) -> None:
        self.data[path] = value.encode() if isinstance(value, str) else value
        self._fire(path)

    def rm(self, path: str) -> None:
        gone = [p for p in self.data if p == path or p.startswith(path + "/")]
        for p in gone:
            del self.data[p]
        if gone:
            self._fire(path)

    def ls(self, path: str) -> list[str]:
        prefix = path + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.data if p.startswith(prefix)})

    async def watch(self, path: str) -> AsyncIterator[str]:
        q: asyncio.Queue[str] = asyncio.Queue()
        entry = (path, q)
        self.watchers.append(entry)
        q.put_nowait(path)          # xenstore fires every watch once at once
        try:
            while True:
                yield await q.get()
        finally:
            self.watchers.remove(entry)


class GuestView:
    """The agent's view: relative paths under /local/domain/<id>."""

    def __init__(self, tree: Tree, domid: int) -> None:
        self.tree, self.base = tree, f"/local/domain/{domid}"

    def abs(self, path: str) -> str:
        return path if path.startswith("/") else f"{self.base}/{path}"

    async def read(self, path: str) -> bytes | None:
        return self.tree.data.get(self.abs(path))

    async def write(self, path: str, value: str) -> None:
        self.tree.set(self.abs(path), value)

    async def ls(self, path: str) -> list[str]:
        return self.tree.ls(self.abs(path))

    def watch(self, path: str) -> AsyncIterator[str]:
        return self.tree.watch(self.abs(path))


class Dom0View:
    """dom0's view: absolute paths, plus the calls of AsyncXenStore that exec uses."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.transactions: list[list[str]] = []

    async def read(self, path: str) -> bytes | None:
        return self.tree.data.get(path)

    async def ls(self, path: str) -> list[str]:
        return self.tree.ls(path)

    async def rm(self, path: str) -> None:
        self.tree.rm(path)

    async def write_nodes(self, nodes: Iterable[Any]) -> None:
        nodes = list(nodes)
        self.transactions.append([n.path for n in nodes])
        # One transaction: every value in place before any watch fires.
        for n in nodes:
            self.tree.data[n.path] = (n.value or "").encode()
        for n in nodes:
            self.tree._fire(n.path)

    async def wait_value(self, path: str, pred: Callable[[bytes | None], bool],
                         timeout: float) -> bytes | None:
        value = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async for _ in self.tree.watch(path):
                    value = self.tree.data.get(path)
                    if pred(value):
                        return value
        return value


@pytest.fixture
def tree() -> Iterator[Tree]:
    yield Tree()


@pytest.fixture
async def agent(tree: Tree) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.ensure_future(serve_exec(GuestView(tree, GUEST)))
    yield task
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def leftovers(tree: Tree) -> list[str]:
    return [p for p in tree.data if "/exec/" in p]


async def test_echo_and_cleanup(tree: Tree, agent: asyncio.Task[None]) -> None:
    dom0 = Dom0View(tree)
    result = await exec_in_domain(dom0, GUEST, ["echo", "hi"], timeout=5)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hi\n", b"")
    assert len(dom0.transactions) == 1 and dom0.transactions[0][-1].endswith("/argv")
    assert leftovers(tree) == [], "request and result are both removed"


async def test_exit_status_stdin_and_binary(tree: Tree, agent: asyncio.Task[None]) -> None:
    dom0 = Dom0View(tree)
    r = await exec_in_domain(dom0, GUEST, ["sh", "-c", "echo oops >&2; exit 3"], timeout=5)
    assert (r.returncode, r.stdout, r.stderr) == (3, b"", b"oops\n")
    data = bytes(range(256)) * 40
    r = await exec_in_domain(dom0, GUEST, ["cat"], timeout=5, stdin=data)
    assert r.returncode == 0 and r.stdout == data


async def test_concurrent_requests_each_get_their_own_answer(
        tree: Tree, agent: asyncio.Task[None]) -> None:
    dom0 = Dom0View(tree)
    results = await asyncio.gather(*(
        exec_in_domain(dom0, GUEST, ["sh", "-c", f"echo {i}"], timeout=5) for i in range(8)))
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(8)]


async def test_large_output_is_truncated_and_says_so(tree: Tree,
                                                     agent: asyncio.Task[None]) -> None:
    r = await exec_in_domain(Dom0View(tree), GUEST,
                             [PY, "-c", "import sys; sys.stdout.write('x' * 200000)"], timeout=10)
    assert r.returncode == 0 and r.stdout == b"x" * xp.OUTPUT_CAP
    assert b"stdout truncated" in r.stderr


async def test_not_found_and_timeout(tree: Tree, agent: asyncio.Task[None]) -> None:
    dom0 = Dom0View(tree)
    r = await exec_in_domain(dom0, GUEST, ["/nonexistent/program"], timeout=5)
    assert r.returncode == 127 and b"/nonexistent/program" in r.stderr
    r = await exec_in_domain(dom0, GUEST, ["sleep", "10"], timeout=0.5)
    assert r.returncode == 124 and b"timed out after 0.5 s" in r.stderr


async def test_a_child_left_holding_the_pipes_is_killed_at_the_timeout(
        tree: Tree, agent: asyncio.Task[None]) -> None:
    # sh exits at once with 4, but its background child keeps stdout open: the agent waits
    # up to the timeout for the pipes, then kills the group, keeping sh's status and output.
    r = await exec_in_domain(Dom0View(tree), GUEST,
                             ["sh", "-c", "echo before; sleep 30 & exit 4"], timeout=0.5)
    assert (r.returncode, r.stdout, r.stderr) == (4, b"before\n", b"")


async def test_no_agent_is_a_backend_error(tree: Tree) -> None:
    with pytest.raises(BackendError, match="did not answer within 0.3 s"):
        await exec_in_domain(Dom0View(tree), GUEST, ["true"], timeout=0.2, grace=0.1)
    assert leftovers(tree) == []


async def test_bad_result_from_the_guest_is_a_backend_error(tree: Tree) -> None:
    res = f"/local/domain/{GUEST}/{xp.RESULTS}"

    async def forger() -> None:
        # A guest that answers with garbage instead of running anything.
        async for _ in tree.watch(f"/local/domain/{GUEST}/{xp.REQUESTS}"):
            for rid in tree.ls(f"/local/domain/{GUEST}/{xp.REQUESTS}"):
                tree.set(f"{res}/{rid}/stdout-chunks", "1")
                tree.set(f"{res}/{rid}/stdout/0", "%%%")
                tree.set(f"{res}/{rid}/stderr-chunks", "0")
                tree.set(f"{res}/{rid}/rc", "0")

    task = asyncio.ensure_future(forger())
    try:
        with pytest.raises(BackendError, match=r"bad result .*/stdout/0: is not base64"):
            await exec_in_domain(Dom0View(tree), GUEST, ["true"], timeout=2)
    finally:
        task.cancel()
    assert leftovers(tree) == []


async def test_malformed_request_gets_rc_2_and_the_loop_goes_on(
        tree: Tree, agent: asyncio.Task[None]) -> None:
    req = f"/local/domain/{GUEST}/{xp.REQUESTS}/9"
    res = f"/local/domain/{GUEST}/{xp.RESULTS}/9"
    tree.set(f"{req}/timeout", "1")
    tree.set(f"{req}/argv", '"echo hi"')
    dom0 = Dom0View(tree)
    assert await dom0.wait_value(f"{res}/rc", lambda v: v is not None, 5) == b"2"
    header = {k: tree.data.get(f"{res}/{k}") for k in xp.RESULT_HEADER_KEYS}
    values = header | {k: tree.data.get(f"{res}/{k}") for k in xp.result_chunk_keys(header)}
    assert b"argv: must be a JSON array" in xp.decode_result(values).stderr
    r = await exec_in_domain(dom0, GUEST, ["echo", "still here"], timeout=5)
    assert r.stdout == b"still here\n" and not agent.done()


async def test_a_request_is_run_once_across_agent_restarts(tree: Tree) -> None:
    base = f"/local/domain/{GUEST}"
    # Answered before the restart: left alone.
    tree.set(f"{base}/{xp.REQUESTS}/1/timeout", "1")
    tree.set(f"{base}/{xp.REQUESTS}/1/argv", '["sh", "-c", "echo ran >> /dev/null; exit 9"]')
    tree.set(f"{base}/{xp.RESULTS}/1/rc", "0")
    # Started before the restart, never answered: reported, not run again.
    tree.set(f"{base}/{xp.REQUESTS}/2/timeout", "1")
    tree.set(f"{base}/{xp.REQUESTS}/2/argv", '["false"]')
    tree.set(f"{base}/{xp.RESULTS}/2/started", "1")
    # Not complete (no argv): ignored until it is.
    tree.set(f"{base}/{xp.REQUESTS}/3/timeout", "1")
    task = asyncio.ensure_future(serve_exec(GuestView(tree, GUEST)))
    try:
        dom0 = Dom0View(tree)
        assert await dom0.wait_value(f"{base}/{xp.RESULTS}/2/rc", lambda v: v is not None,
                                     5) == b"125"
        assert tree.data[f"{base}/{xp.RESULTS}/1/rc"] == b"0"
        assert f"{base}/{xp.RESULTS}/3/started" not in tree.data
        tree.set(f"{base}/{xp.REQUESTS}/3/argv", '["true"]')
        assert await dom0.wait_value(f"{base}/{xp.RESULTS}/3/rc", lambda v: v is not None,
                                     5) == b"0"
        assert tree.data[f"{base}/{xp.RESULTS}/1/rc"] == b"0"
    finally:
        task.cancel()


async def wait_exit(pid: int, timeout: float) -> None:
    """Until process `pid` (not our child) has gone, through a pidfd: an event, not a poll."""
    fd = os.pidfd_open(pid)
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, gone.set)
    try:
        async with asyncio.timeout(timeout):
            await gone.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_a_request_dom0_removes_is_stopped(tree: Tree, agent: asyncio.Task[None],
                                                 tmp_path: Path) -> None:
    base = f"/local/domain/{GUEST}"
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    dom0 = Dom0View(tree)
    await dom0.write_nodes(xp.request_nodes(
        GUEST, 4, ["sh", "-c", f"echo $$ > {fifo}; exec sleep 30"], 60))
    async with asyncio.timeout(5):
        pid = int(await asyncio.to_thread(fifo.read_text))
    await dom0.rm(xp.request_dir(GUEST, 4))
    await dom0.rm(xp.result_dir(GUEST, 4))
    await wait_exit(pid, 5)             # the agent killed it
    r = await exec_in_domain(dom0, GUEST, ["true"], timeout=5)
    assert r.returncode == 0
    assert f"{base}/{xp.RESULTS}/4/rc" not in tree.data, "no result for a removed request"
