"""Import netsec's modules from their Python sources even where compiled ones sit beside them.

An import finder placed ahead of the default one, for netsec's modules only, that knows
source files and nothing else; the standard library and third-party packages are untouched.
"""
from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Sequence
from importlib.machinery import FileFinder, ModuleSpec, SourceFileLoader
from types import ModuleType


class SourceOnly:
    """A meta-path finder: netsec.* from .py files (packages and modules) and never a .so."""

    def __init__(self) -> None:
        self._finders: dict[str, FileFinder] = {}

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if not name.startswith("netsec.") or not path:
            return None
        for entry in path:
            finder = self._finders.get(entry)
            if finder is None:
                finder = FileFinder(entry, (SourceFileLoader,
                                            importlib.machinery.SOURCE_SUFFIXES))
                self._finders[entry] = finder
            spec = finder.find_spec(name, target)
            if spec is not None:
                return spec
        return None


def source_only() -> None:
    if not any(isinstance(f, SourceOnly) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceOnly())
