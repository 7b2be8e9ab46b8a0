"""The one restart policy, sans-IO: when a program that died is started again, how its
outages are counted, and what is said about it. Times and exit codes in, delays and log
lines out; `domains.supervise` runs it for asyncio programs (the agent's services, the
controller's ipsd, `python -m domains.supervise`), `domains/init.py` runs it as PID 1.

A child that dies is started again after `first` seconds; one that keeps dying young (it
ran less than `stable_after`) after `base` seconds, doubling each time up to `cap`, so a
crash loop does not eat the domain's CPU; a run of `stable_after` seconds was healthy and
starts the count over. Standard library only (no dataclasses either: init, run with `-S`,
imports this at every boot and must start in milliseconds).
"""
from __future__ import annotations

import signal


class Backoff:
    """A program's restart figures (seconds)."""

    __slots__ = ("first", "base", "cap", "stable_after")

    def __init__(self, first: float, base: float, cap: float, stable_after: float) -> None:
        if not (0 <= first and 0 < base <= cap and stable_after > 0):
            raise ValueError(f"backoff: want 0 <= first, 0 < base <= cap, stable_after > 0; "
                             f"got {first}, {base}, {cap}, {stable_after}")
        self.first = first
        self.base = base
        self.cap = cap
        self.stable_after = stable_after

    def delay(self, in_a_row: int) -> float:
        """The delay after the `in_a_row`th death with no healthy run between."""
        if in_a_row <= 1:
            return self.first
        return float(min(self.cap, self.base * 2 ** (in_a_row - 2)))


class Outage:
    """From a child's death to its successor's `ready`."""

    __slots__ = ("exit_code", "lived", "down")

    def __init__(self, exit_code: int, lived: float, down: float | None) -> None:
        self.exit_code = exit_code
        self.lived = lived    # how long the child that died had run
        self.down = down      # death to the next child's ready; None if that one never was

    def __repr__(self) -> str:
        return f"Outage(exit_code={self.exit_code}, lived={self.lived}, down={self.down})"


class Exit:
    """What to do about a death: start again after `delay` (None: do not), say `line`."""

    __slots__ = ("delay", "line", "outage")

    def __init__(self, delay: float | None, line: str, outage: Outage | None) -> None:
        self.delay = delay
        self.line = line
        self.outage = outage   # an earlier outage this death closed (its child never ready)


class Ready:
    __slots__ = ("line", "outage")

    def __init__(self, line: str, outage: Outage | None) -> None:
        self.line = line
        self.outage = outage   # the outage this ready ended, if a child had died before


def describe(code: int) -> str:
    """An exit as a returncode gives it (negative: the signal that killed it)."""
    if code >= 0:
        return f"exited with {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def seconds(delay: float) -> str:
    if not delay:
        return "at once"
    return f"in {delay:.1f}s" if round(delay, 1) == delay else f"in {delay:.2f}s"


class Restarts:
    """One supervised program's lives: starts, deaths, outages, the next delay."""

    def __init__(self, name: str, backoff: Backoff) -> None:
        self.name = name
        self.backoff = backoff
        self.starts = 0
        self.in_a_row = 0     # deaths with no healthy run between (the start counts as one)
        self.outages: list[Outage] = []
        self._started_at = 0.0
        self._death: tuple[float, int, float] | None = None   # (when, code, lived), not yet over

    def started(self, now: float) -> None:
        self.starts += 1
        self._started_at = now

    def ready(self, now: float, pid: int) -> Ready:
        """The child `pid` started last runs (for an engine: holds its queue)."""
        if self._death is None:
            return Ready(f"{self.name} {pid} running", None)
        died_at, code, lived = self._death
        self._death = None
        outage = Outage(code, lived, now - died_at)
        self.outages.append(outage)
        return Ready(f"{self.name} {pid} running, {outage.down:.3f}s after the last one died",
                     outage)

    def exited(self, now: float, code: int, restart: bool = True) -> Exit:
        """The child started last ended with returncode `code`; `restart` False when it
        was asked to (a stop, a power-off): then it is not an outage and not counted."""
        lived = now - self._started_at
        said = f"{self.name} {describe(code)} after {lived:.1f}s"
        if not restart:
            return Exit(None, said, None)
        unready = self._close_unready()
        self._death = (now, code, lived)
        return self._again(lived, said, unready)

    def failed(self, now: float, why: str) -> Exit:
        """The child could not be started at all (`why`): a death at birth."""
        return self._again(0.0, why, self._close_unready())

    def _close_unready(self) -> Outage | None:
        """A death whose successor dies without saying ready: an outage with no end."""
        if self._death is None:
            return None
        _, code, lived = self._death
        self._death = None
        outage = Outage(code, lived, None)
        self.outages.append(outage)
        return outage

    def _again(self, lived: float, said: str, outage: Outage | None) -> Exit:
        if lived >= self.backoff.stable_after:
            self.in_a_row = 0
        self.in_a_row += 1
        if self.in_a_row > 1:
            said += (f", {self.in_a_row} deaths in a row with no run of "
                     f"{self.backoff.stable_after:g}s between")
        delay = self.backoff.delay(self.in_a_row)
        return Exit(delay, f"{said}; restarting {self.name} {seconds(delay)}", outage)
