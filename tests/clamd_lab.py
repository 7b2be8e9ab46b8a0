"""A real clamd for a test: a database of test signatures written into a temporary folder
(EICAR's string as an .ndb body signature, an .hdb hash of a file the test makes), the
clamd.conf sys-sec generates, clamd started on a socket in the test's own folder and
waited for until it answers PING, and stopped, by its pid, whatever happens."""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from domains.syssec.antivirus import ClamdScanner
from netsec.clamav import DEFAULT_LIMITS, Limits, clamd_conf

CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"
# Assembled here so that no file of the checkout is itself the EICAR test file.
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
EICAR_SIG = "Hyperwall.Test.EICAR"
CUSTOM_SIG = "Hyperwall.Test.Custom"
YARA_RULE = "hyperwall_test_marker"
YARA_MARKER = b"HYPERWALL-YARA-TEST-MARKER-7f3a"
YARA_TEXT = f"""
rule {YARA_RULE}
{{
    strings:
        $m = "{YARA_MARKER.decode()}"
    condition:
        $m
}}
"""


def custom_file(size: int = 4096) -> bytes:
    """A file of the test's own making; only its hash is in the database."""
    seed = b"hyperwall custom hash signature test file\n"
    return (seed * (size // len(seed) + 1))[:size]


def yara_file(size: int = 4096) -> bytes:
    pad = b"." * max(0, size - len(YARA_MARKER))
    return pad[: len(pad) // 2] + YARA_MARKER + pad[len(pad) // 2:]


def nested_zip(depth: int, inner: bytes) -> bytes:
    """`inner` in a zip, in a zip ... `depth` zips deep."""
    data = inner
    for i in range(depth):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(f"level{i}.zip" if i else "inner.txt", data)
        data = buf.getvalue()
    return data



@contextmanager
def short_folder(prefix: str) -> Iterator[Path]:
    """A scratch folder under /tmp, removed afterwards: a Unix socket's path has to fit in
    108 bytes, which a test's tmp_path may not."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)

def write_database(folder: Path, custom: bytes | None = None) -> Path:
    """The test signatures as ClamAV database files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hyperwall-test.ndb").write_text(f"{EICAR_SIG}:0:*:{EICAR.hex()}\n")
    data = custom_file() if custom is None else custom
    (folder / "hyperwall-test.hdb").write_text(
        f"{hashlib.md5(data).hexdigest()}:{len(data)}:{CUSTOM_SIG}\n")
    return folder


def write_yara(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hyperwall-test.yar").write_text(YARA_TEXT)
    return folder


def wait_until(ok: object, timeout: float, what: str) -> None:
    """Poll `ok()` (a quick check against a real daemon) until true, or fail the test."""
    deadline = time.monotonic() + timeout
    while not ok():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.02)


@dataclass
class Clamd:
    proc: subprocess.Popen[bytes]
    socket: Path
    database: Path
    conf: Path
    log: Path

    def scanner(self, **kw: object) -> ClamdScanner:
        return ClamdScanner(self.socket, **kw)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_clamd(folder: Path, database: Path, limits: Limits = DEFAULT_LIMITS,
                sock: Path | None = None) -> Clamd:
    # a Unix socket's path has to fit in 108 bytes, which a test's tmp_path may not
    sock = sock or Path(tempfile.mkdtemp(prefix="hwclamd-")) / "clamd.sock"
    conf = folder / "clamd.conf"
    conf.write_text(clamd_conf(sock, database, limits))
    log = folder / "clamd.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([CLAMD, "-c", str(conf)], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL)
    c = Clamd(proc, sock, database, conf, log)
    scanner = c.scanner()

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"clamd exited {proc.returncode}:\n{c.log_text()}")
        return scanner.ping(timeout=1.0)
    wait_until(up, 30.0, "clamd did not answer PING")
    return c


def stop_clamd(c: Clamd) -> None:
    if c.proc.poll() is None:
        c.proc.terminate()
        try:
            c.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(c.proc.pid, 9)
            c.proc.wait()


@contextmanager
def running_clamd(folder: Path, limits: Limits = DEFAULT_LIMITS) -> Iterator[Clamd]:
    database = write_database(folder / "db")
    c = start_clamd(folder, database, limits)
    try:
        yield c
    finally:
        stop_clamd(c)
        shutil.rmtree(c.socket.parent, ignore_errors=True)
        print(c.log_text()[-3000:])
