"""sys-sec's file scanners: ClamAV through clamd's Unix socket, YARA in process, and the
two together, each a `netsec.filescan.FileScanner`.

clamd is spoken to through clamav-client (the maintained fork of the `clamd` module),
bytes by INSTREAM: the file never has to exist where clamd can open it, so the same call
serves a file reassembled from a flow and one read from a domain's tree. The client keeps
its socket on the object, so each scan makes its own client: several threads scan at once.
Whatever keeps clamd from answering is an ERROR saying so, never CLEAN: no socket or a
refused connection ("scanner down"), a connection lost mid-file (clamd died), no answer
within the timeout (a hung clamd).

YARA rules are compiled once, when the scanner is made from a bundle's `yara/` folder
(one namespace per file, named after it; `include` refused, since a rule could name any
file in sys-sec); `filename` is an external variable the rules may test.
"""
from __future__ import annotations

import io
import logging
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import yara  # type: ignore[import-not-found]
from clamav_client.clamd import BufferTooLongError, ClamdError, ClamdUnixSocket

from netsec import clamav
from netsec.clamav import Unscannable
from netsec.filescan import FileScanner, Finding, Outcome, ScanResult

log = logging.getLogger("hyperwall.antivirus")
# clamd's own default StreamMaxLength; the generated clamd.conf says the one in force.
STREAM_MAX = 25 << 20
CLAMD_TIMEOUT = 30.0
YARA_TIMEOUT = 10          # seconds, yara's unit
YARA_MAX = 64 << 20        # bytes a YARA scan holds at once
YARA_SUFFIXES = (".yar", ".yara")


def _down(error: BaseException) -> str:
    """What a failure to talk to clamd says of clamd."""
    cause = error.__cause__ or error
    if isinstance(cause, TimeoutError | socket.timeout):
        return "clamav: scanner hung (no answer in time)"
    if isinstance(cause, FileNotFoundError | ConnectionRefusedError):
        return "clamav: scanner down (no clamd on its socket)"
    if isinstance(cause, ConnectionResetError | BrokenPipeError):
        return "clamav: scanner down (connection lost mid-file)"
    return f"clamav: scanner down ({cause})"


class ClamdScanner:
    """clamd on `socket_path`. `stream_max` is its StreamMaxLength: a longer file is not
    sent (clamd would refuse it mid-stream) but answered as unscannable."""

    name = clamav.SCANNER

    def __init__(self, socket_path: Path, *, timeout: float = CLAMD_TIMEOUT,
                 stream_max: int = STREAM_MAX,
                 unscannable: Unscannable = Unscannable.ERROR) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.stream_max = stream_max
        self.unscannable = unscannable

    def _client(self, timeout: float | None = None) -> ClamdUnixSocket:
        # the library's annotation says int; a float timeout is what socket takes
        return ClamdUnixSocket(str(self.socket_path), timeout=timeout or self.timeout)  # type: ignore[arg-type]

    def ping(self, timeout: float = 2.0) -> bool:
        """Whether clamd answers PING (it has its database loaded and serves)."""
        try:
            return self._client(timeout).ping() == "PONG"
        except (ClamdError, OSError):
            return False

    def reload(self) -> str:
        """Ask clamd to load its database folder again (RELOAD): it keeps serving with the
        old one until the new has loaded, and keeps the old if the new fails."""
        return self._client().reload()

    def _instream(self, stream: BinaryIO, size: int) -> ScanResult:
        if size > self.stream_max:
            return clamav.too_large(size, self.stream_max, self.unscannable)
        try:
            reply = self._client().instream(stream)
        except BufferTooLongError:
            return clamav.too_large(size, self.stream_max, self.unscannable)
        except (ClamdError, OSError) as e:
            return ScanResult(Outcome.ERROR, error=_down(e))
        if not reply:
            return ScanResult(Outcome.ERROR, error="clamav: scanner down (no reply)")
        status, detail = next(iter(reply.values()))
        return clamav.result_of(status, detail, self.unscannable)

    def scan(self, data: bytes, name: str) -> ScanResult:
        return self._instream(io.BytesIO(data), len(data))

    def scan_file(self, path: Path) -> ScanResult:
        try:
            with path.open("rb") as f:
                return self._instream(f, path.stat().st_size)
        except OSError as e:   # the file, not clamd: clamd's errors are caught inside
            return ScanResult(Outcome.ERROR, error=f"cannot read {path}: {e.strerror or e}")


class ClamavDatabaseError(ValueError):
    """A ClamAV database folder that does not load: the message names the file and what
    libclamav said of it."""


CLAMSCAN = shutil.which("clamscan") or "/usr/bin/clamscan"


def check_database(folder: Path, timeout: float = 120.0) -> None:
    """Load `folder` as clamd would, in a throwaway clamscan scanning one benign probe file,
    so that a database that does not load is refused here, before clamd is told to reload
    (clamd would keep its old one, but nobody would hear why). ClamavDatabaseError if not."""
    if not folder.is_dir():
        raise ClamavDatabaseError(f"{folder}: no such ClamAV database folder")
    with tempfile.TemporaryDirectory(prefix="hwclamprobe-") as tmp:
        probe = Path(tmp) / "probe.txt"
        probe.write_bytes(b"hyperwall database self-test probe\n")
        try:
            run = subprocess.run([CLAMSCAN, "--no-summary", "--stdout", "-d", str(folder),
                                  str(probe)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ClamavDatabaseError(f"{folder}: ClamAV database did not load within "
                                      f"{timeout:g} s") from e
    # 0: probe clean, 1: something matched the probe; either way the database loaded
    if run.returncode in (0, 1):
        return
    said = [line.removeprefix("LibClamAV Error: ").strip()
            for line in (run.stderr + run.stdout).splitlines()
            if line.startswith(("LibClamAV Error:", "ERROR:"))]
    raise ClamavDatabaseError(f"ClamAV database {folder} does not load: "
                              + ("; ".join(said) or f"clamscan exited {run.returncode}"))


class YaraRulesError(ValueError):
    """A YARA folder that does not compile: the message names the file and the line."""


def compile_rules(folder: Path) -> yara.Rules:
    """Every .yar/.yara file in `folder`, each its own namespace; anything else there
    refused by name, and a folder with no rules too (it would match nothing, silently)."""
    if not folder.is_dir():
        raise YaraRulesError(f"{folder}: no such folder of YARA rules")
    files: dict[str, str] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix not in YARA_SUFFIXES or not p.is_file():
            raise YaraRulesError(f"{p}: not a YARA rule file (.yar, .yara)")
        if p.stem in files:     # one namespace each: the second would replace the first
            raise YaraRulesError(f"{p}: a second rule file named {p.stem!r}")
        files[p.stem] = str(p)
    if not files:
        raise YaraRulesError(f"{folder}: no YARA rule files (.yar, .yara)")
    try:
        return yara.compile(filepaths=files, includes=False, externals={"filename": ""})
    except yara.SyntaxError as e:      # its text is "<file>(<line>): <what>"
        raise YaraRulesError(f"YARA rules do not compile: {e}") from e
    except yara.Error as e:
        raise YaraRulesError(f"YARA rules in {folder}: {e}") from e


class YaraScanner:
    """Compiled rules matched in process; `max_size` bounds what one scan holds."""

    name = "yara"

    def __init__(self, rules: yara.Rules, *, timeout: int = YARA_TIMEOUT,
                 max_size: int = YARA_MAX) -> None:
        self.rules = rules
        self.timeout = timeout
        self.max_size = max_size

    @classmethod
    def from_dir(cls, folder: Path, **kw: int) -> YaraScanner:
        return cls(compile_rules(folder), **kw)

    def _match(self, name: str, **target: str | bytes) -> ScanResult:
        try:
            matches = self.rules.match(timeout=self.timeout, externals={"filename": name},
                                       **target)
        except yara.TimeoutError:
            return ScanResult(Outcome.ERROR, error=f"yara: no verdict within {self.timeout} s")
        except yara.Error as e:
            return ScanResult(Outcome.ERROR, error=f"yara: {e}")
        if not matches:
            return ScanResult(Outcome.CLEAN)
        return ScanResult(Outcome.INFECTED, tuple(
            Finding(self.name, f"{m.namespace}:{m.rule}") for m in matches))

    def _too_large(self, size: int) -> ScanResult:
        return ScanResult(Outcome.ERROR,
                          error=f"yara: too large to scan ({size} bytes, limit {self.max_size})")

    def scan(self, data: bytes, name: str) -> ScanResult:
        if len(data) > self.max_size:
            return self._too_large(len(data))
        return self._match(name, data=data)

    def scan_file(self, path: Path) -> ScanResult:
        try:
            size = path.stat().st_size
        except OSError as e:
            return ScanResult(Outcome.ERROR, error=f"cannot read {path}: {e.strerror or e}")
        if size > self.max_size:
            return self._too_large(size)
        return self._match(path.name, filepath=str(path))


def combine(results: Sequence[ScanResult]) -> ScanResult:
    """One verdict of several scanners': INFECTED if any found something (with every
    finding, and the errors of the others kept), else ERROR if any could not say, else
    CLEAN. An error never hides a finding, and no CLEAN hides an error."""
    findings = tuple(f for r in results for f in r.findings if r.outcome is Outcome.INFECTED)
    errors = "; ".join(r.error for r in results if r.outcome is Outcome.ERROR)
    if findings:
        return ScanResult(Outcome.INFECTED, findings, errors)
    if errors:
        unscanned = tuple(f for r in results for f in r.findings)
        return ScanResult(Outcome.ERROR, unscanned, errors)
    return ScanResult(Outcome.CLEAN)


class CombinedScanner:
    """Every scanner asked about every file, in order (YARA first: in process, cheap)."""

    def __init__(self, scanners: Sequence[FileScanner]) -> None:
        if not scanners:
            raise ValueError("CombinedScanner: no scanners")
        self.scanners = tuple(scanners)

    def scan(self, data: bytes, name: str) -> ScanResult:
        return combine([s.scan(data, name) for s in self.scanners])

    def scan_file(self, path: Path) -> ScanResult:
        return combine([s.scan_file(path) for s in self.scanners])


def scanner_from(clamd_socket: Path | None, yara_dir: Path | None, *,
                 unscannable: Unscannable = Unscannable.ERROR,
                 stream_max: int = STREAM_MAX, timeout: float = CLAMD_TIMEOUT) -> FileScanner:
    """The scanner sys-sec's programs use: YARA's rules from `yara_dir` (compiled now:
    YaraRulesError if they do not), clamd on `clamd_socket`, or both together."""
    scanners: list[FileScanner] = []
    if yara_dir is not None:
        scanners.append(YaraScanner.from_dir(yara_dir))
    if clamd_socket is not None:
        scanners.append(ClamdScanner(clamd_socket, unscannable=unscannable,
                                     stream_max=stream_max, timeout=timeout))
    if not scanners:
        raise ValueError("scanner_from: neither a clamd socket nor a YARA folder given")
    return scanners[0] if len(scanners) == 1 else CombinedScanner(scanners)
