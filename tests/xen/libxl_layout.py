"""Hyperwall's layout (dom0/layout.py) against the tree libxl really writes: every node the
layout module would write must be there with the same value and the same permissions.

Pure: the tree comes in as `{path: (value, perms)}`, from `xenstore-ls -fp` text (captured
from Xen 4.17, tests/xen/data) or read live through the client layer inside dom0.
libxl writes more than Hyperwall does (console, store, image/...); those extras are not
differences, since on Xen libxl writes the layout and dom0 only adds `hyperwall/` keys.
"""
from __future__ import annotations

import re

from dom0.layout import Node

Tree = dict[str, tuple[str, tuple[str, ...]]]

_LS_LINE = re.compile(r'^(?P<path>/\S*) = "(?P<value>.*)"\s+\((?P<perms>[^)]*)\)$')


def parse_xenstore_ls(text: str) -> Tree:
    """`xenstore-ls -fp` output: `/path = "value"   (n0,r1)` per line."""
    tree: Tree = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LS_LINE.match(line)
        if m is None:
            raise ValueError(f"xenstore-ls line {n}: cannot read {line!r}")
        tree[m["path"]] = (m["value"], tuple(m["perms"].split(",")))
    return tree


def expected_perms(nodes: list[Node]) -> dict[str, tuple[str, ...]]:
    """Each node's permissions once written: its own, else its nearest listed ancestor's
    (a new xenstore node takes its parent's)."""
    out: dict[str, tuple[str, ...]] = {}
    for node in nodes:
        if node.perms is not None:
            out[node.path] = node.perms
            continue
        parent = node.path.rsplit("/", 1)[0]
        while parent and parent not in out:
            parent = parent.rsplit("/", 1)[0]
        if not parent:
            raise ValueError(f"layout node {node.path} has no permissions and no listed "
                             "ancestor to take them from")
        out[node.path] = out[parent]
    return out


def differences(nodes: list[Node], tree: Tree) -> list[str]:
    """Where the layout and the real tree disagree, one line each (empty: they agree)."""
    perms = expected_perms(nodes)
    out = []
    for node in nodes:
        if node.path not in tree:
            out.append(f"{node.path}: libxl does not write it")
            continue
        value, actual = tree[node.path]
        if (node.value or "") != value:
            out.append(f"{node.path}: value {node.value or ''!r}, libxl {value!r}")
        if perms[node.path] != actual:
            out.append(f"{node.path}: perms {','.join(perms[node.path])}, "
                       f"libxl {','.join(actual)}")
    return out
