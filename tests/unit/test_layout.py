"""The layout holds: every import (ast, imports inside functions included) goes down the
layer order below, no two modules import each other, and what a guest runs reaches no
module of dom0 but the bus. The order and why are in the README (Design notes: Layout)."""
from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.xen_guest import GUEST_ENTRY, SYS_SEC_ENTRY

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("proto", "dom0", "domains", "netsec", "builder")
# Lowest first: a module may import from its own layer and the layers before it. A module
# belongs to the layer of the longest prefix it starts with.
LAYERS = (
    ("proto",),                  # schemas and generated code
    ("dom0.xenstore",),          # the bus: wire, paths, perms, client, xenbus, execproto
    ("netsec",),                 # the packet engine and what sys-sec computes without IO
    ("domains",),                # what every domain runs: init, agent, supervisor, runner
    ("domains.syssec",),         # sys-sec's programs
    ("builder",),                # images and bundles
    ("dom0",),                   # the toolstack, daemon, backends, API, CLI
    ("dom0.sim",),               # the simulated world of the demo and the tests
)
BUS = "dom0.xenstore"


@dataclass(frozen=True)
class Import:
    source: str       # the importing module
    target: str       # the imported module (a package's name for `from pkg import name`)
    where: str        # file:line

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target}"


def modules(repo: Path = REPO) -> dict[str, Path]:
    """Every module of the project's packages by dotted name (packages by their own)."""
    out = {}
    for top in PACKAGES:
        for path in sorted((repo / top).rglob("*.py")):
            parts = path.relative_to(repo).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path], repo: Path) -> Iterator[Import]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    where = str(path.relative_to(repo))
    for node in ast.walk(ast.parse(path.read_text(), where)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod.
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module
                       for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target.split(".")[0] in PACKAGES:
                yield Import(name, target, f"{where}:{node.lineno}")


def graph(repo: Path = REPO) -> tuple[dict[str, Path], list[Import]]:
    known = modules(repo)
    return known, [i for name, path in known.items()
                   for i in imports_of(name, path, known, repo)]


def layer(module: str) -> int:
    best, found = -1, None
    for n, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, found = len(p), n
    if found is None:
        raise AssertionError(f"{module} is in no layer of LAYERS")
    return found


def upward(edges: list[Import]) -> list[Import]:
    return [i for i in edges if layer(i.target) > layer(i.source)]


def cycles(edges: list[Import]) -> list[list[Import]]:
    """One cycle through each set of modules that import each other, as its imports."""
    out: dict[str, dict[str, Import]] = {}
    for i in edges:
        if i.target != i.source:
            out.setdefault(i.source, {}).setdefault(i.target, i)
    found, done = [], set()
    for start in sorted(out):
        if start in done:
            continue
        # Depth-first from `start`; a path back to `start` is a cycle.
        stack: list[tuple[str, list[Import]]] = [(start, [])]
        seen = {start}
        while stack:
            at, path = stack.pop()
            for target, edge in sorted(out.get(at, {}).items()):
                if target == start:
                    cycle = [*path, edge]
                    found.append(cycle)
                    done |= {e.source for e in cycle}
                    stack = []
                    break
                if target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, edge]))
    return found


def closure(entry: tuple[str, ...], known: dict[str, Path],
            edges: list[Import]) -> dict[str, Import | None]:
    """Every project module importing `entry` loads, each with the import that brought it
    (None for an entry point), packages whose modules are imported included."""
    by_source: dict[str, list[Import]] = {}
    for i in edges:
        by_source.setdefault(i.source, []).append(i)
    reached: dict[str, Import | None] = {}
    todo: list[tuple[str, Import | None]] = [(e, None) for e in entry]
    while todo:
        name, why = todo.pop()
        parts = name.split(".")
        for n in range(1, len(parts) + 1):   # importing a.b.c runs a and a.b first
            module = ".".join(parts[:n])
            if module in known and module not in reached:
                reached[module] = why
                todo += [(i.target, i) for i in by_source.get(module, [])]
    return reached


def test_every_import_names_a_module_that_exists() -> None:
    known, edges = graph()
    assert [str(i) for i in edges if i.target not in known] == []


def test_nothing_imports_a_layer_above_its_own() -> None:
    _, edges = graph()
    assert [f"{i} (layer {layer(i.source)} imports layer {layer(i.target)})"
            for i in upward(edges)] == []


def test_no_two_modules_import_each_other() -> None:
    _, edges = graph()
    assert [" -> ".join(str(e) for e in c) for c in cycles(edges)] == []


def test_a_guest_runs_no_module_of_dom0_but_the_bus() -> None:
    known, edges = graph()
    for entry in (GUEST_ENTRY, SYS_SEC_ENTRY):
        reached = closure(entry, known, edges)
        assert "domains.agent" in reached and BUS + ".client" in reached   # positive control
        outside = [f"{m}, brought by {why}" for m, why in reached.items()
                   if m.split(".")[0] == "dom0" and m != "dom0" and layer(m) != layer(BUS)]
        assert outside == [], f"the closure of {', '.join(entry)}"


def test_the_checks_see_a_planted_back_import_and_circle(tmp_path: Path) -> None:
    """The checks themselves: the same functions over a small tree with the faults in it."""
    for name, text in {
        "netsec/__init__.py": "",
        "netsec/eve.py": "def f():\n    from dom0 import toolstack\n",
        "dom0/__init__.py": "",
        "dom0/toolstack.py": "from netsec import eve\n",
        "dom0/xenstore/__init__.py": "",
        "dom0/xenstore/client.py": "from . import wire\n",
        "dom0/xenstore/wire.py": "from .client import connect\n",
        "domains/__init__.py": "",
        "domains/agent.py": "import dom0.xenstore.client\nfrom ..netsec import eve\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    known, edges = graph(tmp_path)
    assert [str(i) for i in upward(edges)] == [
        "netsec/eve.py:2: netsec.eve imports dom0.toolstack"]
    assert sorted(" -> ".join(str(e) for e in c) for c in cycles(edges)) == [
        "dom0/toolstack.py:1: dom0.toolstack imports netsec.eve -> "
        "netsec/eve.py:2: netsec.eve imports dom0.toolstack",
        "dom0/xenstore/client.py:1: dom0.xenstore.client imports dom0.xenstore.wire -> "
        "dom0/xenstore/wire.py:1: dom0.xenstore.wire imports dom0.xenstore.client"]
    reached = closure(("domains.agent",), known, edges)
    assert str(reached["dom0.toolstack"]) == "netsec/eve.py:2: netsec.eve imports dom0.toolstack"
    assert {"dom0", "dom0.xenstore", "dom0.xenstore.client", "netsec.eve"} <= set(reached)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_top_level_package_imports_and_says_what_lives_there(package: str) -> None:
    mod = importlib.import_module(package)
    assert mod.__doc__, f"{package} has no docstring saying what lives there"
