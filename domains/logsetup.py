"""The project's one logging setup: plain lines on stderr, level from HYPERWALL_LOG."""
from __future__ import annotations

import logging
import os
import sys


def setup_logging(program: str, level: str | None = None) -> None:
    level = (level or os.environ.get("HYPERWALL_LOG", "INFO")).upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s {program} %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level, logging.INFO))
