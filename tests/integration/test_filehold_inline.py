"""Files scanned in flight, for real: client -- sys-sec -- server namespaces, the forward
path queued to NFQUEUE 0 (fail closed), hyperwall-ipsd with --clamd-socket on a real clamd
(tests/clamd_lab.py's test database: EICAR as a body signature) and --yara-dir on its test
rule. The guest downloads the EICAR file and a benign file of the same size over HTTP,
plain, chunked and gzip, and what arrives is observed at the guest: the EICAR response's
last bytes never do (the connection is reset), the benign one arrives whole; so for a file
only the YARA rule knows. Then clamd is stopped: a download fails closed."""
from __future__ import annotations

import gzip
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clamd_lab import (
    EICAR,
    EICAR_SIG,
    YARA_RULE,
    Clamd,
    running_clamd,
    stop_clamd,
    write_yara,
    yara_file,
)
from tests.file_http import response
from tests.filehold_lab import CLIENT, PORT, SERVER, inflight_wall
from tests.integration.test_ipsd_inline import wait_for
from tests.netlab import Lab

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
BENIGN = (b"an ordinary file of exactly the same size as the test one. " * 2)[:len(EICAR)]
SHAPES = ["plain", "chunked", "gzip"]


@dataclass
class Wall:
    net: Lab
    ns: dict[str, str]
    dir: Path
    clamd: Clamd

    def fetch(self, path: str) -> bytes:
        """Every byte of the response that reached the guest (until close, reset or idle)."""
        r = self.net.run(self.ns["client"], PY, str(REPO / "tests/trickle_http.py"), "fetch",
                         SERVER, str(PORT), path, timeout=30)
        return bytes.fromhex(json.loads(r.stdout)["received"])

    def eve(self) -> list[dict[str, Any]]:
        path = self.dir / "log" / "eve.json"
        return [json.loads(line) for line in path.read_text().splitlines()] \
            if path.exists() else []

    def alerts(self, needle: str) -> list[dict[str, Any]]:
        return [e for e in self.eve() if e["event_type"] == "alert"
                and needle in e["alert"]["signature"]]


@pytest.fixture(scope="module")
def wall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wall]:
    d = tmp_path_factory.mktemp("filehold")
    www = d / "www"
    www.mkdir()
    (www / "eicar.com").write_bytes(EICAR)
    (www / "benign.txt").write_bytes(BENIGN)
    (www / "marked.bin").write_bytes(yara_file(2000))
    with running_clamd(d / "clamd") as clamd, inflight_wall(d, www, [
            "--clamd-socket", str(clamd.socket), "--yara-dir", str(write_yara(d / "yara")),
            "--scan-timeout", "5"]) as w:
        yield Wall(w.net, w.ns, d, clamd)


def whole(shape: str, body: bytes) -> bytes:
    return b"".join(response(shape, body))


def body_of(shape: str, wire: bytes) -> bytes:
    """The file a complete response carries (the guest's own decoding)."""
    body = wire.split(b"\r\n\r\n", 1)[1]
    if shape == "gzip":
        return gzip.decompress(body)
    if shape == "chunked":
        out, rest = b"", body
        while True:
            size, rest = rest.split(b"\r\n", 1)
            if int(size, 16) == 0:
                return out
            out, rest = out + rest[:int(size, 16)], rest[int(size, 16) + 2:]
    return body


@pytest.mark.parametrize("shape", SHAPES)
def test_a_benign_file_of_the_same_size_arrives_whole(wall: Wall, shape: str) -> None:
    got = wall.fetch(f"/{shape}/benign.txt")
    assert got == whole(shape, BENIGN)
    assert body_of(shape, got) == BENIGN


@pytest.mark.parametrize("shape", SHAPES)
def test_eicar_never_reaches_the_guest_whole_and_the_alert_names_it(wall: Wall,
                                                                    shape: str) -> None:
    sent = whole(shape, EICAR)
    got = wall.fetch(f"/{shape}/eicar.com")
    assert sent.startswith(got), "the guest got bytes that were not sent in order"
    assert len(got) < len(sent), "the response arrived whole"
    # the file's last bytes (in the gzip shape: the compressed stream's end) never arrive
    tail = sent[-8:] if shape != "chunked" else EICAR[-8:]
    assert tail not in got
    url = f"/{shape}/eicar.com"

    def alert() -> dict[str, Any] | None:
        flows = {e["flow_id"] for e in wall.eve()
                 if e["event_type"] == "fileinfo" and e["http"]["url"] == url}
        return next((a for a in wall.alerts(EICAR_SIG) if a["flow_id"] in flows), None)
    a = wait_for(f"the scanner's alert on {url} in eve.json", alert)
    assert a["alert"]["action"] == "blocked"
    assert a["hyperwall"]["domain"] == "family" and a["dest_ip"] == CLIENT
    [f] = a["files"]
    assert (f["filename"], f["sha256"]) == ("eicar.com", hashlib.sha256(EICAR).hexdigest())
    assert a["alert"]["signature"].startswith(f"clamav: {EICAR_SIG}")


def test_a_file_only_the_yara_rule_knows_is_stopped_too(wall: Wall) -> None:
    sent = whole("plain", yara_file(2000))
    got = wall.fetch("/plain/marked.bin")
    assert len(got) < len(sent) and sent.startswith(got)
    [a] = wait_for("the YARA alert", lambda: wall.alerts(YARA_RULE))
    assert a["alert"]["action"] == "blocked" and a["files"][0]["filename"] == "marked.bin"
    assert a["alert"]["signature"].startswith("yara: ")


def test_with_clamd_gone_a_download_fails_closed(wall: Wall) -> None:
    assert wall.fetch("/plain/benign.txt") == whole("plain", BENIGN)   # positive control
    stop_clamd(wall.clamd)
    got = wall.fetch("/plain/benign.txt")
    assert len(got) < len(whole("plain", BENIGN))
    down = wait_for("the scanner-down alert", lambda: wall.alerts("scanner down"))
    assert down[0]["alert"]["action"] == "blocked"
    assert down[0]["hyperwall"]["domain"] == "family"
