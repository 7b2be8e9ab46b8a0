"""The verdict hand-off in IPS mode (sans-IO): the packet that completes a file waits for a
scanner's verdict, so an infected file's last bytes never reach the guest.

ipsd (`domains.syssec.ipsd`) asks `FileHold.hold` about the files that ended on a packet
the engine accepted. A file that ended whole (CLOSED) becomes a `ScanJob` the shell runs on
a FileScanner in a worker thread; the packet is held meanwhile, and so is every later
packet of its flow (`behind`), in order: a retransmission of the held segment, or the FIN
behind it, must not overtake the verdict. Other flows keep moving: nothing here blocks.

The outcome (`Release`) comes when every file of the hold has its result (`result`) or
the deadline passes (`expire`, a scanner that does not answer in time is an ERROR):

- all CLEAN: the held packets are accepted, in order;
- one INFECTED: they are dropped, both ends get a TCP reset, the flow's later packets are
  dropped by the engine (its `dropped` flow state), and an alert names the file (name,
  sha256 in `files`), the signature and, once ipsd annotates it, the domain;
- an ERROR (scanner down, hung, a file it could not scan): the owner's `fail` setting,
  "closed" (the default) as INFECTED, "open" accepts; an alert says which, either way.

A file that did not end whole cannot be vouched for either: one cut at the tracker's size
cap (netsec.files.CAPPED) or whose body did not decode (ERROR) is an ERROR result without
a scan, under the same setting. A file cut short by its flow ending needs no verdict: what
did not arrive cannot be delivered.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netsec import eve, reject
from netsec.engine import Verdict
from netsec.files import CAPPED, File, FileState
from netsec.filescan import Finding, Outcome, ScanResult
from netsec.packet import Packet

FAIL_MODES = ("closed", "open")
SCAN_TIMEOUT = 10.0          # seconds a held packet waits for its verdict by default
INFECTED_CATEGORY = "Malware detected in a file"
UNSCANNED_CATEGORY = "File not scanned"


@dataclass(frozen=True, slots=True)
class ScanJob:
    """One file for the shell to scan: `FileHold.result(token, index, ...)` takes the answer."""
    token: int
    index: int
    data: bytes
    name: str


@dataclass(frozen=True, slots=True)
class Release:
    """What becomes of a hold: its packets (the shell's handles, in arrival order) get
    `verdict`; `send` are the resets to send, `events` the EVE records (alerts, drops)."""
    handles: tuple[Any, ...]
    verdict: Verdict          # ACCEPT or DROP
    send: tuple[bytes, ...] = ()
    events: tuple[eve.Event, ...] = ()


@dataclass(slots=True)
class _Hold:
    token: int
    flow: Any
    pkt: Packet
    payload: bytes
    files: list[File]
    deadline: float
    handles: list[Any]
    results: dict[int, ScanResult] = field(default_factory=dict)


def unscannable(f: File) -> ScanResult | None:
    """A file's result without a scan, when it cannot be scanned whole; None when it can."""
    if f.state is FileState.ERROR:
        return ScanResult(Outcome.ERROR, error=f"{f.name}: not scanned: {f.error}")
    if f.state is FileState.TRUNCATED:
        return ScanResult(Outcome.ERROR, error=f"{f.name}: not scanned: larger than the "
                          f"{f.size}-byte file limit")
    return None


def needs_verdict(f: File) -> bool:
    """Whether the packet that ended `f` must wait for a verdict on it."""
    return f.state in (FileState.CLOSED, FileState.ERROR) or \
        (f.state is FileState.TRUNCATED and f.error == CAPPED)


class FileHold:
    def __init__(self, timeout: float = SCAN_TIMEOUT, fail: str = "closed") -> None:
        if fail not in FAIL_MODES:
            raise ValueError(f"scan-fail: {fail!r} is neither closed nor open")
        if not timeout > 0:
            raise ValueError(f"scan-timeout: {timeout!r} is not a positive number of seconds")
        self.timeout = timeout
        self.fail_open = fail == "open"
        self._holds: dict[int, _Hold] = {}          # token -> hold
        self._by_flow: dict[int, int] = {}          # flow_id -> token
        self._tokens = itertools.count(1)

    def __len__(self) -> int:
        return len(self._holds)

    def held(self, flow: Any) -> bool:
        return flow is not None and flow.flow_id in self._by_flow

    def hold(self, handle: Any, flow: Any, pkt: Packet, payload: bytes,
             files: Sequence[File], now: float) -> list[ScanJob] | None:
        """Hold the packet `handle` for the files that ended on it (those that need a
        verdict); the jobs to scan, or None when there is nothing to wait for. A flow
        already held takes the packet `behind` its hold instead."""
        if self.held(flow):
            self.behind(flow, handle)
            return []
        files = [f for f in files if needs_verdict(f)]
        if not files:
            return None
        token = next(self._tokens)
        h = _Hold(token, flow, pkt, payload, files, now + self.timeout, [handle])
        jobs = []
        for i, f in enumerate(files):
            result = unscannable(f)
            if result is None:
                jobs.append(ScanJob(token, i, bytes(f.data), f.name))
            else:
                h.results[i] = result
        self._holds[token] = h
        self._by_flow[flow.flow_id] = token
        return jobs

    def behind(self, flow: Any, handle: Any) -> None:
        """A later packet of a held flow waits with the hold, and shares its outcome."""
        self._holds[self._by_flow[flow.flow_id]].handles.append(handle)

    def ready(self) -> list[Release]:
        """Holds whose every result is in without a scan (unscannable files only)."""
        return [self._release(h) for h in list(self._holds.values())
                if len(h.results) == len(h.files)]

    def result(self, token: int, index: int, result: ScanResult) -> Release | None:
        """A scanner's answer; the release once the hold has all of them. An answer for a
        hold already released (it expired) is dropped."""
        h = self._holds.get(token)
        if h is None:
            return None
        h.results[index] = result
        return self._release(h) if len(h.results) == len(h.files) else None

    def expire(self, now: float) -> list[Release]:
        """Holds past their deadline: the files still unanswered are ERRORs."""
        out = []
        for h in list(self._holds.values()):
            if now >= h.deadline:
                for i, f in enumerate(h.files):
                    h.results.setdefault(i, ScanResult(
                        Outcome.ERROR, error=f"{f.name}: scanner did not answer within "
                        f"{self.timeout:g} s"))
                out.append(self._release(h))
        return out

    def next_deadline(self) -> float | None:
        return min((h.deadline for h in self._holds.values()), default=None)

    def _release(self, h: _Hold) -> Release:
        del self._holds[h.token]
        self._by_flow.pop(h.flow.flow_id, None)
        results = [h.results[i] for i in range(len(h.files))]
        infected = any(r.outcome is Outcome.INFECTED for r in results)
        errors = any(r.outcome is Outcome.ERROR for r in results)
        blocked = infected or (errors and not self.fail_open)
        events = [self._alert(h, f, r, blocked) for f, r in zip(h.files, results, strict=True)
                  if r.outcome is not Outcome.CLEAN]
        if not blocked:
            return Release(tuple(h.handles), Verdict.ACCEPT, (), tuple(events))
        h.flow.detect_state["dropped"] = True   # the engine drops the flow's later packets
        flow_id, app = h.flow.flow_id, h.flow.app_proto
        events.append(eve.drop(h.pkt, flow_id=flow_id, app_proto=app,
                               to_server=h.files[0].to_server))
        return Release(tuple(h.handles), Verdict.DROP, tuple(reject.tcp_resets(h.pkt)),
                       tuple(events))

    def _alert(self, h: _Hold, f: File, r: ScanResult, blocked: bool) -> eve.Event:
        if r.outcome is Outcome.INFECTED:
            found = r.findings or (Finding("scanner", "unnamed"),)
            msg = f"{found[0].scanner}: {found[0].signature} in {f.name or 'a file'}"
            category = INFECTED_CATEGORY
        else:
            msg = f"file not scanned ({'blocked' if blocked else 'passed'}): {r.error}"
            category = UNSCANNED_CATEGORY
        ev = eve.alert(h.pkt, action="blocked" if blocked else "allowed", gid=1, sid=0,
                       rev=0, msg=msg, category=category, severity=1,
                       flow_id=h.flow.flow_id, app_proto=h.flow.app_proto,
                       to_server=f.to_server, tx_id=f.tx_id)
        ev["files"] = [f.eve()]
        ev["scan"] = {"outcome": r.outcome.value, "error": r.error,
                      "findings": [{"scanner": x.scanner, "signature": x.signature}
                                   for x in r.findings]}
        return ev
