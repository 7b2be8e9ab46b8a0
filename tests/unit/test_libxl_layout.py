"""dom0/layout.py against the tree libxl 4.17 really wrote for a PV guest (captured with
`xenstore-ls -fp` in Xen's dom0 under QEMU): same nodes, values and permissions."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dom0.config import DomainSpec
from dom0.layout import Node, domain_nodes, hyperwall_nodes
from tests.xen.libxl_layout import differences, parse_xenstore_ls

CAPTURE = Path(__file__).resolve().parents[1] / "xen" / "data" / "xenstore-ls-pv-guest.txt"
SPEC = DomainSpec(name="work", kind="app", memory_mb=128, vcpus=1)   # as it was created


def libxl_tree() -> dict[str, tuple[str, tuple[str, ...]]]:
    return parse_xenstore_ls(CAPTURE.read_text())


def layout_without_hyperwall_keys(tree: dict[str, tuple[str, tuple[str, ...]]]) -> list[Node]:
    uuid = tree["/local/domain/1/vm"][0].removeprefix("/vm/")
    ours = set(hyperwall_nodes(1, SPEC))
    return [n for n in domain_nodes(1, uuid, SPEC) if n not in ours]


def test_hyperwall_layout_is_what_libxl_writes() -> None:
    tree = libxl_tree()
    assert differences(layout_without_hyperwall_keys(tree), tree) == []


def test_a_wrong_permission_or_value_is_named() -> None:
    tree = libxl_tree()
    nodes = layout_without_hyperwall_keys(tree)
    nodes = [replace(n, perms=("n1",)) if n.path == "/local/domain/1/control" else
             replace(n, value="64") if n.path.endswith("memory/target") else n
             for n in nodes]
    assert differences(nodes, tree) == [
        "/local/domain/1/memory/target: value '64', libxl '131072'",
        "/local/domain/1/control: perms n1, libxl n0,r1",
        # control's children without their own perms inherit the wrong ones too
        "/local/domain/1/control/platform-feature-multiprocessor-suspend: perms n1, libxl n0,r1",
        "/local/domain/1/control/platform-feature-xs_reset_watches: perms n1, libxl n0,r1",
    ]


def test_hyperwall_keys_are_not_libxl_s() -> None:
    tree = libxl_tree()
    assert all(n.path not in tree for n in hyperwall_nodes(1, SPEC))


def test_an_unreadable_xenstore_ls_line_is_named() -> None:
    with pytest.raises(ValueError, match="line 2: cannot read 'garbage'"):
        parse_xenstore_ls('/a = "1"   (n0)\ngarbage\n')
