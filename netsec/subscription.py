"""sys-sec's subscription client: polls the provider's TUF repository (builder/tuf_repo.py)
with python-tuf's ngclient, trusting only the root.json the owner enrolled. What it
downloads is then verified again as a bundle (netsec/updates.py) before anything applies.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from tuf.api.exceptions import DownloadError, RepositoryError
from tuf.ngclient import Updater

TARGET = "sys-sec.bundle"


class SubscriptionError(RuntimeError):
    pass


def poll(root_json: Path, cache: Path, base_url: str) -> bytes | None:
    """The newest bundle the repository serves (None if it serves none). Raises
    SubscriptionError for metadata that is expired, badly signed, rolled back or
    inconsistent, and for a download that is truncated or altered."""
    meta, targets = cache / "metadata", cache / "targets"
    meta.mkdir(parents=True, exist_ok=True)
    targets.mkdir(exist_ok=True)
    if not (meta / "root.json").exists():
        if not root_json.exists():
            raise SubscriptionError(f"no provider root enrolled ({root_json})")
        shutil.copy(root_json, meta / "root.json")
    base = base_url.rstrip("/")
    try:
        updater = Updater(str(meta), f"{base}/metadata/", str(targets), f"{base}/targets/",
                          bootstrap=None)
        updater.refresh()
        info = updater.get_targetinfo(TARGET)
        if info is None:
            return None
        path = updater.find_cached_target(info) or updater.download_target(info)
    except (RepositoryError, DownloadError, OSError) as e:
        raise SubscriptionError(f"{type(e).__name__}: {e}") from None
    return Path(path).read_bytes()
