"""Which NFQUEUE numbers the ipsd workers hold: one worker per queue of `--queue-balance A:B`.

Pure planning for the pool sys-sec's controller runs (issue 15 item 3): which queue each
worker holds, each worker's command line, and one view of all workers' counters.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def default_workers() -> int:
    """One worker per core this process may run on (affinity, not the machine's count:
    a pinned daemon gains nothing from workers it cannot schedule)."""
    return max(1, len(os.sched_getaffinity(0)))


def parse_queue_balance(text: str, where: str = "--queue-balance") -> range:
    """`A:B` (inclusive, as iptables writes it) -> the queue numbers; a clear error otherwise."""
    first, sep, last = text.partition(":")
    try:
        a, b = int(first), int(last if sep else first)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not A:B with whole numbers") from None
    if not 0 <= a <= b <= 65535:
        raise ValueError(f"{where}: {text!r} needs 0 <= A <= B <= 65535")
    return range(a, b + 1)


def plan_queues(balance: range, workers: int) -> list[int]:
    """The queue each worker binds: exactly one worker per queue, since a queue nobody holds
    forwards nothing (no bypass) and two holders cannot share one."""
    if workers != len(balance):
        raise ValueError(f"--workers {workers} does not match --queue-balance "
                         f"{balance.start}:{balance.stop - 1} ({len(balance)} queues)")
    return list(balance)


def worker_path(path: Path, queue: int) -> Path:
    """A worker's own socket or pidfile: the pool's, suffixed with the worker's queue."""
    return path.with_name(f"{path.name}.{queue}")


def worker_argv(argv: list[str], queue: int) -> list[str]:
    """One worker's command line from the pool's: its own `--queue`, and `--socket` and
    `--pidfile` suffixed `.N` (N its queue), since each worker answers its own counters and
    is signalled on its own."""
    out, i, queued = [], 0, False
    while i < len(argv):
        arg = argv[i]
        if arg in ("--queue", "--socket", "--pidfile"):
            if i + 1 == len(argv):
                raise ValueError(f"worker_argv: {arg} has no value")
            value = argv[i + 1]
            out += [arg, str(queue) if arg == "--queue" else str(worker_path(Path(value), queue))]
            queued = queued or arg == "--queue"
            i += 2
            continue
        out.append(arg)
        i += 1
    return out if queued else [*out, "--queue", str(queue)]


# Counters of one flow of work each worker does its share of: the pool's is their sum. The
# rest say how the workers stand, where the pool is only as far along as its last worker.
_SUMMED = ("packets", "bytes", "alerts", "drops", "flows_active", "rejected_flows",
           "undecodable", "bypassed_depth", "bypassed_clean", "reload_failures")
_LEAST = ("rules_loaded", "reloads", "uptime")


def merge_stats(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """One view of the pool from each worker's counters (ipsd's --socket JSON, in queue
    order): traffic counters and the `queue` block summed, rules/reloads/uptime the least
    (a reload is in force once every worker took it), `pid` the first worker's, and every
    worker's own counters under `workers`."""
    if not workers:
        raise ValueError("merge_stats: no worker's counters")
    merged: dict[str, Any] = {"pid": workers[0].get("pid", 0)}
    for key in _SUMMED:
        merged[key] = sum(w.get(key, 0) for w in workers)
    for key in _LEAST:
        merged[key] = min(w.get(key, 0) for w in workers)
    queue: dict[str, int] = {}
    for w in workers:
        for key, value in (w.get("queue") or {}).items():
            queue[key] = queue.get(key, 0) + value
    merged["queue"] = queue
    merged["workers"] = workers
    return merged
