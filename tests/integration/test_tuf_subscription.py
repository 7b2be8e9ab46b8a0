"""The provider's TUF repository (hyperwall-build publish), served by a real HTTP server on
loopback, polled by sys-sec's subscription client and checked against the owner's trust
store: a new bundle arrives; expired, rolled-back, foreign-signed or truncated ones do not."""
from __future__ import annotations

import datetime as dt
import functools
import http.server
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tuf.api.metadata import Metadata

from builder.bundle import load_key
from builder.tuf_repo import _signer, publish
from netsec.bundle import verify
from netsec.subscription import SubscriptionError, poll
from netsec.trust import TrustStore
from tests.bundle_helpers import KEY, RULE, make

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass
class Served:
    repo: Path
    keys: Path
    url: str
    tmp: Path
    bundles: dict[int, bytes]

    def bundle(self, version: int, key: Ed25519PrivateKey = KEY) -> bytes:
        inputs = self.tmp / f"in-{version}"
        (inputs / "rules").mkdir(parents=True, exist_ok=True)
        (inputs / "rules" / "p.rules").write_text(RULE.format(n=version))
        (inputs / "lists").mkdir(exist_ok=True)
        (inputs / "policy.toml").write_text("")
        self.bundles[version] = make(inputs, version=version, key=key, created=NOW)
        return self.bundles[version]

    def publish(self, version: int, **kw: Any) -> None:
        publish(self.repo, KEY, self.bundle(version), now=NOW, keys_dir=self.keys, **kw)

    def resign(self, role: str, change: Callable[[Any], None]) -> None:
        """Alter a role's metadata and sign it again with its real key: what a repository
        (or someone holding that key) could serve."""
        path = self.repo / "metadata" / f"{role}.json"
        md = Metadata.from_bytes(path.read_bytes())
        change(md.signed)
        md.signatures.clear()
        md.sign(_signer(load_key(self.keys / f"{role}.key")) if role != "targets"
                else _signer(KEY))
        path.write_bytes(md.to_bytes())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    repo = tmp_path / "repo"
    repo.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(repo))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        s = Served(repo, tmp_path / "keys", f"http://127.0.0.1:{server.server_address[1]}",
                   tmp_path, {})
        s.publish(1)
        yield s
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def owner(served: Served, tmp_path: Path) -> TrustStore:
    """The owner enrolled the provider's first root, and nothing else: the bundle key comes
    from the root's targets role."""
    trust = TrustStore(tmp_path / "provider")
    trust.enroll((served.repo / "metadata" / "1.root.json").read_bytes())
    return trust


def fetch(served: Served, owner: TrustStore) -> bytes | None:
    return poll(owner.root_file, served.tmp / "cache", served.url)


def test_a_new_bundle_arrives_and_verifies_under_the_enrolled_root(
        served: Served, owner: TrustStore) -> None:
    assert fetch(served, owner) == served.bundles[1]
    served.publish(2)
    data = fetch(served, owner)
    assert data == served.bundles[2]
    assert verify(data, owner.trusted_keys(), now=NOW, min_version=1).version == 2
    assert fetch(served, owner) == served.bundles[2]    # nothing new: the cached copy


def test_expired_timestamp_metadata_is_refused(served: Served, owner: TrustStore) -> None:
    served.resign("timestamp", lambda t: setattr(t, "expires", NOW - dt.timedelta(hours=1)))
    with pytest.raises(SubscriptionError, match="metadata has expired"):
        fetch(served, owner)


def test_rolled_back_targets_are_refused(served: Served, owner: TrustStore) -> None:
    old_targets = (served.repo / "metadata" / "targets.json").read_bytes()
    served.publish(2)
    assert fetch(served, owner) == served.bundles[2]
    # Yesterday's targets (validly signed then) under a new snapshot and timestamp, as
    # someone holding the online snapshot and timestamp keys could serve them.
    (served.repo / "metadata" / "targets.json").write_bytes(old_targets)

    def point_back(snapshot: Any) -> None:
        snapshot.meta["targets.json"].version = 1
        snapshot.version += 1
    served.resign("snapshot", point_back)

    def new_snapshot(timestamp: Any) -> None:
        timestamp.snapshot_meta.version += 1
        timestamp.version += 1
    served.resign("timestamp", new_snapshot)
    with pytest.raises(SubscriptionError, match="rollback|BadVersionNumber"):
        fetch(served, owner)


def test_a_whole_repository_rolled_back_is_refused(served: Served, owner: TrustStore) -> None:
    old = {n: (served.repo / "metadata" / n).read_bytes()
           for n in ("timestamp.json", "snapshot.json", "targets.json")}
    served.publish(2)
    assert fetch(served, owner) == served.bundles[2]
    for name, content in old.items():
        (served.repo / "metadata" / name).write_bytes(content)
    with pytest.raises(SubscriptionError, match=r"went back to an older version \(rollback\)"):
        fetch(served, owner)


def test_a_truncated_or_altered_download_is_refused(served: Served, owner: TrustStore) -> None:
    target = served.repo / "targets" / "sys-sec.bundle"
    target.write_bytes(served.bundles[1][:-512])
    with pytest.raises(SubscriptionError, match="truncated or altered"):
        fetch(served, owner)
    data = bytearray(served.bundles[1])
    data[600] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(SubscriptionError, match="truncated or altered"):
        fetch(served, owner)


def test_metadata_signed_by_another_key_is_refused(served: Served, owner: TrustStore) -> None:
    intruder = Ed25519PrivateKey.generate()
    path = served.repo / "metadata" / "timestamp.json"
    md = Metadata.from_bytes(path.read_bytes())
    md.signed.version += 5
    md.signatures.clear()
    md.sign(_signer(intruder))
    path.write_bytes(md.to_bytes())
    with pytest.raises(SubscriptionError, match="not signed by the enrolled provider's keys"):
        fetch(served, owner)


@pytest.mark.parametrize(("role", "content", "reason"), [
    ("timestamp", b"[" * 60_000 + b"]" * 60_000, "timestamp.json: nested deeper than 8"),
    ("timestamp", b"[" + b"0," * 400_000 + b"0]", "timestamp.json: more than"),
    ("timestamp", b"0" * (2 << 20), "a download is longer than allowed"),
    ("snapshot", b'{"signed": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {}}}}}}}}}',
     "snapshot.json: nested deeper than 8"),
])
def test_metadata_beyond_the_bounds_is_refused_before_it_is_parsed(
        served: Served, owner: TrustStore, role: str, content: bytes, reason: str) -> None:
    """Under MAX_METADATA, but ngclient's json.loads would recurse or build ~20 MB."""
    if role == "snapshot":
        served.resign("timestamp", lambda t: setattr(t.snapshot_meta, "length", None))
    (served.repo / "metadata" / f"{role}.json").write_bytes(content)
    with pytest.raises(SubscriptionError, match=reason):
        fetch(served, owner)


def test_a_new_enrollment_starts_the_metadata_over(served: Served, owner: TrustStore) -> None:
    assert fetch(served, owner) == served.bundles[1]
    # The owner moves to another provider, whose repository appears at the same address.
    shutil.rmtree(served.repo / "metadata")
    shutil.rmtree(served.repo / "targets")
    other = Ed25519PrivateKey.generate()
    publish(served.repo, other, served.bundle(1, key=other), now=NOW)
    owner.enroll((served.repo / "metadata" / "1.root.json").read_bytes())
    data = fetch(served, owner)
    assert data == served.bundles[1]
    assert verify(data, owner.trusted_keys(), now=NOW, min_version=0).version == 1


def test_no_enrolled_root_no_subscription(tmp_path: Path) -> None:
    with pytest.raises(SubscriptionError, match="no provider root enrolled"):
        poll(tmp_path / "missing.json", tmp_path / "cache", "http://127.0.0.1:9")


def test_the_published_root_lists_a_key_per_role(served: Served) -> None:
    root = json.loads((served.repo / "metadata" / "root.json").read_text())["signed"]
    keyids = {role: tuple(r["keyids"]) for role, r in root["roles"].items()}
    assert len(set(keyids.values())) == 4
