"""A provider's bundle carrying a ClamAV database and YARA rules, applied in sys-sec: staged
(YARA compiled, the database loaded by a throwaway clamscan), swapped in, and the running
clamd (under the controller's supervisor) told to RELOAD, serving the old database until
the new one is in. A bundle whose database does not load or whose rules do not compile is
refused by file name with its events.jsonl line, and the old database stays in force.
Observed by scanning through the live clamd's socket."""
from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.bundle import BuildError, assemble, collect
from domains.syssec.antivirus import ClamdScanner, YaraScanner
from domains.syssec.controller import Controller, Launch, Settings
from domains.syssec.updates import APPLIED, INVALID, Updater
from netsec.filescan import Outcome
from netsec.trust import TrustStore
from tests.bundle_helpers import KEY, NOW, RULE, make, public_pem
from tests.clamd_lab import (
    EICAR,
    YARA_RULE,
    custom_file,
    short_folder,
    write_database,
    write_yara,
    yara_file,
)

pytestmark = pytest.mark.root
NEW = custom_file(5000)      # the hash bundle 2 adds


@pytest.fixture
def state() -> Iterator[Path]:
    with short_folder("hwbscan-") as folder:
        yield folder


def inputs(root: Path, custom: bytes | None = None) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    (root / "rules").mkdir(parents=True)
    (root / "rules" / "provider.rules").write_text(RULE.format(n=1))
    (root / "lists").mkdir()
    (root / "lists" / "adult.txt").write_text("adult.example\n")
    (root / "policy.toml").write_text("")
    write_database(root / "clamav", custom)
    write_yara(root / "yara")
    return root


def events(state: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in
            (state / "bundles" / "events.jsonl").read_text().splitlines()]


def current(state: Path) -> str:
    return (state / "bundles" / "current").readlink().name


async def test_clamav_and_yara_bundles_applied_and_broken_ones_refused(state: Path) -> None:
    trust = TrustStore(state / "provider")
    trust.enroll(None, [public_pem(KEY)], provider="acme")
    ctl = Controller(None, state, Settings(),
                     Launch(lists=state / "lists", rules_dir=state / "run", engine=False))
    updater = Updater(trust, state / "bundles", ctl.reload_content, clock=lambda: NOW)

    async def apply(data: bytes):  # type: ignore[no-untyped-def]
        # as the provider channel does: off the loop, where the supervisor runs clamd
        return await asyncio.to_thread(updater.apply, data)

    first = await apply(make(inputs(state / "in"), version=1))
    assert first.applied, first
    assert first.reason == "applied bundle 1 of acme (clamav: 2 files, yara: 1 file)"
    yara = YaraScanner.from_dir(state / "bundles" / "current" / "yara")
    assert yara.scan(yara_file(), "y").findings[0].signature == f"hyperwall-test:{YARA_RULE}"

    sup = ctl.supervise_clamd()
    assert sup is not None
    task = asyncio.ensure_future(sup.run())
    clam = ClamdScanner(ctl.clamd_socket)
    try:
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(clam.ping):
            assert time.monotonic() < deadline, "clamd did not come up on bundle 1"
            await asyncio.sleep(0.05)
        assert (await asyncio.to_thread(clam.scan, EICAR, "e")).outcome is Outcome.INFECTED
        assert (await asyncio.to_thread(clam.scan, NEW, "n")).outcome is Outcome.CLEAN
        pid = sup.pid

        # bundle 2: a new hash; clamd reloads while serving, EICAR found throughout
        second = await apply(make(inputs(state / "in", NEW), version=2))
        assert second.applied and second.kind == APPLIED, second
        deadline = time.monotonic() + 30
        while (await asyncio.to_thread(clam.scan, NEW, "n")).outcome is not Outcome.INFECTED:
            assert time.monotonic() < deadline, "clamd did not load bundle 2's database"
            eicar = await asyncio.to_thread(clam.scan, EICAR, "e")
            assert eicar.outcome is Outcome.INFECTED, f"a gap in the reload: {eicar}"
            await asyncio.sleep(0.05)
        assert sup.pid == pid, "clamd was restarted, not reloaded"

        # bundle 3: a database that does not load, refused at staging by its file's name
        broken = inputs(state / "in", NEW)
        (broken / "clamav" / "broken.ldb").write_text("not a logical signature\n")
        third = await apply(make(broken, version=3))
        assert not third.applied and third.kind == INVALID and third.step == "stage", third
        assert "clamav/broken.ldb" in third.reason and "Malformed database" in third.reason
        assert events(state)[-1]["reason"] == third.reason
        assert events(state)[-1]["step"] == "stage"
        assert current(state) == "2"

        # bundle 4: YARA that does not compile; the builder refuses it, so by hand
        bad = inputs(state / "in", NEW)
        (bad / "yara" / "bad.yar").write_text("rule bad { condition: nosuchthing }\n")
        with pytest.raises(BuildError, match="bad.yar"):
            make(bad, version=4)
        (bad / "yara" / "bad.yar").unlink()
        files = collect(bad / "rules", bad / "lists", bad / "policy.toml", None,
                        bad / "clamav", bad / "yara")
        files["yara/bad.yar"] = b"rule bad { condition: nosuchthing }\n"
        fourth = await apply(assemble(files, key=KEY, provider="acme", version=4,
                                      created=NOW, valid_days=30))
        assert not fourth.applied and fourth.step == "stage", fourth
        assert "yara/bad.yar" in fourth.reason, fourth.reason
        assert events(state)[-1]["reason"] == fourth.reason

        # bundle 5: the database altered after signing
        data = bytearray(make(inputs(state / "in"), version=5))
        at = data.find(b"Hyperwall.Test.Custom")
        data[at] ^= 0x20
        fifth = await apply(bytes(data))
        assert not fifth.applied and fifth.step == "verify", fifth
        assert "clamav/hyperwall-test.hdb" in fifth.reason and "altered" in fifth.reason
        assert events(state)[-1]["reason"] == fifth.reason

        # bundle 2's database is still the one clamd serves
        assert current(state) == "2"
        assert (await asyncio.to_thread(clam.scan, NEW, "n")).outcome is Outcome.INFECTED
        assert (await asyncio.to_thread(clam.scan, EICAR, "e")).outcome is Outcome.INFECTED
        assert sup.pid == pid
    finally:
        await ctl.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
