"""What ClamAV's answers mean, and what clamd is told (pure): the reply to a scan mapped to
a `ScanResult`, and the database suffixes a bundle's `clamav/` may hold.

clamd answers a scan with `FOUND <signature>`, `OK` or `ERROR <reason>`. A FOUND is not
always a signature's match: with AlertExceedsMax and AlertEncrypted set (sys-sec sets
them, so that a file clamd could not look into completely never reads as OK), clamd names
a heuristic instead, `Heuristics.Limits.Exceeded.<Max...>` for a file or archive past one
of its limits and `Heuristics.Encrypted.<Format>` for an encrypted archive or document.
Those files were not vouched for either way; the owner says whether they count as
ERROR (the default: the file's policy, alert-and-pass or block, decides) or INFECTED.
Either way the heuristic's name is kept as the result's finding, so the EVE record can
name it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from pathlib import Path

from netsec.filescan import Finding, Outcome, ScanResult

SCANNER = "clamav"

# The files a bundle's clamav/ may hold, by what ClamAV loads them as. A provider that
# relays ClamAV's own databases ships them as ClamAV signs them (.cvd/.cld/.cud); .fp and
# .ign2 let it correct its own false positives, and a bundle is the only source of
# signatures sys-sec's clamd has, so there are no others for them to silence. Bytecode
# (.cbc) runs code inside clamd and is not taken (clamd.conf says Bytecode no too); YARA
# rules belong in the bundle's yara/, where sys-sec compiles them itself.
DATABASE_SUFFIXES: dict[str, str] = {
    ".hdb": "MD5 hashes of whole files",
    ".hsb": "SHA-1/SHA-256 hashes of whole files",
    ".mdb": "MD5 hashes of PE sections",
    ".msb": "SHA-1/SHA-256 hashes of PE sections",
    ".ndb": "extended (body-based) signatures",
    ".ldb": "logical signatures",
    ".cdb": "container metadata signatures",
    ".cvd": "a ClamAV-signed database",
    ".cld": "a ClamAV-signed database, updated in place",
    ".cud": "a ClamAV-signed database, uncompressed",
    ".fp": "false-positive hashes (files that are not to be reported)",
    ".ign2": "names of signatures that are not to be reported",
}

# Why clamd could not look into a file, by the heuristic it names.
_LIMIT_REASONS = {
    "MaxFileSize": "too large to scan",
    "MaxScanSize": "too much data to scan",
    "MaxRecursion": "archive nested too deep",
    "MaxFiles": "too many files in the archive",
    "MaxScanTime": "took too long to scan",
    "StreamMaxLength": "too large to scan",
}
LIMITS_PREFIX = "Heuristics.Limits.Exceeded."
ENCRYPTED_PREFIX = "Heuristics.Encrypted."


class Unscannable(enum.Enum):
    """What a file clamd could not look into (past a limit, encrypted) counts as."""

    ERROR = "error"
    INFECTED = "infected"


def unscannable_reason(signature: str) -> str | None:
    """Why a heuristic says the file was not looked into, or None for a real finding."""
    if signature.startswith(LIMITS_PREFIX):
        limit = signature.removeprefix(LIMITS_PREFIX).split(".", 1)[0]
        return f"{_LIMIT_REASONS.get(limit, 'past a scan limit')} ({limit})"
    if signature.startswith(ENCRYPTED_PREFIX):
        return f"encrypted ({signature.removeprefix(ENCRYPTED_PREFIX).split('.', 1)[0]})"
    return None


def unscannable(signature: str, reason: str, policy: Unscannable) -> ScanResult:
    finding = (Finding(SCANNER, signature),)
    if policy is Unscannable.INFECTED:
        return ScanResult(Outcome.INFECTED, finding)
    return ScanResult(Outcome.ERROR, finding, f"clamav: {reason}")


def result_of(status: str, detail: str | None, policy: Unscannable) -> ScanResult:
    """The ScanResult of one clamd reply, as `status` (FOUND, OK, ERROR) and its detail
    (the signature, or the error's reason)."""
    if status == "OK":
        return ScanResult(Outcome.CLEAN)
    if status == "FOUND" and detail:
        reason = unscannable_reason(detail)
        if reason is not None:
            return unscannable(detail, reason, policy)
        return ScanResult(Outcome.INFECTED, (Finding(SCANNER, detail),))
    if status == "ERROR":
        return ScanResult(Outcome.ERROR, error=f"clamav: {detail or 'error without a reason'}")
    return ScanResult(Outcome.ERROR, error=f"clamav: unexpected reply {status} {detail or ''}"
                      .rstrip())


def too_large(size: int, limit: int, policy: Unscannable) -> ScanResult:
    """A file longer than clamd takes on its socket (StreamMaxLength): never sent."""
    return unscannable(LIMITS_PREFIX + "StreamMaxLength",
                       f"too large to scan ({size} bytes, StreamMaxLength {limit})", policy)


@dataclass(frozen=True)
class Limits:
    """clamd's scan limits as sys-sec runs it (bytes, or a count). A file past one is
    answered with a Heuristics.Limits.Exceeded alert, never OK."""

    max_file_size: int = 25 << 20      # one file, or one file inside an archive
    max_scan_size: int = 100 << 20     # everything read from one file, archives unpacked
    max_recursion: int = 16            # archives inside archives
    max_files: int = 10_000            # files inside one archive
    stream_max_length: int = 25 << 20  # one INSTREAM
    max_scan_time: int = 120_000       # milliseconds for one file
    max_threads: int = 4

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"clamd limit {f.name}: {value!r} is not a positive integer")


DEFAULT_LIMITS = Limits()


def clamd_conf(local_socket: Path, database_dir: Path, limits: Limits = DEFAULT_LIMITS) -> str:
    """The clamd.conf sys-sec runs clamd with: in the foreground (its supervisor keeps it),
    on a Unix socket only root reaches, alerting on every file it cannot look into."""
    for what, p in (("LocalSocket", local_socket), ("DatabaseDirectory", database_dir)):
        if not p.is_absolute() or any(c in str(p) for c in "\n\r\0 "):
            raise ValueError(f"clamd.conf {what}: {str(p)!r} is not an absolute path "
                             "without spaces")
    lines = [
        "# Generated by sys-sec's controller; rewritten at every start.",
        f"LocalSocket {local_socket}",
        "LocalSocketMode 600",
        "FixStaleSocket yes",
        "Foreground yes",
        # clamd's log is its stderr, which the supervisor's log collects.
        "LogTime yes",
        f"DatabaseDirectory {database_dir}",
        # Reloads come from the bundle's apply (RELOAD), not from clamd polling its folder.
        "SelfCheck 0",
        # RELOAD loads the new database beside the old, which serves until it is in.
        "ConcurrentDatabaseReload yes",
        f"MaxThreads {limits.max_threads}",
        f"MaxFileSize {limits.max_file_size}",
        f"MaxScanSize {limits.max_scan_size}",
        f"MaxRecursion {limits.max_recursion}",
        f"MaxFiles {limits.max_files}",
        f"MaxScanTime {limits.max_scan_time}",
        f"StreamMaxLength {limits.stream_max_length}",
        "AlertExceedsMax yes",
        "AlertEncrypted yes",
        "AlertBrokenExecutables no",
        "HeuristicAlerts yes",
        "ScanArchive yes",
        "Bytecode no",
    ]
    return "\n".join(lines) + "\n"
