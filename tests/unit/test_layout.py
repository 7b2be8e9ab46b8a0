"""The repository has the parts DESIGN.md names, and they import on their own."""
import importlib

import pytest


@pytest.mark.parametrize("package", ["dom0", "domains", "netsec", "builder", "proto"])
def test_top_level_package_imports(package: str) -> None:
    mod = importlib.import_module(package)
    assert mod.__doc__, f"{package} has no docstring saying what lives there"
