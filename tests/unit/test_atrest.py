"""dom0's side of scans at rest, the parts that need no platform: what a scan's records
say was found, when a scheduled scan is due, refusals, the xen backend's answer, and the
checked copy a reset keeps a persist file by."""
from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path, PurePosixPath

import pytest

from dom0.backends.base import BackendError
from dom0.backends.xen import GuestImages, XenBackend
from dom0.config import DomainSpec
from dom0.model import InvalidState
from dom0.toolstack.atrest import AtRest, InFlight, ScanOutcome, _copy_checked
from dom0.toolstack.domains import Registry
from dom0.toolstack.events import Events
from netsec.filescan import Finding


def test_outcome_from_records() -> None:
    o = ScanOutcome("family", "s1")
    o.take({"event_type": "fileinfo", "hyperwall": {"path": "a", "sha256": "1",
                                                    "verdict": "infected"}})
    for sig in ("X", "Y"):
        o.take({"event_type": "alert", "hyperwall": {"path": "a", "sha256": "1",
                                                     "scanner": "clamav", "finding": sig}})
    o.take({"event_type": "fileinfo", "hyperwall": {"path": "b", "sha256": "2",
                                                    "verdict": "clean"}})
    o.take({"event_type": "scan", "scan": {"files": 2, "errors": 0}})
    assert o.verdicts == {"a": ("infected", "1"), "b": ("clean", "2")}
    assert o.infected["a"].findings == [Finding("clamav", "X"), Finding("clamav", "Y")]
    assert o.as_json()["infected"] == [{"path": "a", "sha256": "1", "findings": [
        {"scanner": "clamav", "signature": "X"}, {"scanner": "clamav", "signature": "Y"}]}]
    assert o.files == 2


def atrest(specs: dict[str, DomainSpec], tmp_path: Path) -> AtRest:
    registry = Registry(specs, store=None, backends={}, xs_rundir=tmp_path)  # type: ignore[arg-type]
    return AtRest(registry, Events(), lifecycle=None, quarantine_dir=tmp_path / "q")  # type: ignore[arg-type]


def test_scheduled_scans_come_due_every_period_for_domains_that_exist(tmp_path: Path) -> None:
    specs = {"sys-sec": DomainSpec("sys-sec", "sys-sec", scan_every=60),
             "family": DomainSpec("family", "app", scan_every=3600),
             "work": DomainSpec("work", "app")}
    a = atrest(specs, tmp_path)
    a.registry.domains["family"] = object()  # type: ignore[assignment]
    assert a.due(1000.0) == []                  # the period counts from dom0d's start
    assert a.due(1000.0 + 3599) == []
    assert a.due(1000.0 + 3600) == ["family"]
    a._busy.add("family")
    assert a.due(1000.0 + 9999) == []           # not while it is scanned or recovered
    a._busy.clear()
    del a.registry.domains["family"]
    assert a.due(1000.0 + 9999) == []           # never created: nothing written to scan


def test_sys_sec_is_not_scanned_and_a_recover_needs_an_action(tmp_path: Path) -> None:
    specs = {"sys-sec": DomainSpec("sys-sec", "sys-sec"), "work": DomainSpec("work", "app")}
    a = atrest(specs, tmp_path)

    async def first(it: object) -> object:
        return await anext(it)  # type: ignore[call-overload]
    with pytest.raises(InvalidState, match="security domain"):
        asyncio.run(first(a.scan("sys-sec")))
    with pytest.raises(InvalidState, match="needs an action"):
        asyncio.run(first(a.recover("work")))       # on_infection "alert" is no action


def test_xen_says_what_a_scan_at_rest_would_take(tmp_path: Path) -> None:
    xen = XenBackend(tmp_path, GuestImages.in_folder(tmp_path), None)  # type: ignore[arg-type]
    with pytest.raises(BackendError, match="read-only vbd"):
        xen.writable_layer(DomainSpec("family", "app", backend="xen"))


def test_copy_checked_keeps_only_what_was_scanned(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "Documents/sub").mkdir(parents=True)
    (old / "Documents/sub").chmod(0o750)
    (old / "Documents/sub/a.txt").write_bytes(b"scanned")
    new.mkdir()
    rel = PurePosixPath("Documents/sub/a.txt")
    assert not _copy_checked(old, new, rel, hashlib.sha256(b"other").hexdigest())
    assert not (new / rel).exists()
    assert _copy_checked(old, new, rel, hashlib.sha256(b"scanned").hexdigest())
    assert (new / rel).read_bytes() == b"scanned"
    assert (new / "Documents/sub").stat().st_mode & 0o777 == 0o750
    # a link on the way is never followed
    (old / "Links").symlink_to(old / "Documents")
    assert not _copy_checked(old, new, PurePosixPath("Links/sub/a.txt"),
                             hashlib.sha256(b"scanned").hexdigest())


def in_flight_alert(domain: str, outcome: str = "infected", **hw: str) -> dict:
    # the shape sys-sec's file hold writes (domains/syssec/filehold.py's _alert)
    return {"event_type": "alert", "alert": {"signature": "clamav: EICAR in eicar.com"},
            "scan": {"outcome": outcome, "error": "", "findings": [
                {"scanner": "clamav", "signature": "EICAR"}]},
            "hyperwall": {"domain": domain, **hw}}


def test_in_flight_verdicts_call_for_on_infection_once_per_burst() -> None:
    specs = {"sys-sec": DomainSpec("sys-sec", "sys-sec"),
             "family": DomainSpec("family", "app", on_infection="reset"),
             "work": DomainSpec("work", "app")}
    f = InFlight(quiet=60)
    assert f.action(in_flight_alert("family"), specs, 0.0) == ("family", "reset")
    assert f.action(in_flight_alert("family"), specs, 30.0) is None      # same burst
    assert f.action(in_flight_alert("family"), specs, 61.0) == ("family", "reset")
    assert f.action(in_flight_alert("work"), specs, 0.0) is None         # policy: alert
    assert f.action(in_flight_alert("family", "error"), specs, 500.0) is None
    assert f.action(in_flight_alert("family", source="at-rest"), specs, 500.0) is None
    assert f.action(in_flight_alert("nobody"), specs, 500.0) is None
    assert f.action({"event_type": "fileinfo", "hyperwall": {"domain": "family"}},
                    specs, 500.0) is None
