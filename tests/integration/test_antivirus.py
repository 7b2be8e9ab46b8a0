"""sys-sec's scanners against a real clamd (started on the test's own socket with a test
database) and real YARA rules: each test signature found, a benign file clean, every way
of not scanning a file an ERROR that says why, never CLEAN."""
from __future__ import annotations

import io
import socket
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from domains.syssec.antivirus import (
    ClamdScanner,
    CombinedScanner,
    YaraRulesError,
    YaraScanner,
    scanner_from,
)
from netsec.clamav import Limits, Unscannable
from netsec.filescan import Finding, Outcome
from tests.clamd_lab import (
    CUSTOM_SIG,
    EICAR,
    EICAR_SIG,
    YARA_RULE,
    Clamd,
    custom_file,
    nested_zip,
    running_clamd,
    write_yara,
    yara_file,
)

BENIGN = b"an ordinary text file, nothing to see here\n" * 100


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    with running_clamd(tmp_path_factory.mktemp("clamd")) as c:
        yield c


@pytest.fixture(scope="module")
def yara_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_yara(tmp_path_factory.mktemp("yara"))


def clam_names(result: object) -> set[str]:
    return {f.signature.removesuffix(".UNOFFICIAL") for f in result.findings}  # type: ignore[attr-defined]


def test_clamd_finds_eicar_and_the_custom_hash_and_passes_a_benign_file(clamd: Clamd,
                                                                         tmp_path: Path) -> None:
    s = clamd.scanner()
    eicar = s.scan(EICAR, "eicar.com")
    assert eicar.outcome is Outcome.INFECTED and clam_names(eicar) == {EICAR_SIG}
    assert eicar.findings[0].scanner == "clamav"
    custom = s.scan(custom_file(), "custom.bin")
    assert custom.outcome is Outcome.INFECTED and clam_names(custom) == {CUSTOM_SIG}
    # one byte changed is another hash: the hash signature is exact
    altered = bytearray(custom_file())
    altered[0] ^= 1
    assert s.scan(bytes(altered), "custom.bin").outcome is Outcome.CLEAN
    assert s.scan(BENIGN, "readme.txt").outcome is Outcome.CLEAN
    # the same from a file, as a scan at rest does
    (tmp_path / "eicar.com").write_bytes(EICAR)
    (tmp_path / "readme.txt").write_bytes(BENIGN)
    assert clam_names(s.scan_file(tmp_path / "eicar.com")) == {EICAR_SIG}
    assert s.scan_file(tmp_path / "readme.txt").outcome is Outcome.CLEAN


def test_yara_rule_found_and_benign_clean(yara_dir: Path, tmp_path: Path) -> None:
    y = YaraScanner.from_dir(yara_dir)
    hit = y.scan(yara_file(), "marked.bin")
    assert hit.outcome is Outcome.INFECTED
    assert hit.findings == (Finding("yara", f"hyperwall-test:{YARA_RULE}"),)
    assert y.scan(BENIGN, "readme.txt").outcome is Outcome.CLEAN
    (tmp_path / "marked.bin").write_bytes(yara_file())
    assert y.scan_file(tmp_path / "marked.bin").outcome is Outcome.INFECTED


def test_scanner_from_both_finds_each_signature(clamd: Clamd, yara_dir: Path) -> None:
    both = scanner_from(clamd.socket, yara_dir)
    assert isinstance(both, CombinedScanner)
    assert clam_names(both.scan(EICAR, "e")) == {EICAR_SIG}
    assert clam_names(both.scan(custom_file(), "c")) == {CUSTOM_SIG}
    assert both.scan(yara_file(), "y").findings == (
        Finding("yara", f"hyperwall-test:{YARA_RULE}"),)
    assert both.scan(BENIGN, "b").outcome is Outcome.CLEAN
    assert isinstance(scanner_from(clamd.socket, None), ClamdScanner)
    assert isinstance(scanner_from(None, yara_dir), YaraScanner)
    with pytest.raises(ValueError, match="neither"):
        scanner_from(None, None)


def test_many_threads_scan_at_once_each_gets_its_own_answer(clamd: Clamd,
                                                            yara_dir: Path) -> None:
    both = scanner_from(clamd.socket, yara_dir)
    files = [(EICAR, Outcome.INFECTED), (BENIGN, Outcome.CLEAN),
             (custom_file(), Outcome.INFECTED), (yara_file(), Outcome.INFECTED)] * 10
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda f: both.scan(f[0], "x").outcome, files))
    assert got == [want for _, want in files]


def test_clamd_not_there_is_scanner_down_never_clean(tmp_path: Path, yara_dir: Path) -> None:
    s = ClamdScanner(tmp_path / "no-such.sock")
    r = s.scan(BENIGN, "readme.txt")
    assert r.outcome is Outcome.ERROR and "scanner down" in r.error
    assert not s.ping()
    # together with YARA: YARA's clean does not hide clamd's silence
    both = scanner_from(tmp_path / "no-such.sock", yara_dir)
    r = both.scan(BENIGN, "readme.txt")
    assert r.outcome is Outcome.ERROR and "scanner down" in r.error
    # but a finding is a finding
    assert both.scan(yara_file(), "y").outcome is Outcome.INFECTED


def test_a_hung_scanner_times_out_as_error() -> None:
    folder = Path(tempfile.mkdtemp(prefix="hwhung-"))
    path = folder / "hung.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    held: list[socket.socket] = []
    accepted = threading.Event()

    def accept_and_say_nothing() -> None:
        conn, _ = listener.accept()
        held.append(conn)
        accepted.set()
    t = threading.Thread(target=accept_and_say_nothing, daemon=True)
    t.start()
    try:
        r = ClamdScanner(path, timeout=0.5).scan(BENIGN, "readme.txt")
        assert accepted.is_set()    # it did reach the hung "clamd"
        assert r.outcome is Outcome.ERROR and "hung" in r.error
    finally:
        for c in held:
            c.close()
        listener.close()
        path.unlink(missing_ok=True)
        folder.rmdir()


def test_too_large_for_the_stream_is_unscannable_not_sent(clamd: Clamd) -> None:
    s = ClamdScanner(clamd.socket, stream_max=1000)
    r = s.scan(EICAR + b"\0" * 2000, "big.bin")
    assert r.outcome is Outcome.ERROR and "too large to scan" in r.error
    strict = ClamdScanner(clamd.socket, stream_max=1000, unscannable=Unscannable.INFECTED)
    r = strict.scan(b"\0" * 2000, "big.bin")
    assert r.outcome is Outcome.INFECTED
    assert r.findings[0].signature == "Heuristics.Limits.Exceeded.StreamMaxLength"


def encrypted_zip(inner: bytes) -> bytes:
    """A zip whose one member says it is encrypted (general purpose bit 0 set in both its
    headers), as an encrypted archive's member does: clamd cannot look inside."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("secret.txt", inner)
    data = bytearray(buf.getvalue())
    for magic, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(magic)
        data[at + offset] |= 1
    return bytes(data)


def test_limits_and_encryption_are_stated_errors(tmp_path: Path) -> None:
    limits = Limits(max_file_size=4096, max_scan_size=8192, max_recursion=3)
    with running_clamd(tmp_path, limits) as c:
        s = c.scanner()
        big = s.scan(b"A" * 20_000, "big.bin")
        assert big.outcome is Outcome.ERROR and "too large to scan" in big.error
        assert big.findings[0].signature.startswith("Heuristics.Limits.Exceeded.")
        deep = s.scan(nested_zip(6, BENIGN[:200]), "deep.zip")
        assert deep.outcome is Outcome.ERROR and "nested too deep" in deep.error, deep
        shallow = s.scan(nested_zip(1, BENIGN[:200]), "shallow.zip")
        assert shallow.outcome is Outcome.CLEAN   # positive control: a zip is scanned
        assert clam_names(s.scan(nested_zip(1, EICAR), "e.zip")) == {EICAR_SIG}
        enc = s.scan(encrypted_zip(BENIGN[:200]), "secret.zip")
        assert enc.outcome is Outcome.ERROR and "encrypted" in enc.error, enc
        strict = c.scanner(unscannable=Unscannable.INFECTED)
        assert strict.scan(encrypted_zip(BENIGN[:200]), "secret.zip").outcome is Outcome.INFECTED
        # and none of it disturbs the next scan
        assert clam_names(s.scan(EICAR, "e")) == {EICAR_SIG}


def test_yara_folder_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.yar").write_text("rule broken { condition: nosuchthing }\n")
    with pytest.raises(YaraRulesError, match="broken.yar"):
        YaraScanner.from_dir(bad)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    with pytest.raises(YaraRulesError, match="notes.txt: not a YARA rule file"):
        YaraScanner.from_dir(other)
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "inc.yar").write_text('include "/etc/passwd"\nrule r { condition: true }\n')
    with pytest.raises(YaraRulesError, match="include"):
        YaraScanner.from_dir(inc)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(YaraRulesError, match="no YARA rule files"):
        YaraScanner.from_dir(empty)
