"""The provider's TUF repository, served by a real HTTP server on loopback, polled by
sys-sec's subscription client: updates arrive; stale, rolled-back or altered ones do not."""
from __future__ import annotations

import datetime as dt
import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from builder.tuf_repo import publish
from netsec.subscription import SubscriptionError, poll

KEY = Ed25519PrivateKey.generate()
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    repo = tmp_path / "repo"
    publish(repo, KEY, b"bundle one", now=NOW)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(repo))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield repo, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def enrolled_root(repo: Path, tmp_path: Path) -> Path:
    root = tmp_path / "enrolled-root.json"
    shutil.copy(repo / "metadata" / "1.root.json", root)
    return root


def test_the_newest_bundle_arrives(served: tuple[Path, str], tmp_path: Path) -> None:
    repo, url = served
    root = enrolled_root(repo, tmp_path)
    assert poll(root, tmp_path / "cache", url) == b"bundle one"
    publish(repo, KEY, b"bundle two", now=NOW)
    assert poll(root, tmp_path / "cache", url) == b"bundle two"


def test_expired_metadata_is_refused(served: tuple[Path, str], tmp_path: Path) -> None:
    repo, url = served
    publish(repo, KEY, b"stale", now=NOW - dt.timedelta(days=30), expires_days=1)
    with pytest.raises(SubscriptionError, match="Expired"):
        poll(enrolled_root(repo, tmp_path), tmp_path / "cache", url)


def test_a_rolled_back_repository_is_refused(served: tuple[Path, str], tmp_path: Path) -> None:
    repo, url = served
    root = enrolled_root(repo, tmp_path)
    old = {n: (repo / "metadata" / n).read_bytes() for n in
           ("timestamp.json", "snapshot.json", "targets.json")}
    publish(repo, KEY, b"bundle two", now=NOW)
    assert poll(root, tmp_path / "cache", url) == b"bundle two"
    for name, content in old.items():   # a mirror serving yesterday's repository
        (repo / "metadata" / name).write_bytes(content)
    with pytest.raises(SubscriptionError, match="BadVersionNumber|version"):
        poll(root, tmp_path / "cache", url)


def test_an_altered_or_truncated_download_is_refused(served: tuple[Path, str],
                                                     tmp_path: Path) -> None:
    repo, url = served
    (repo / "targets" / "sys-sec.bundle").write_bytes(b"bundle o")
    with pytest.raises(SubscriptionError, match="LengthOrHashMismatch|Download"):
        poll(enrolled_root(repo, tmp_path), tmp_path / "cache", url)


def test_metadata_signed_by_another_key_is_refused(served: tuple[Path, str],
                                                   tmp_path: Path) -> None:
    repo, url = served
    root = enrolled_root(repo, tmp_path)
    other = tmp_path / "other"
    publish(other, Ed25519PrivateKey.generate(), b"evil", now=NOW)
    for name in ("timestamp.json", "snapshot.json", "targets.json"):
        meta = json.loads((other / "metadata" / name).read_text())
        meta["signed"]["version"] += 5
        (repo / "metadata" / name).write_text(json.dumps(meta))
    with pytest.raises(SubscriptionError):
        poll(root, tmp_path / "cache", url)


def test_no_enrolled_root_no_subscription(tmp_path: Path) -> None:
    with pytest.raises(SubscriptionError, match="no provider root enrolled"):
        poll(tmp_path / "missing.json", tmp_path / "cache", "http://127.0.0.1:9")
