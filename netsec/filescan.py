"""What a file scanner says of a file (pure): the contract between the files the engine
reassembles from flows (in flight) or dom0 shows sys-sec of a domain's tree (at rest) and
the scanners sys-sec runs (ClamAV's clamd, YARA).

A scanner's answer is one of three outcomes. ERROR is not CLEAN: a file too large to
scan, an archive nested too deep or encrypted, a scanner that crashed, hung or has no
database is a file nobody vouched for, and the owner's policy (alert and pass, or block)
decides what becomes of it; the error says which of these it was.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Outcome(enum.Enum):
    CLEAN = "clean"
    INFECTED = "infected"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    scanner: str        # "clamav", "yara"
    signature: str      # ClamAV's signature name, or the YARA rule's namespace:name


@dataclass(frozen=True)
class ScanResult:
    outcome: Outcome
    findings: tuple[Finding, ...] = ()
    error: str = ""     # for ERROR: what could not be scanned and why


class FileScanner(Protocol):
    """Blocking calls, safe from several threads at once: the inline engine calls it from
    a worker thread while the packet that completes the file waits for the answer."""

    def scan(self, data: bytes, name: str) -> ScanResult: ...

    def scan_file(self, path: Path) -> ScanResult: ...
