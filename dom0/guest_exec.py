"""dom0's side of `exec` over xenstore: the thin async shell around `dom0.xenstore.execproto`.

For the `xen` backend, where dom0 has no other way into a guest: write a request under the
guest's `hyperwall/exec/<n>`, wait for its agent's `rc`, read and check the result, and
remove both directories whatever happened.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from dom0.backends.base import BackendError, ExecResult
from dom0.layout import dom_path
from dom0.xenstore import execproto as xp

GRACE = 5.0        # beyond the command's own timeout: the agent's start-up and writing back


class Dom0Store(Protocol):
    async def read(self, path: str) -> bytes | None: ...
    async def ls(self, path: str) -> list[str]: ...
    async def rm(self, path: str) -> None: ...
    async def write_nodes(self, nodes: Iterable[Any]) -> None: ...
    async def wait_value(self, path: str, pred: Callable[[bytes | None], bool],
                         timeout: float) -> bytes | None: ...


_last_id = 0


async def _fresh_id(store: Dom0Store, domid: int) -> int:
    global _last_id
    base = dom_path(domid)
    present = await store.ls(f"{base}/{xp.REQUESTS}") + await store.ls(f"{base}/{xp.RESULTS}")
    # No await between choosing and recording: concurrent calls in this process differ.
    _last_id = xp.next_request_id(present, _last_id, time.time_ns() // 1000)
    return _last_id


async def _read_all(store: Dom0Store, base: str, keys: Iterable[str]) -> dict[str, bytes | None]:
    return {key: await store.read(f"{base}/{key}") for key in keys}


async def exec_in_domain(store: Dom0Store, domid: int, argv: list[str], *,
                         timeout: float = 60.0, stdin: bytes | None = None,
                         grace: float = GRACE) -> ExecResult:
    """Run `argv` in domain `domid` through its agent. A stream over the protocol's cap comes
    back cut, with a note at the end of stderr saying so."""
    try:
        req_id = await _fresh_id(store, domid)
        nodes = xp.request_nodes(domid, req_id, argv, timeout, stdin)
    except xp.ExecProtocolError as e:
        raise BackendError(f"exec in domain {domid}: {e}") from None
    req, res = xp.request_dir(domid, req_id), xp.result_dir(domid, req_id)
    try:
        await store.write_nodes(nodes)
        rc = await store.wait_value(f"{res}/rc", lambda v: v is not None, timeout + grace)
        if rc is None:
            raise BackendError(f"exec in domain {domid}: its agent did not answer within "
                               f"{timeout + grace:g} s (request {req_id}, {argv[0]!r})")
        header = await _read_all(store, res, xp.RESULT_HEADER_KEYS)
        try:
            values = header | await _read_all(store, res, xp.result_chunk_keys(header))
            out = xp.decode_result(values)
        except xp.ExecProtocolError as e:
            raise BackendError(f"exec in domain {domid}: bad result from its agent: "
                               f"{res}/{e}") from None
    finally:
        # The request first: an agent must never see the request once its result is gone
        # (it would run it again).
        await store.rm(req)
        await store.rm(res)
    stderr = out.stderr
    for name, cut in (("stdout", out.stdout_truncated), ("stderr", out.stderr_truncated)):
        if cut:
            stderr += (f"\n[hyperwall: {name} truncated to its first {xp.OUTPUT_CAP} "
                       "bytes]\n").encode()
    return ExecResult(out.rc, out.stdout, stderr)
