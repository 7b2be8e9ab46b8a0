"""Updater.apply: a good bundle is staged, self-tested and flipped in; anything else is
refused with its reason and an event, and changes nothing (links, trust store, engine)."""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import wrpcap

from builder.bundle import assemble, build
from domains.syssec.updates import INVALID, REFUSED, Updater
from netsec.trust import TrustStore
from tests.bundle_helpers import KEY, NOW, OTHER, RULE, make, public_pem


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "in" / "rules").mkdir(parents=True)
    (tmp_path / "in" / "rules" / "provider.rules").write_text(RULE.format(n=1))
    (tmp_path / "in" / "lists").mkdir()
    (tmp_path / "in" / "lists" / "adult.txt").write_text("adult.example\n")
    (tmp_path / "in" / "policy.toml").write_text("")
    return tmp_path / "in"


class Engine:
    """What the updater signals: records reloads, refuses the ones it is told to."""

    def __init__(self, bundles: Path) -> None:
        self.bundles = bundles
        self.loaded: list[str | None] = []
        self.refuse: set[int] = set()    # which reloads (1-based) raise

    def reload(self) -> None:
        link = self.bundles / "current"
        self.loaded.append(os.readlink(link) if link.is_symlink() else None)
        if len(self.loaded) in self.refuse:
            raise OSError("ipsd refused the rules")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Updater, TrustStore, Engine]:
    trust = TrustStore(tmp_path / "provider")
    trust.enroll(None, [public_pem(KEY)], provider="acme")
    engine = Engine(tmp_path / "bundles")
    return Updater(trust, tmp_path / "bundles", engine.reload, clock=lambda: NOW), trust, engine


def snapshot(u: Updater) -> tuple:
    """Everything a refusal must leave alone."""
    links = {n: os.readlink(u.bundles / n) for n in ("current", "previous")
             if (u.bundles / n).is_symlink()}
    return (links, sorted(p.name for p in u.bundles.iterdir() if p.name != "events.jsonl"),
            u.trust.state_file.read_bytes())


def events(u: Updater) -> list[dict]:
    return [json.loads(line) for line in (u.bundles / "events.jsonl").read_text().splitlines()]


def truncate(data: bytes) -> bytes:
    """Cut inside the last file (a tar's zero padding alone would lose nothing)."""
    return data[: len(data.rstrip(b"\0")) - 10]


def tamper(data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, \
            tarfile.open(fileobj=out, mode="w:", format=tarfile.USTAR_FORMAT) as dst:
        for info in src:
            content = src.extractfile(info).read()  # type: ignore[union-attr]
            if info.name.startswith("rules/"):
                content = content.replace(b"evil", b"good")
            dst.addfile(info, io.BytesIO(content))
    return out.getvalue()


def test_a_good_bundle_is_flipped_in_and_the_one_before_kept(inputs: Path, setup) -> None:  # type: ignore[no-untyped-def]
    u, trust, engine = setup
    assert u.status().version is None
    first = u.apply(make(inputs, version=1), "test")
    assert first.applied and first.provider == "acme"
    (inputs / "rules" / "provider.rules").write_text(RULE.format(n=2))
    assert u.apply(make(inputs, version=2), "push").applied
    status = u.status()
    assert (status.version, status.previous) == (2, 1) and status.applied_at is not None
    assert engine.loaded == ["1", "2"] and trust.load().last_version == 2
    assert "evil2" in (u.bundles / "current" / "rules" / "provider.rules").read_text()
    assert (u.bundles / "current" / "lists" / "adult.txt").exists()
    assert not [p for p in u.bundles.iterdir() if p.name.startswith(".")]
    assert [(e["applied"], e["version"], e["source"]) for e in events(u)] == [
        (True, 1, "test"), (True, 2, "push")]


@pytest.mark.parametrize(("bad", "kind", "says"), [
    (lambda i: tamper(make(i, version=2)), INVALID, "does not match the manifest"),
    (lambda i: truncate(make(i, version=2)), INVALID, "truncated"),
    (lambda i: make(i, version=2, key=OTHER), INVALID, "not a key the owner enrolled"),
    (lambda i: make(i, version=1), REFUSED, "version 1 is not newer than the applied 1"),
    (lambda i: make(i, version=2, days=1, created=NOW - dt.timedelta(days=2)), REFUSED,
     "expired"),
])
def test_a_bad_bundle_is_refused_with_its_reason_and_changes_nothing(
        inputs: Path, setup, bad, kind: str, says: str) -> None:  # type: ignore[no-untyped-def]
    u, _, engine = setup
    assert u.apply(make(inputs, version=1)).applied
    before = snapshot(u)
    out = u.apply(bad(inputs), "test")
    assert (out.applied, out.kind, out.step) == (False, kind, "verify")
    assert says in out.reason
    assert snapshot(u) == before and engine.loaded == ["1"]
    assert events(u)[-1]["reason"] == out.reason and not events(u)[-1]["applied"]


def test_a_policy_naming_a_domain_is_refused(inputs: Path, setup) -> None:  # type: ignore[no-untyped-def]
    u, _, engine = setup
    # signed by the enrolled key; the builder refuses to make such a bundle, so by hand
    out = u.apply(assemble({"rules/p.rules": RULE.format(n=1).encode(),
                            "policy.toml": b'[domains.work]\npolicy = "internet"\n'},
                           key=KEY, provider="acme", version=1, created=NOW, valid_days=30))
    assert (out.applied, out.kind) == (False, INVALID)
    assert "'domains' is not the provider's to set" in out.reason
    assert u.status().version is None and engine.loaded == []


def test_a_failing_self_test_leaves_the_old_rules_and_links(inputs: Path, setup) -> None:  # type: ignore[no-untyped-def]
    u, trust, engine = setup
    assert u.apply(make(inputs, version=1)).applied
    before = snapshot(u)
    (inputs / "rules" / "provider.rules").write_text(
        'drop http any any -> any any (msg:"drops every page"; sid:5; rev:1;)\n')
    out = u.apply(make(inputs, version=2))
    assert (out.applied, out.kind, out.step) == (False, INVALID, "stage")
    assert "self-test failed" in out.reason and "sid 5 (drops every page)" in out.reason
    assert snapshot(u) == before and engine.loaded == ["1"] and trust.last_version == 1


def test_rules_that_do_not_load_are_refused(inputs: Path, setup) -> None:  # type: ignore[no-untyped-def]
    u, _, engine = setup
    (inputs / "rules" / "provider.rules").write_text("alert nonsense\n")
    out = u.apply(make(inputs))
    assert (out.applied, out.step) == (False, "stage") and "no rule of the bundle loads" \
        in out.reason
    assert engine.loaded == [] and u.status().version is None


def test_a_failed_reload_puts_both_links_back_and_reloads_the_old_rules(
        inputs: Path, setup) -> None:  # type: ignore[no-untyped-def]
    u, trust, engine = setup
    assert u.apply(make(inputs, version=1)).applied
    assert u.apply(make(inputs, version=2)).applied
    before = snapshot(u)
    engine.refuse = {3}
    out = u.apply(make(inputs, version=3))
    assert (out.applied, out.kind, out.step) == (False, REFUSED, "reload")
    assert "ipsd refused the rules" in out.reason and "rolled back" in out.reason
    # the engine saw 3, refused it, and was reloaded on 2; previous is 1 again
    assert engine.loaded == ["1", "2", "3", "2"]
    assert snapshot(u) == before and trust.last_version == 2


def test_a_failed_first_reload_leaves_no_bundle_in_force(inputs: Path, setup) -> None:  # type: ignore[no-untyped-def]
    u, _, engine = setup
    engine.refuse = {1, 2}
    out = u.apply(make(inputs, version=1))
    assert not out.applied and "reloading the old rules failed too" in out.reason
    assert engine.loaded == ["1", None] and u.status().version is None
    assert not (u.bundles / "1").exists()


def test_a_revoked_or_unenrolled_provider_gets_nothing_applied(inputs: Path, setup) -> None:  # type: ignore[no-untyped-def]
    u, trust, engine = setup
    trust.revoke()
    out = u.apply(make(inputs))
    assert (out.applied, out.kind, out.step) == (False, REFUSED, "trust")
    assert "revoked" in out.reason and engine.loaded == []
    fresh = Updater(TrustStore(u.bundles.parent / "nobody"), u.bundles, engine.reload)
    assert "no provider is enrolled" in fresh.apply(make(inputs)).reason


def test_disabled_sids_are_left_out_of_the_self_test(inputs: Path, setup) -> None:  # type: ignore[no-untyped-def]
    u, trust, _ = setup
    (inputs / "rules" / "provider.rules").write_text(
        RULE.format(n=1) + 'drop http any any -> any any (msg:"too broad"; sid:5; rev:1;)\n')
    assert not u.apply(make(inputs)).applied
    trust.update(disabled_sids=[5])   # the provider turned the broad rule off
    assert u.apply(make(inputs)).applied


def http_capture(path: Path, request: bytes) -> None:
    c = lambda **kw: IP(src="10.137.0.9", dst="192.0.2.80") / TCP(  # noqa: E731
        sport=41000, dport=80, **kw)
    s = lambda **kw: IP(src="192.0.2.80", dst="10.137.0.9") / TCP(  # noqa: E731
        sport=80, dport=41000, **kw)
    wrpcap(str(path), [c(flags="S", seq=10), s(flags="SA", seq=70, ack=11),
                       c(flags="A", seq=11, ack=71), c(flags="PA", seq=11, ack=71) / request])


def test_the_bundle_s_own_captures_must_raise_the_sids_it_expects(inputs: Path, setup) -> None:  # type: ignore[no-untyped-def]
    u, _, engine = setup
    (inputs / "selftest").mkdir()
    http_capture(inputs / "selftest" / "evil.pcap", b"GET /evil1 HTTP/1.1\r\nHost: x\r\n\r\n")
    (inputs / "policy.toml").write_text('[selftest]\n"evil.pcap" = [1]\n')

    def bundle(version: int) -> bytes:
        return build(rules=inputs / "rules", lists=inputs / "lists",
                     policy=inputs / "policy.toml", selftest=inputs / "selftest", key=KEY,
                     provider="acme", version=version, created=NOW, valid_days=30)
    assert u.apply(bundle(1)).applied
    assert (u.bundles / "current" / "selftest" / "evil.pcap").exists()
    # the provider's new rules no longer catch what its own capture says they must
    (inputs / "rules" / "provider.rules").write_text(RULE.format(n=2))
    out = u.apply(bundle(2))
    assert (out.applied, out.kind, out.step) == (False, INVALID, "stage")
    assert "selftest/evil.pcap: expected sid(s) 1 did not alert" in out.reason
    assert engine.loaded == ["1"] and u.status().version == 1
