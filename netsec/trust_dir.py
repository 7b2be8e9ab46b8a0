"""Where the owner's trust store of the security provider lives (`netsec.trust` keeps it):
apart from the store, so that the `hyperwall` CLI can name it without importing the
cryptography the store needs (a third of every CLI start)."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DIR = Path("/var/lib/hyperwall/sys-sec/provider")
ENV_DIR = "HYPERWALL_PROVIDER_DIR"


def default_dir() -> Path:
    """$HYPERWALL_PROVIDER_DIR, else sys-sec's folder on the host."""
    return Path(os.environ.get(ENV_DIR) or DEFAULT_DIR)
