"""Files at rest and recovery on the real platform (dom0d, the ns backend, sys-sec) with a
real clamd: files dropped into family's tree are found by `hyperwall scan family` (in
sys-sec, through a view dom0 shows it), reported by `hyperwall alerts`, quarantined by the
family's on_infection, and `hyperwall recover family --action reset` brings family back
with its clean Documents kept and nothing else of what it wrote."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dom0.config import STANDARD_DIR
from dom0.sim.embedded import Platform
from tests.clamd_lab import (
    CUSTOM_SIG,
    EICAR,
    EICAR_SIG,
    Clamd,
    custom_file,
    start_clamd,
    stop_clamd,
    write_database,
)
from tests.conftest import started

pytestmark = [pytest.mark.root, pytest.mark.slow]

FIRST_DOMID = 2600 + (os.getpid() % 300) * 20
DOCS = "/home/user/Documents"


@contextlib.asynccontextmanager
async def running(family: str, *dom0d_args: str, domid: int = FIRST_DOMID
                  ) -> AsyncIterator[Platform]:
    config = {"sys-sec.toml": (STANDARD_DIR / "sys-sec.toml").read_text(),
              "family.toml": family}
    async with started(Platform(config, first_domid=domid, dom0d_args=dom0d_args)) as p:
        code, _, err = await p.cli("up", timeout=120)
        assert code == 0, err + p.log_text()[-3000:]
        yield p


@pytest.fixture
async def platform() -> AsyncIterator[Platform]:
    async with running((STANDARD_DIR / "family.toml").read_text()) as p:
        yield p


@contextlib.contextmanager
def clamd_for(platform: Platform) -> Iterator[Clamd]:
    # where sys-sec's controller runs clamd, which dom0d's default --clamd-socket names
    folder = Path(tempfile.mkdtemp(prefix="hwclamd-"))
    sock = platform.sys_sec_dir / "run" / "clamd.sock"
    sock.parent.mkdir(parents=True, exist_ok=True)
    c = start_clamd(folder, write_database(folder / "db"), sock=sock)
    try:
        yield c
    finally:
        stop_clamd(c)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def clamd(platform: Platform) -> Iterator[Clamd]:
    with clamd_for(platform) as c:
        yield c


async def put(p: Platform, path: str, data: bytes) -> None:
    """Write a file inside family, as something running there would."""
    code, _, err = await p.cli("exec", "family", "--", sys.executable, "-c",
                               "import os,sys; os.makedirs(os.path.dirname(sys.argv[1]), "
                               "exist_ok=True); open(sys.argv[1], 'wb').write("
                               "bytes.fromhex(sys.argv[2]))", path, data.hex())
    assert code == 0, err


async def exists(p: Platform, path: str) -> bool:
    code, _, _ = await p.cli("exec", "family", "--", "test", "-e", path)
    return code == 0


async def read(p: Platform, path: str) -> str:
    code, out, err = await p.cli("exec", "family", "--", "cat", path)
    assert code == 0, err
    return out


def quarantined(p: Platform) -> list[dict]:
    index = p.state_dir / "quarantine" / "index.jsonl"
    return [json.loads(x) for x in index.read_text().splitlines()] if index.exists() else []


async def test_scan_quarantine_and_reset(platform: Platform, clamd: Clamd) -> None:
    p = platform
    await put(p, "/home/user/Downloads/eicar.com", EICAR)
    await put(p, f"{DOCS}/invoice.pdf", custom_file())
    await put(p, f"{DOCS}/letter.txt", b"dear grandma\n" * 50)
    await put(p, "/home/user/game/installed.bin", b"a game the child installed\n")
    code, _, err = await p.cli("exec", "family", "--", "ln", "-s", "/etc/passwd",
                               f"{DOCS}/escape")
    assert code == 0, err

    # report only: both found, with their paths and hashes; the benign files clean
    code, out, err = await p.cli("--json", "scan", "family", "--no-policy", timeout=120)
    assert code == 3, err + p.log_text()[-3000:]
    done = json.loads(out)
    [result] = done["scans"]
    found = {f["path"]: f for f in result["infected"]}
    assert set(found) == {"home/user/Downloads/eicar.com", "home/user/Documents/invoice.pdf"}
    assert found["home/user/Downloads/eicar.com"]["sha256"] == hashlib.sha256(EICAR).hexdigest()
    assert {f["signature"].removesuffix(".UNOFFICIAL")
            for f in found["home/user/Downloads/eicar.com"]["findings"]} == {EICAR_SIG}
    assert result["errors"] == 0 and result["files"] >= 4
    assert not done["steps"] and not quarantined(p)
    assert await exists(p, "/home/user/Downloads/eicar.com")

    # sys-sec's EVE log holds them: the owner's alerts and report show them
    code, out, err = await p.cli("--json", "alerts", "--domain", "family")
    assert code == 0, err
    sigs = [json.loads(line)["signature"] for line in out.splitlines()]
    assert any(EICAR_SIG in s and "eicar.com" in s for s in sigs), sigs
    code, out, err = await p.cli("report", "--domain", "family")
    assert code == 0 and CUSTOM_SIG in out, out + err

    # family's on_infection is quarantine: moved out, hashes recorded, the rest untouched
    code, out, err = await p.cli("scan", "family", timeout=120)
    assert code == 0, err + p.log_text()[-3000:]
    assert "moved to quarantine" in out and "unpaused" in out, out
    assert "family: 5 files" in err and "2 infected" in err, err    # progress, on stderr
    q = {e["origin"]: e for e in quarantined(p)}
    assert set(q) == {"home/user/Downloads/eicar.com", "home/user/Documents/invoice.pdf"}
    assert q["home/user/Downloads/eicar.com"]["sha256"] == hashlib.sha256(EICAR).hexdigest()
    assert (p.state_dir / "quarantine" / q["home/user/Downloads/eicar.com"]["id"]
            ).read_bytes() == EICAR
    assert not await exists(p, "/home/user/Downloads/eicar.com")
    assert not await exists(p, f"{DOCS}/invoice.pdf")
    assert await exists(p, f"{DOCS}/letter.txt")

    # something infected in Documents again, then a reset: the clean Documents come back,
    # the infected one goes to quarantine, everything else family wrote is gone
    await put(p, f"{DOCS}/report.pdf", custom_file())
    code, out, err = await p.cli("--json", "recover", "family", "--action", "reset",
                                 timeout=180)
    assert code == 0, err + p.log_text()[-3000:]
    steps = [s["detail"] for s in json.loads(out)["steps"]]
    assert any("kept 1 clean files" in s for s in steps), steps
    assert "started again" in steps
    code, out, err = await p.cli("--json", "get", "family")
    assert json.loads(out)["state"] == "running", err
    assert await read(p, f"{DOCS}/letter.txt") == "dear grandma\n" * 50
    assert not await exists(p, f"{DOCS}/report.pdf")
    assert not await exists(p, f"{DOCS}/escape")
    assert not await exists(p, "/home/user/game/installed.bin")
    assert "home/user/Documents/report.pdf" in {e["origin"] for e in quarantined(p)}
    # the old layer is gone; nothing left aside
    assert not list((p.state_dir / "ns" / "domains" / "family").glob("upper.reset-*"))

    # every step is an event dom0 recorded
    log = p.log_text()
    for needle in ("scan family", "found", "recovery family", "reset: started again"):
        assert needle in log, needle


async def test_offline_and_refusals(platform: Platform) -> None:
    p = platform
    code, out, err = await p.cli("recover", "family", "--action", "offline")
    assert code == 0 and "offline" in out, err
    code, out, _ = await p.cli("--json", "get", "family")
    assert json.loads(out)["policy"] == "offline"
    sys_sec, family = p.domid("sys-sec"), p.domid("family")
    with p.xenstore() as xs:
        assert xs.read(f"/local/domain/{sys_sec}/backend/vif/{family}/0/hyperwall/policy") \
            == b"offline"
    code, _, err = await p.cli("scan", "sys-sec")
    assert code == 1 and "security domain" in err
    code, _, err = await p.cli("scan", "family", "../etc")
    assert code == 1 and "leaves the domain's tree" in err, err


async def test_the_scheduled_scan_finds_and_quarantines() -> None:
    # the shortest period a definition may give; dom0d looks for due scans every second
    family = (STANDARD_DIR / "family.toml").read_text().replace('scan_every = "6h"',
                                                                 'scan_every = "1m"')
    assert 'scan_every = "1m"' in family
    async with running(family, "--scan-tick", "1", domid=FIRST_DOMID + 10) as p:
        with clamd_for(p):
            await put(p, "/home/user/Downloads/later.com", EICAR)
            deadline = asyncio.get_running_loop().time() + 150
            while not any(e["origin"] == "home/user/Downloads/later.com"
                          for e in quarantined(p)):
                assert asyncio.get_running_loop().time() < deadline, p.log_text()[-3000:]
                await asyncio.sleep(1)   # the index is a file: nothing to wait on but it
            assert not await exists(p, "/home/user/Downloads/later.com")
            assert "scan family" in p.log_text()


async def test_an_in_flight_verdict_applies_on_infection() -> None:
    family = (STANDARD_DIR / "family.toml").read_text().replace(
        'on_infection = "quarantine"', 'on_infection = "offline"')
    assert 'on_infection = "offline"' in family
    async with running(family, domid=FIRST_DOMID + 15) as p:
        sys_sec, fam = p.domid("sys-sec"), p.domid("family")
        key = f"/local/domain/{sys_sec}/backend/vif/{fam}/0/hyperwall/policy"
        with p.xenstore() as xs:
            assert xs.read(key) == b"filtered"     # the control: not offline before
        # the record sys-sec's file hold writes when it stops an infected download
        # (domains/syssec/filehold.py), as the engine appends it to its log
        record = {"timestamp": "2026-12-04T13:00:00.000000+0000", "event_type": "alert",
                  "alert": {"action": "blocked", "signature_id": 0,
                            "signature": "clamav: Hyperwall.Test.EICAR in eicar.com"},
                  "scan": {"outcome": "infected", "error": "", "findings": [
                      {"scanner": "clamav", "signature": "Hyperwall.Test.EICAR"}]},
                  "hyperwall": {"domain": "family", "guest": "family"}}
        deadline = asyncio.get_running_loop().time() + 20
        with p.xenstore() as xs:
            while xs.read(key) != b"offline":
                assert asyncio.get_running_loop().time() < deadline, p.log_text()[-3000:]
                # again until seen: dom0d follows the log from when it first finds sys-sec's
                # log folder, which may be just after `up` returns
                with open(p.sys_sec_dir / "log" / "eve.json", "a") as f:
                    f.write(json.dumps(record) + "\n")
                await asyncio.sleep(1)
        assert "stopped on its way to family" in p.log_text()
