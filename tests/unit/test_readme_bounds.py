"""The README's table of provider-bundle bounds says what the code enforces: each row's
figure is read back as a number and compared with the constant the row names, and every
member type the reader refuses and every policy key it takes or refuses is named."""
from __future__ import annotations

import datetime as dt
import importlib
import re
from pathlib import Path

from netsec import bundle

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Provider bundles: what sys-sec takes, and what it refuses"
UNITS = {"": 1, "KiB": 1 << 10, "MiB": 1 << 20, "hour": 3600, "hours": 3600,
         "day": 86400, "days": 86400}


def section() -> str:
    text = README.read_text()
    assert SECTION in text, f"{README}: no section {SECTION!r}"
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0]


def figure(cell: str) -> int:
    """`64 MiB + 64 KiB`, `2^64 - 1`, `1 hour`, `4096` as a number (seconds for times)."""
    total = 0
    for sign, term in re.findall(r"([+-]?)\s*([^+-]+)", cell):
        m = re.fullmatch(r"(\d+)(?:\^(\d+))?\s*([A-Za-z]*)", term.strip())
        assert m and m[3] in UNITS, f"README: {cell!r} is not a figure this test reads"
        n = int(m[1]) ** int(m[2] or 1) * UNITS[m[3]]
        total += -n if sign == "-" else n
    return total


def rows() -> list[tuple[str, str, str]]:
    found = re.findall(r"^\| (.+?) \| (.+?) \| `([\w.]+)` \|$", section(), re.MULTILINE)
    assert len(found) >= 20, f"README: the bounds table has {len(found)} rows"
    return found


def test_every_figure_is_its_constant() -> None:
    wrong = []
    for what, cell, name in rows():
        module, constant = name.rsplit(".", 1)
        value = getattr(importlib.import_module(module), constant)
        if isinstance(value, dt.timedelta):
            value = int(value.total_seconds())
        if figure(cell) != value:
            wrong.append(f"{what}: README {cell}, {name} = {value}")
    assert wrong == []


def test_the_table_names_every_limit_of_the_bundle() -> None:
    named = {name for _, _, name in rows()}
    limits = {f"netsec.bundle.{n}" for n in vars(bundle)
              if n.startswith("MAX_") or n in ("CLOCK_SKEW", "VERIFY_OVERHEAD")}
    assert limits - named == set()


def test_every_refused_member_type_and_policy_key_is_named() -> None:
    text = " ".join(section().split())
    missing = [kind for kind in bundle._KINDS.values() if kind not in text]
    missing += [f"`{key}`" for key in (*bundle.POLICY_KEYS, *bundle.OWNER_KEYS)
                if f"`{key}`" not in text and f"`[{key}]`" not in text]
    assert missing == []
