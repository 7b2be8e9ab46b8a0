"""sys-sec's subscription client: polls the provider's TUF repository (builder/tuf_repo.py)
with python-tuf's ngclient, trusting only the root.json the owner enrolled. What it
downloads is then verified again as a bundle (netsec.bundle.verify, with the bundle keys
pinned in the trust store) before anything applies.

What the repository serves is bounded before ngclient holds it parsed: each metadata file
at MAX_METADATA bytes and, before it is parsed, at the nesting depth and number of values
a bundle's manifest may have (netsec.bundle.check_json_shape); the bundle at MAX_BUNDLE.
Whatever a poll raises reaches the caller as SubscriptionError with a reason.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

from netsec.bundle import MAX_BUNDLE, BundleError, check_json_shape

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


class _BoundedFetcher(Urllib3Fetcher):
    """ngclient's fetcher, refusing metadata whose JSON shape is beyond the bounds before
    ngclient parses it (ngclient asks for metadata with download_bytes, for targets with
    download_file)."""

    def download_bytes(self, url: str, max_length: int) -> bytes:
        data = super().download_bytes(url, max_length)
        try:
            check_json_shape(data, url.rpartition("/")[2][:80])
        except BundleError as e:
            raise SubscriptionError(f"the repository's metadata {e}") from None
        return data


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
                          f"{base}/targets/", config=config, bootstrap=None,
                          fetcher=_BoundedFetcher())
        updater.refresh()
        info = updater.get_targetinfo(TARGET)
        if info is None:
            return None
        if info.length > MAX_BUNDLE:
            raise SubscriptionError(f"the provider lists a {info.length}-byte bundle, over "
                                    f"the {MAX_BUNDLE} limit")
        path = updater.find_cached_target(info) or updater.download_target(info)
        return Path(path).read_bytes()
    except SubscriptionError:
        raise
    except Exception as e:  # noqa: BLE001 - ngclient raises many kinds; each is a bad poll
        raise SubscriptionError(_reason(e)) from None
