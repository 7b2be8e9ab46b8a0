"""load_rules: rule files (or folders of *.rules, sorted) to a RuleSet with a report.

A bad rule is skipped with its reason, file and line; the file goes on. Commented-out
rules (`# alert ...`) count as disabled. A repeated gid:sid keeps the first rule.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsec.rules.classification import Classtype, load_classification
from netsec.rules.errors import RuleError
from netsec.rules.parser import parse_rule
from netsec.rules.rule import ACTIONS, Rule
from netsec.rules.variables import Variables

_DISABLED = re.compile(r"#+\s*(?:" + "|".join(sorted(ACTIONS)) + r")\s+\S+\s+\S+.*\(")
_SID = re.compile(r"[(;]\s*sid\s*:\s*(\d+)")


@dataclass(slots=True)
class Skipped:
    sid: int | None
    file: str
    line: int
    reason: str


@dataclass(slots=True)
class FileReport:
    file: str
    loaded: int = 0
    disabled: int = 0
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(slots=True)
class RuleSet:
    rules: list[Rule]
    report: list[FileReport]
    parse_seconds: float = 0.0

    @property
    def loaded(self) -> int:
        return sum(f.loaded for f in self.report)

    @property
    def skipped(self) -> list[Skipped]:
        return [s for f in self.report for s in f.skipped]

    @property
    def disabled(self) -> int:
        return sum(f.disabled for f in self.report)


def rule_files(paths: list[Path]) -> list[Path]:
    """Files as given; a folder contributes its *.rules in sorted order."""
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.glob("*.rules")) if p.is_dir() else [p])
    return out


def iter_rule_texts(text: str) -> list[tuple[int, str, bool]]:
    """(first line, rule text, disabled) for each rule, joining `\\`-continued lines."""
    out: list[tuple[int, str, bool]] = []
    pending: list[str] = []
    first = 0
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not pending:
            if not s:
                continue
            if s.startswith("#"):
                if _DISABLED.match(s):
                    out.append((n, s, True))
                continue
            first = n
        if s.endswith("\\"):
            pending.append(s[:-1])
            continue
        pending.append(s)
        out.append((first, " ".join(pending), False))
        pending = []
    if pending:
        out.append((first, " ".join(pending), False))
    return out


def load_rules(paths: list[Path], variables: Variables | None = None,
               classification: Path | None = None) -> RuleSet:
    import time
    t0 = time.perf_counter()
    variables = variables or Variables()
    classes: dict[str, Classtype] | None = (
        load_classification(classification) if classification else None)
    rules: list[Rule] = []
    report: list[FileReport] = []
    seen: dict[tuple[int, int], str] = {}
    shared: dict[str, Any] = {}
    for path in rule_files([Path(p) for p in paths]):
        fr = FileReport(str(path))
        report.append(fr)
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as e:
            fr.skipped.append(Skipped(None, str(path), 0, f"cannot read: {e.strerror}"))
            continue
        for line, rtext, disabled in iter_rule_texts(text):
            if disabled:
                fr.disabled += 1
                continue
            where = f"{path}:{line}"
            try:
                rule = parse_rule(rtext, variables, where, classes, shared)
            except RuleError as e:
                m = _SID.search(rtext)
                fr.skipped.append(Skipped(int(m.group(1)) if m else None, str(path), line,
                                          e.reason))
                continue
            except Exception as e:  # a bug in a keyword must cost one rule, not the load
                m = _SID.search(rtext)
                fr.skipped.append(Skipped(int(m.group(1)) if m else None, str(path), line,
                                          f"internal error: {type(e).__name__}: {e}"))
                continue
            key = (rule.gid, rule.sid)
            if key in seen:
                fr.skipped.append(Skipped(rule.sid, str(path), line,
                                          f"duplicate sid {rule.gid}:{rule.sid} "
                                          f"(first at {seen[key]})"))
                continue
            seen[key] = where
            rules.append(rule)
            fr.loaded += 1
    return RuleSet(rules, report, time.perf_counter() - t0)
