"""sys-sec's subscription client: polls the provider's TUF repository (builder/tuf_repo.py)
with python-tuf's ngclient, trusting only the root.json the owner enrolled. What it
downloads is then verified again as a bundle (netsec.bundle.verify, with the bundle keys
pinned in the trust store) before anything applies.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater, UpdaterConfig

from netsec.bundle import MAX_BUNDLE

TARGET = "sys-sec.bundle"
MAX_METADATA = 1 << 20    # each metadata file; ours are a few KB
ENROLLED = "enrolled-root.json"

# ngclient's errors, as an owner reading sys-sec's log should see them (most specific first).
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (tuf_errors.ExpiredMetadataError, "the provider's metadata has expired (its repository "
     "is stale or frozen by an attacker)"),
    (tuf_errors.BadVersionNumberError, "the repository went back to an older version "
     "(rollback)"),
    (tuf_errors.UnsignedMetadataError, "metadata not signed by the enrolled provider's keys"),
    (tuf_errors.LengthOrHashMismatchError, "a download does not match its signed length or "
     "hash (truncated or altered)"),
    (tuf_errors.DownloadLengthMismatchError, "a download is longer than allowed"),
    (tuf_errors.DownloadHTTPError, "the repository answered with an HTTP error"),
    (tuf_errors.DownloadError, "the repository could not be reached"),
    (tuf_errors.RepositoryError, "the repository's metadata is inconsistent"),
)


class SubscriptionError(RuntimeError):
    """A poll that brought nothing usable; the message says why."""


def _reason(e: Exception) -> str:
    for kind, text in _REASONS:
        if isinstance(e, kind):
            return f"{text}: {type(e).__name__}: {e}"
    return f"{type(e).__name__}: {e}"


def _prepare(root_json: Path, cache: Path) -> Path:
    """The metadata folder, started over from the enrolled root whenever the owner has
    enrolled another one since (metadata trusted under the old root must not carry on)."""
    try:
        enrolled = root_json.read_bytes()
    except FileNotFoundError:
        raise SubscriptionError(f"no provider root enrolled ({root_json})") from None
    meta = cache / "metadata"
    if not (cache / ENROLLED).exists() or (cache / ENROLLED).read_bytes() != enrolled:
        shutil.rmtree(cache, ignore_errors=True)
        meta.mkdir(parents=True)
        (meta / "root.json").write_bytes(enrolled)
        (cache / ENROLLED).write_bytes(enrolled)
    (cache / "targets").mkdir(exist_ok=True)
    return meta


def poll(root_json: Path, cache: Path, base_url: str) -> bytes | None:
    """The newest bundle the repository serves (None if it serves none). Raises
    SubscriptionError for metadata that is expired, badly signed, rolled back or
    inconsistent, and for a download that is truncated, altered or too big."""
    meta = _prepare(root_json, cache)
    base = base_url.rstrip("/")
    config = UpdaterConfig(root_max_length=MAX_METADATA, timestamp_max_length=MAX_METADATA,
                           snapshot_max_length=MAX_METADATA, targets_max_length=MAX_METADATA)
    try:
        updater = Updater(str(meta), f"{base}/metadata/", str(cache / "targets"),
                          f"{base}/targets/", config=config, bootstrap=None)
        updater.refresh()
        info = updater.get_targetinfo(TARGET)
        if info is None:
            return None
        if info.length > MAX_BUNDLE:
            raise SubscriptionError(f"the provider lists a {info.length}-byte bundle, over "
                                    f"the {MAX_BUNDLE} limit")
        path = updater.find_cached_target(info) or updater.download_target(info)
    except (tuf_errors.RepositoryError, tuf_errors.DownloadError, OSError) as e:
        raise SubscriptionError(_reason(e)) from None
    return Path(path).read_bytes()
