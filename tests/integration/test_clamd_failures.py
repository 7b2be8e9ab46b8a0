"""What becomes of a file when clamd fails, or cannot look into it (issue 16 items 4-5), each
against a real clamd: killed mid-file or hung (SIGSTOP) is an ERROR that says so, never
CLEAN, and the same scanner works again once clamd is back; a database that does not load
is refused with what libclamav said, naming the file; a zip encrypted by `zip -P`, one
nested past MaxRecursion and a file past MaxFileSize each come out as the owner's policy
says (Unscannable.ERROR or .INFECTED) with the heuristic's name kept."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from domains.syssec.antivirus import ClamavDatabaseError, check_database
from netsec.clamav import Limits, Unscannable
from netsec.filescan import Outcome, ScanResult
from tests.clamd_lab import (
    EICAR,
    EICAR_SIG,
    Clamd,
    nested_zip,
    running_clamd,
    start_clamd,
    stop_clamd,
    wait_until,
    write_database,
)

BENIGN = b"an ordinary text file, nothing to see here\n" * 100
LIMITS = Limits(max_file_size=64 << 10, max_scan_size=256 << 10, max_recursion=3)


@pytest.fixture
def clamd(tmp_path: Path) -> Iterator[Clamd]:
    with running_clamd(tmp_path, LIMITS) as c:
        yield c


def names(r: ScanResult) -> set[str]:
    return {f.signature.removesuffix(".UNOFFICIAL") for f in r.findings}


def restart(c: Clamd) -> Clamd:
    """clamd started again on the same socket and database, as its supervisor would."""
    stop_clamd(c)
    back = start_clamd(c.conf.parent, c.database, LIMITS, sock=c.socket)
    c.proc = back.proc
    return c


def test_clamd_killed_mid_file_fails_closed_and_the_scanner_works_once_it_is_back(
        clamd: Clamd, tmp_path: Path) -> None:
    s = clamd.scanner(timeout=10.0)
    # A FIFO as the file: the scan streams what the test writes, so clamd dies while the
    # file is half sent, at a point the test chooses.
    fifo = tmp_path / "half.bin"
    os.mkfifo(fifo)
    got: list[ScanResult] = []
    scanning = threading.Thread(target=lambda: got.append(s.scan_file(fifo)), daemon=True)
    scanning.start()
    with fifo.open("wb") as w:
        w.write(b"\0" * (1 << 20))      # returns once the scanner has taken most of it
        w.flush()
        clamd.proc.kill()
        clamd.proc.wait(10)
        try:
            w.write(b"\0" * (1 << 20))
        except BrokenPipeError:
            pass                        # the scanner gave up on the file already
    scanning.join(15)
    assert not scanning.is_alive(), "the scan did not end after clamd died"
    assert got[0].outcome is Outcome.ERROR and "scanner down" in got[0].error, got[0]
    # while clamd is away every scan says so
    down = s.scan(BENIGN, "readme.txt")
    assert down.outcome is Outcome.ERROR and "scanner down" in down.error
    restart(clamd)
    assert names(s.scan(EICAR, "eicar.com")) == {EICAR_SIG}
    assert s.scan(BENIGN, "readme.txt").outcome is Outcome.CLEAN


def test_a_hung_clamd_times_out_as_error_and_answers_again_when_it_resumes(
        clamd: Clamd) -> None:
    s = clamd.scanner(timeout=1.0)
    os.kill(clamd.proc.pid, signal.SIGSTOP)
    try:
        hung = s.scan(BENIGN, "readme.txt")
        assert hung.outcome is Outcome.ERROR and "hung" in hung.error, hung
        assert not s.ping(timeout=0.5)
    finally:
        os.kill(clamd.proc.pid, signal.SIGCONT)
    wait_until(lambda: s.ping(timeout=1.0), 10.0, "clamd did not answer again after SIGCONT")
    assert names(s.scan(EICAR, "eicar.com")) == {EICAR_SIG}


def test_a_database_that_does_not_load_is_refused_naming_the_file(tmp_path: Path) -> None:
    good = write_database(tmp_path / "good")
    check_database(good)                        # positive control: the lab's own loads
    bad = write_database(tmp_path / "bad")
    (bad / "broken.ldb").write_text("not a logical signature\n")
    with pytest.raises(ClamavDatabaseError, match=r"broken\.ldb.*Malformed database"):
        check_database(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ClamavDatabaseError, match="No supported database files"):
        check_database(empty)
    with pytest.raises(ClamavDatabaseError, match="no such"):
        check_database(tmp_path / "nowhere")
    # and clamd itself, started on it, does not come up: the log says the same file
    sock = tmp_path / "clamd.sock"
    conf_dir = tmp_path / "run"
    conf_dir.mkdir()
    with pytest.raises(pytest.fail.Exception, match="broken.ldb"):
        start_clamd(conf_dir, bad, LIMITS, sock=sock)


@pytest.mark.skipif(shutil.which("zip") is None, reason="no zip(1) to make an encrypted zip")
def test_encrypted_too_deep_and_too_large_each_have_the_owners_outcome(
        clamd: Clamd, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_bytes(BENIGN)
    subprocess.run(["zip", "-q", "-P", "hunter2", "secret.zip", "secret.txt"],
                   cwd=tmp_path, check=True)
    cases = {
        "encrypted": ((tmp_path / "secret.zip").read_bytes(), "Heuristics.Encrypted.Zip",
                      "encrypted"),
        "too deep": (nested_zip(LIMITS.max_recursion + 3, BENIGN[:200]),
                     "Heuristics.Limits.Exceeded.MaxRecursion", "nested too deep"),
        "too large": (os.urandom(LIMITS.max_file_size + 1),
                      "Heuristics.Limits.Exceeded.MaxFileSize", "too large to scan"),
    }
    lenient, strict = clamd.scanner(), clamd.scanner(unscannable=Unscannable.INFECTED)
    for what, (data, heuristic, reason) in cases.items():
        r = lenient.scan(data, what)
        assert r.outcome is Outcome.ERROR and reason in r.error, (what, r)
        assert names(r) == {heuristic}, (what, r)
        r = strict.scan(data, what)
        assert r.outcome is Outcome.INFECTED and names(r) == {heuristic}, (what, r)
    # positive controls: the same shapes within the limits are looked into
    assert lenient.scan(nested_zip(2, BENIGN[:200]), "ok.zip").outcome is Outcome.CLEAN
    assert names(lenient.scan(nested_zip(2, EICAR), "e.zip")) == {EICAR_SIG}
    assert lenient.scan(os.urandom(LIMITS.max_file_size - 1), "ok").outcome is Outcome.CLEAN
