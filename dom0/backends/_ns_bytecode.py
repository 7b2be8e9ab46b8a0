"""The bytecode of the checkout's code that domains run, written where they read it.

A domain sees the repository read-only, so Python inside can never write the `.pyc` of
what it imports: where dom0 had not written it (dom0 does not import the agent, and an
environment with PYTHONDONTWRITEBYTECODE writes none at all), every agent start compiled
its modules from source, about a fifth of the agent's start. dom0 compiles them here,
once per backend before its first start; what is up to date is only checked (a stat and a
header read per file, ~10 ms in all). A source edited while dom0 runs still works: Python
compiles it in memory, as it did before.
"""
from __future__ import annotations

import compileall
import py_compile
import threading
from pathlib import Path

from builder.xen_guest import GUEST_TREE
from dom0.backends._ns_rootfs import REPO

# What runs inside a domain (init, the agent and its xenstore client, sys-sec's services):
# the part of the checkout a Xen guest carries.
DOMAIN_CODE = GUEST_TREE

_lock = threading.Lock()


def ensure_bytecode(repo: Path = REPO, parts: tuple[str, ...] = DOMAIN_CODE) -> bool:
    """Compile what is missing or stale; True if all of it compiled. A file that does not
    compile is left for the domain's own import to report, as it would have before."""
    ok = True
    # Timestamp-checked pycs, as Python writes by default: the check at import is the
    # source's mtime and size, which the copy the domain sees shares with the host's.
    mode = py_compile.PycInvalidationMode.TIMESTAMP
    with _lock:   # starts run in threads; one compiles, the next finds it done
        for part in parts:
            path = repo / part
            if path.is_dir():
                ok &= bool(compileall.compile_dir(path, quiet=2, invalidation_mode=mode))
            elif path.is_file():
                ok &= bool(compileall.compile_file(path, quiet=2, invalidation_mode=mode))
    return ok
