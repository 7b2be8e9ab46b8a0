"""Provider bundles: built reproducibly, verified strictly, applied atomically or not at all."""
from __future__ import annotations

import datetime as dt
import io
import json
import tarfile
from pathlib import Path

import pytest

from netsec.bundle import BundleError, key_id, verify
from netsec.trust import TrustError, TrustStore
from netsec.updates import Updater
from tests.bundle_helpers import KEY, NOW, OTHER, RULE, make, public_pem, trusted


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "provider.rules").write_text(RULE.format(n=1))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "adult.txt").write_text("adult.example\n")
    (tmp_path / "policy.toml").write_text('[schedules]\nadult = ["mon-sun 00:00-23:59"]\n')
    return tmp_path



def test_same_inputs_same_bytes_and_it_verifies(inputs: Path) -> None:
    assert make(inputs) == make(inputs)
    b = verify(make(inputs), trusted(), now=NOW, min_version=0)
    assert (b.provider, b.version) == ("acme", 1)
    assert "rules/provider.rules" in b.rules and b.lists == {"adult": "adult.example\n"}


def rewrite(data: bytes, name: str, change) -> bytes:  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, \
            tarfile.open(fileobj=out, mode="w:", format=tarfile.USTAR_FORMAT) as dst:
        for info in src:
            content = src.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == name:
                content = change(content)
                info.size = len(content)
            dst.addfile(info, io.BytesIO(content))
    return out.getvalue()


@pytest.mark.parametrize(("tamper", "reason"), [
    (lambda d: rewrite(d, "rules/provider.rules", lambda c: c.replace(b"evil1", b"good1")),
     "rules/provider.rules: does not match the manifest"),
    (lambda d: rewrite(d, "manifest.json", lambda c: c.replace(b'"version": 1', b'"version": 9')),
     "signed by 0 of the enrolled keys"),
    (lambda d: rewrite(d, "signatures.json", lambda c: c.replace(b'"sig": "', b'"sig": "AA')),
     "signed by 0 of the enrolled keys"),
    (lambda d: d[: len(d) // 2], "not a readable bundle"),
    (lambda d: b"garbage" * 10, "not a readable bundle"),
])
def test_a_tampered_or_truncated_bundle_is_refused(inputs: Path, tamper, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BundleError, match=reason):
        verify(tamper(make(inputs)), trusted(), now=NOW, min_version=0)


def test_wrong_key_expired_and_replayed_bundles_are_refused(inputs: Path) -> None:
    with pytest.raises(BundleError, match="signed by 0 of the enrolled keys"):
        verify(make(inputs, key=OTHER), trusted(), now=NOW, min_version=0)
    with pytest.raises(BundleError, match="expired"):
        verify(make(inputs, days=1), trusted(), now=NOW + dt.timedelta(days=2), min_version=0)
    with pytest.raises(BundleError, match="version 3 is not newer than the applied 3"):
        verify(make(inputs, version=3), trusted(), now=NOW, min_version=3)


def test_a_policy_reaching_beyond_sys_sec_is_refused(inputs: Path) -> None:
    (inputs / "policy.toml").write_text('[domains.work]\npolicy = "internet"\n')
    with pytest.raises(BundleError, match="'domains' is not the provider's to set"):
        verify(make(inputs), trusted(), now=NOW, min_version=0)


def test_a_path_escaping_the_bundle_is_refused(inputs: Path) -> None:
    evil = rewrite(make(inputs), "policy.toml", lambda c: c)
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(evil)) as src, tarfile.open(fileobj=out, mode="w:") \
            as dst:
        for info in src:
            dst.addfile(info, src.extractfile(info))
        info = tarfile.TarInfo("../../etc/passwd")
        info.size = 1
        dst.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(BundleError, match="a path outside the bundle"):
        verify(out.getvalue(), trusted(), now=NOW, min_version=0)



@pytest.fixture
def updater(tmp_path: Path) -> tuple[Updater, TrustStore, list[str]]:
    trust = TrustStore(tmp_path / "provider")
    trust.enroll("acme", [public_pem(KEY)])
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
    trust.enroll("acme", [public_pem(KEY)])
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


def test_enroll_checks_everything_before_changing_anything(tmp_path: Path) -> None:
    trust = TrustStore(tmp_path / "provider")
    trust.enroll("acme", [public_pem(KEY)])
    for bad, says in ((lambda: trust.enroll("evil", [b"not a key"]), "not a public key"),
                      (lambda: trust.enroll("evil", [public_pem(OTHER)], threshold=2),
                       "threshold 2 with 1 key"),
                      (lambda: trust.enroll("evil", [public_pem(OTHER)], ca_pem=b"nope"),
                       "not a PEM certificate"),
                      (lambda: trust.enroll("evil", [public_pem(OTHER)], root_json=b"{}"),
                       "not TUF root metadata")):
        with pytest.raises(TrustError, match=says):
            bad()
    assert trust.load().provider == "acme" and list(trust.trusted_keys()) == [
        key_id(KEY.public_key())]
