"""classification.config: `config classification: shortname,description,priority`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from netsec.rules.errors import RuleError


@dataclass(frozen=True, slots=True)
class Classtype:
    name: str
    description: str
    priority: int


def parse_classification(text: str, where: str = "classification.config") -> dict[str, Classtype]:
    out: dict[str, Classtype] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, sep, rest = line.partition(":")
        if not sep or head.strip() != "config classification":
            raise RuleError(f"classification: not a classification line {line!r}", f"{where}:{n}")
        parts = [p.strip() for p in rest.split(",")]
        if len(parts) != 3 or not parts[2].isdigit():
            raise RuleError(f"classification: want name,description,priority: {line!r}",
                            f"{where}:{n}")
        out[parts[0].lower()] = Classtype(parts[0], parts[1], int(parts[2]))
    return out


def load_classification(path: Path) -> dict[str, Classtype]:
    return parse_classification(path.read_text(), str(path))
