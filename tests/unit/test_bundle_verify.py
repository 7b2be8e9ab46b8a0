"""netsec.bundle.verify: a whole, signed, fresh, newer bundle is taken; every other one is
refused with a reason naming what is wrong. Bundles are real (built by builder.bundle,
signed with real Ed25519 keys) and damaged the way an attacker or a bad link would."""
from __future__ import annotations

import base64
import datetime as dt
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import netsec.bundle
from builder.bundle import assemble
from netsec.bundle import BundleError, TrustedKeys, key_id, read_manifest, verify
from tests.bundle_helpers import KEY, NOW, OTHER, RULE, make, trusted


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "provider.rules").write_text(RULE.format(n=1))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "adult.txt").write_text("adult.example\n")
    (tmp_path / "policy.toml").write_text('doh_addresses = ["192.0.2.53"]\n'
                                          '[schedules]\nadult = ["mon-sun 00:00-23:59"]\n')
    return tmp_path


def refused(data: bytes, reason: str, trust: TrustedKeys | None = None,
            now: dt.datetime = NOW, min_version: int = 0) -> None:
    with pytest.raises(BundleError, match=reason):
        verify(data, trust or trusted(), now=now, min_version=min_version)


def members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(i, tar.extractfile(i).read() if i.isfile() else b"")  # type: ignore[union-attr]
                for i in tar]


def pack(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.GNU_FORMAT) as tar:
        for info, content in entries:
            info.size = len(content) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(content) if info.isfile() else None)
    return out.getvalue()


def file_entry(name: str, content: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), content


def signed(manifest: dict, files: dict[str, bytes], key: Ed25519PrivateKey = KEY) -> bytes:
    """A bundle with exactly this manifest, validly signed: for manifests the builder would
    never write."""
    raw = json.dumps(manifest).encode()
    sigs = json.dumps([{"keyid": key_id(key.public_key()),
                        "sig": base64.b64encode(key.sign(raw)).decode()}]).encode()
    return pack([file_entry("manifest.json", raw), file_entry("signatures.json", sigs),
                 *(file_entry(n, c) for n, c in files.items())])


def flip(data: bytes, marker: bytes, at: int = 0) -> bytes:
    """`data` with one byte changed inside the first `marker`, in place (the tar's own
    header checksums do not cover file contents, so only the manifest can notice)."""
    i = data.index(marker) + at
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def test_a_good_bundle_gives_its_content(inputs: Path) -> None:
    data = make(inputs, version=4)
    b = verify(data, trusted(), now=NOW, min_version=3)
    assert (b.provider, b.version, b.expires) == ("acme", 4, NOW + dt.timedelta(days=30))
    assert b.rules == {"rules/provider.rules": RULE.format(n=1)}
    assert b.lists == {"adult": "adult.example\n"}
    assert b.policy["doh_addresses"] == ["192.0.2.53"] and "adult" in b.policy["schedules"]
    assert set(b.files) == {"rules/provider.rules", "lists/adult.txt", "policy.toml"}
    assert len(b.sha256) == 64 and read_manifest(data)["version"] == 4


def test_a_naive_now_is_taken_as_utc(inputs: Path) -> None:
    assert verify(make(inputs), trusted(), now=NOW.replace(tzinfo=None), min_version=0)


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda d: flip(d, b"evil1"), r"rules/provider.rules: does not match the manifest.*altered"),
    (lambda d: flip(d, b'"version": 1', 12), "does not verify: the manifest or its signature"),
    (lambda d: flip(d, b'"sig": "', 12), "does not verify: the manifest or its signature"),
    (lambda d: d[: len(d) // 2], "not a readable bundle"),
    (lambda d: d[:700], "not a readable bundle"),
    (lambda d: b"garbage" * 10, "not a readable bundle"),
    (lambda d: b"", "not a readable bundle"),
])
def test_damaged_or_truncated_bundles_are_refused(
        inputs: Path, damage: Callable[[bytes], bytes], reason: str) -> None:
    refused(damage(make(inputs)), reason)


def test_a_bundle_signed_with_another_key_is_refused(inputs: Path) -> None:
    refused(make(inputs, key=OTHER), f"signed by {key_id(OTHER.public_key())}, not a key "
            "the owner enrolled")
    refused(make(inputs), "not a key the owner enrolled", trust=TrustedKeys({}))


def test_a_threshold_counts_distinct_enrolled_keys(inputs: Path) -> None:
    both = TrustedKeys.of(KEY.public_key(), OTHER.public_key(), threshold=2)
    refused(make(inputs), "signed by 1 of the enrolled keys, 2 needed", trust=both)
    entries = members(make(inputs))
    sig = json.loads(entries[1][1])
    entries[1] = file_entry("signatures.json", json.dumps(sig + sig).encode())
    refused(pack(entries), "signed by 1 of the enrolled keys, 2 needed", trust=both)
    manifest = entries[0][1]
    sig.append({"keyid": key_id(OTHER.public_key()),
                "sig": base64.b64encode(OTHER.sign(manifest)).decode()})
    entries[1] = file_entry("signatures.json", json.dumps(sig).encode())
    assert verify(pack(entries), both, now=NOW, min_version=0).version == 1


def test_expired_replayed_and_rolled_back_bundles_are_refused(inputs: Path) -> None:
    refused(make(inputs, days=1), "expired at 2026-11-25T12:00:00", now=NOW + dt.timedelta(days=2))
    refused(make(inputs, version=3), "version 3 is not newer than the applied 3", min_version=3)
    refused(make(inputs, version=2), "version 2 is not newer than the applied 3 "
            r"\(a replayed or rolled-back bundle\)", min_version=3)


@pytest.mark.parametrize(("name", "kind", "reason"), [
    ("../../etc/passwd", tarfile.REGTYPE, "a path outside the bundle"),
    ("/etc/cron.d/evil", tarfile.REGTYPE, "a path outside the bundle"),
    ("rules/../../x.rules", tarfile.REGTYPE, "a path outside the bundle"),
    ("rules/link.rules", tarfile.SYMTYPE, "not a plain file"),
    ("rules", tarfile.DIRTYPE, "not a plain file"),
    ("bin/sh", tarfile.REGTYPE, "bin/sh: not a rules file"),
    ("lists/Bad Name.txt", tarfile.REGTYPE, "not a rules file"),
])
def test_members_outside_the_content_are_refused(inputs: Path, name: str, kind: bytes,
                                                 reason: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/shadow"
    refused(pack([*members(make(inputs)), (info, b"x")]), reason)


def test_missing_extra_and_doubled_files_are_refused(inputs: Path) -> None:
    entries = members(make(inputs))
    refused(pack([e for e in entries if e[0].name != "lists/adult.txt"]),
            "files differ from the manifest: lists/adult.txt missing")
    refused(pack([*entries, file_entry("lists/extra.txt", b"x.example\n")]),
            "lists/extra.txt not in the manifest")
    refused(pack([*entries, entries[2]]), "in the bundle twice")
    refused(pack([e for e in entries if e[0].name != "signatures.json"]),
            "signatures.json missing")


def test_oversized_bundles_and_files_are_refused(inputs: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = make(inputs)
    monkeypatch.setattr(netsec.bundle, "MAX_FILE", 10)
    refused(data, "lists/adult.txt: 14 bytes, over the 10 limit")
    monkeypatch.setattr(netsec.bundle, "MAX_BUNDLE", 1000)
    refused(data, r"bundle is \d+ bytes, over the 1000 limit")


def with_policy(text: str) -> bytes:
    """Built past the builder's own check of the policy (a hostile or buggy builder)."""
    return assemble({"rules/p.rules": RULE.format(n=1).encode(), "policy.toml": text.encode()},
                    key=KEY, provider="acme", version=1, created=NOW, valid_days=30)


@pytest.mark.parametrize(("policy", "reason"), [
    ('[domains.work]\npolicy = "internet"\n', "'domains' is not the provider's to set"),
    ('share_alerts = true\n', "'share_alerts' is not the provider's to set"),
    ('disabled_sids = [9]\n', "'disabled_sids' is the owner's trust store's"),
    ('clean = ["192.0.2.0/24"]\n', "'clean' is the owner's"),
    ('schedules = "always"\n', r"\[schedules\] must be a table"),
    ('schedules = "x" = 1\n', "policy.toml: "),
])
def test_a_policy_reaching_beyond_sys_sec_is_refused(policy: str, reason: str) -> None:
    refused(with_policy(policy), reason)


GOOD_MANIFEST = {"format": 1, "provider": "acme", "version": 2, "created": NOW.isoformat(),
                 "expires": (NOW + dt.timedelta(days=1)).isoformat(), "files": {}}


@pytest.mark.parametrize(("change", "reason"), [
    ({"format": 2}, "format 2, this sys-sec reads 1"),
    ({"version": "7"}, "version '7' is not a positive integer"),
    ({"version": True}, "version True is not a positive integer"),
    ({"version": 0}, "version 0 is not a positive integer"),
    ({"expires": "soon"}, "manifest.json: ValueError"),
    ({"files": {"rules/a.rules": {"size": 1}}}, "manifest.json: KeyError"),
    ({"provider": ""}, "provider must be a name"),
])
def test_a_signed_but_malformed_manifest_is_refused(change: dict, reason: str) -> None:
    refused(signed({**GOOD_MANIFEST, **change}, {}), reason)


def test_a_signed_manifest_that_is_not_json_is_refused() -> None:
    entries = members(signed(GOOD_MANIFEST, {}))
    raw = b"[not json"
    sigs = json.dumps([{"keyid": key_id(KEY.public_key()),
                        "sig": base64.b64encode(KEY.sign(raw)).decode()}]).encode()
    refused(pack([file_entry("manifest.json", raw), file_entry("signatures.json", sigs),
                  *entries[2:]]), "manifest.json: JSONDecodeError")
