"""Verified bundles applied atomically or not at all (domains/syssec/updates.py); how bundles are
built and verified is tested in test_bundle_build.py and test_bundle_verify.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from domains.syssec.updates import Updater
from netsec.trust import TrustStore
from tests.bundle_helpers import KEY, NOW, RULE, make, public_pem


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "provider.rules").write_text(RULE.format(n=1))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "adult.txt").write_text("adult.example\n")
    (tmp_path / "policy.toml").write_text('[schedules]\nadult = ["mon-sun 00:00-23:59"]\n')
    return tmp_path



@pytest.fixture
def updater(tmp_path: Path) -> tuple[Updater, TrustStore, list[str]]:
    trust = TrustStore(tmp_path / "provider")
    trust.enroll(None, [public_pem(KEY)], provider="acme")
    reloads: list[str] = []
    return Updater(trust, tmp_path / "bundles", lambda: reloads.append("reload"),
                   clock=lambda: NOW), trust, reloads


def current(u: Updater) -> str | None:
    link = u.bundles / "current"
    return link.resolve().name if link.is_symlink() else None


def test_apply_swaps_keeps_the_previous_and_never_goes_back(inputs: Path, updater) -> None:  # type: ignore[no-untyped-def]
    u, trust, reloads = updater
    assert u.apply(make(inputs, version=1), "test").applied
    (inputs / "rules" / "provider.rules").write_text(RULE.format(n=2))
    assert u.apply(make(inputs, version=2), "test").applied
    assert (current(u), (u.bundles / "previous").resolve().name) == ("2", "1")
    assert reloads == ["reload", "reload"] and trust.load().last_version == 2
    replay = u.apply(make(inputs, version=1), "test")
    assert not replay.applied and "not newer" in replay.reason and current(u) == "2"
    events = [json.loads(line) for line in (u.bundles / "events.jsonl").read_text().splitlines()]
    assert [e["applied"] for e in events] == [True, True, False]


def test_a_bundle_failing_its_self_test_changes_nothing(inputs: Path, updater) -> None:  # type: ignore[no-untyped-def]
    u, trust, reloads = updater
    assert u.apply(make(inputs, version=1), "test").applied
    (inputs / "rules" / "provider.rules").write_text(
        'drop http any any -> any any (msg:"drops everything"; sid:5; rev:1;)\n')
    out = u.apply(make(inputs, version=2), "test")
    assert not out.applied and "self-test failed" in out.reason
    assert current(u) == "1" and trust.load().last_version == 1 and reloads == ["reload"]


def test_the_engine_refusing_the_new_rules_rolls_back(inputs: Path, tmp_path: Path) -> None:
    trust = TrustStore(tmp_path / "provider")
    trust.enroll(None, [public_pem(KEY)], provider="acme")
    calls: list[str] = []

    def reload() -> None:
        calls.append("reload")
        if len(calls) == 2:
            raise OSError("ipsd is not running")
    u = Updater(trust, tmp_path / "bundles", reload, clock=lambda: NOW)
    assert u.apply(make(inputs, version=1), "test").applied
    out = u.apply(make(inputs, version=2), "test")
    assert not out.applied and "rolled back" in out.reason
    assert current(u) == "1" and calls == ["reload"] * 3 and trust.load().last_version == 1


def test_a_revoked_or_unenrolled_provider_gets_nothing_applied(inputs: Path, updater) -> None:  # type: ignore[no-untyped-def]
    u, trust, _ = updater
    trust.revoke()
    out = u.apply(make(inputs), "test")
    assert not out.applied and "revoked" in out.reason and current(u) is None
    fresh = Updater(TrustStore(u.bundles.parent / "nobody"), u.bundles, lambda: None)
    assert "no provider is enrolled" in fresh.apply(make(inputs), "test").reason
