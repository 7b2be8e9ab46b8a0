"""Which NFQUEUE numbers the ipsd workers hold: one worker per queue of `--queue-balance A:B`.

Pure planning for the multi-worker supervisor (issue 15 item 3); not wired into ipsd yet.
"""
from __future__ import annotations

import os


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
