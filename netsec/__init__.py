"""What the security domain computes: decoding, flows, Suricata-compatible rules and
detection, EVE records, and without IO the policy, rulesets, block lists and bundles.

The hot path may run compiled (builder/compile_engine.py builds it with mypyc beside its
sources). Python would import a compiled module in place of its source whatever their ages,
so an edit to a source would not take until the next build; here, before any of it is
imported, a build older than any of its sources is set aside and the sources run instead
(with a note on stderr), as they do with HYPERWALL_PURE_PYTHON=1 set (the test suite's pure
pass, a benchmark's pure column).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).parent


def _stale(root: Path) -> list[str]:
    """The compiled modules under root whose source is newer, or gone."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
        for name in filenames:
            if not name.endswith(".so") or "__mypyc" in name:
                continue
            so = os.path.join(dirpath, name)
            py = os.path.join(dirpath, name.split(".", 1)[0] + ".py")
            try:
                if os.stat(py).st_mtime > os.stat(so).st_mtime:
                    out.append(py)
            except FileNotFoundError:
                out.append(py)
    return out


def compiled() -> bool:
    """Whether the engine's hot path runs compiled in this process."""
    from netsec import packet
    origin = packet.__spec__.origin if packet.__spec__ else None
    return bool(origin) and not str(origin).endswith(".py")


def _choose() -> None:
    if os.environ.get("HYPERWALL_PURE_PYTHON"):
        stale: list[str] = []
    else:
        stale = _stale(_ROOT)
        if not stale:
            return
    from netsec.pure import source_only
    source_only()
    if stale:
        print(f"netsec: the compiled engine is older than {os.path.relpath(stale[0])}"
              f"{f' and {len(stale) - 1} more' if len(stale) > 1 else ''}; running the pure "
              "Python modules (make install rebuilds it)", file=sys.stderr)


_choose()
