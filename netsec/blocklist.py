"""Category block lists: parsed from the formats people publish, matched by domain suffix.

Accepted line formats, one entry per line (comments `#` or `!`, blank lines ignored):
- hosts files: `0.0.0.0 ads.example.com` / `127.0.0.1 a.example b.example`;
- plain domains: `ads.example.com`;
- AdBlock network rules of the domain-anchor form: `||ads.example.com^` (optionally with
  `$` options, which are ignored); other AdBlock rules (cosmetic, paths, exceptions) have no
  DNS meaning and are reported as skipped, not errors.
A listed domain blocks itself and every subdomain. The category of a file is its name
without extension (`gambling.txt` → `gambling`), unless given.

A time window (`Schedule`) says when a category is enforced, e.g. social media only on
school nights; outside its windows the category does not block.

The owner's lists and the provider's make one block list (`compose`), the owner's winning:
a provider schedules only the categories it alone ships. The last lists that loaded are
kept (`save_good`) for the next start to fall back on (`load_good`), so that a list that
fails to load never leaves sys-sec blocking less than it did.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from netsec.app import normalize

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_HOSTS_ADDR = re.compile(r"^(?:0\.0\.0\.0|127\.0\.0\.1|::1?|0)$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class BlocklistError(ValueError):
    """A list or schedule that cannot be used; says which file/line and why."""


def normalise_domain(untrusted: str) -> str | None:
    """A lowercase domain without trailing dot, or None if it is not a valid name."""
    try:   # the normalisation traffic gets (netsec.app.normalize), so the two compare
        name = normalize.name(untrusted.encode()).decode("ascii")
    except UnicodeError:
        return None
    if not name or len(name) > 253 or "." not in name:
        return None
    return name if all(_LABEL.match(label) for label in name.split(".")) else None


@dataclass
class ParseReport:
    source: str
    entries: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def parse_lines(lines: Iterable[str], source: str) -> tuple[set[str], ParseReport]:
    domains: set[str] = set()
    report = ParseReport(source)
    for lineno, raw in enumerate(lines, 1):
        stripped = raw.strip()
        # AdBlock cosmetic rules (`site##.banner`, `#@#`, `#?#`) would read as a domain
        # followed by a comment; they hide page elements and mean nothing to DNS.
        if stripped.startswith("@@") or any(m in stripped for m in ("##", "#@#", "#?#")):
            report.skipped.append((lineno, "AdBlock exception or cosmetic rule"))
            continue
        line = stripped if stripped.startswith("||") else stripped.split("#", 1)[0].strip()
        if not line or line.startswith("!") or line.startswith("["):
            continue
        candidates: list[str]
        if line.startswith("||"):
            body = line[2:].split("$", 1)[0]
            if not body.endswith("^") or any(c in body[:-1] for c in "/*^|"):
                report.skipped.append((lineno, "AdBlock rule is not a plain ||domain^ anchor"))
                continue
            candidates = [body[:-1]]
        else:
            fields = line.split()
            if len(fields) > 1 and _HOSTS_ADDR.match(fields[0]):
                candidates = fields[1:]
            elif len(fields) == 1:
                candidates = fields
            else:
                report.skipped.append((lineno, f"not a hosts line or a domain: {line[:60]!r}"))
                continue
        for candidate in candidates:
            name = normalise_domain(candidate)
            if name is None:
                if candidate not in ("localhost", "localhost.localdomain", "broadcasthost"):
                    report.skipped.append((lineno, f"not a domain name: {candidate[:60]!r}"))
                continue
            domains.add(name)
            report.entries += 1
    return domains, report


@dataclass(frozen=True)
class Window:
    days: frozenset[int]      # 0 = Monday
    start: dt.time
    end: dt.time              # end < start spans midnight

    def contains(self, when: dt.datetime) -> bool:
        t, day = when.time(), when.weekday()
        if self.start <= self.end:
            return day in self.days and self.start <= t < self.end
        # Spans midnight: the early part belongs to the window that began the day before.
        return (day in self.days and t >= self.start) or \
            ((day - 1) % 7 in self.days and t < self.end)


def parse_window(text: str) -> Window:
    """`mon-fri 20:00-07:00`, `sat,sun 00:00-24:00`, `daily 21:30-06:30`."""
    m = re.fullmatch(r"\s*([a-z,-]+)\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})\s*", text.lower())
    if not m:
        raise BlocklistError(f"time window {text!r}: expected e.g. 'mon-fri 20:00-07:00'")
    days_text, h1, m1, h2, m2 = m.groups()
    days: set[int] = set()
    for part in days_text.split(","):
        if part == "daily":
            days.update(range(7))
        elif "-" in part:
            a, b = part.split("-", 1)
            if a not in DAYS or b not in DAYS:
                raise BlocklistError(f"time window {text!r}: unknown day in {part!r}")
            i, j = DAYS.index(a), DAYS.index(b)
            days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part in DAYS:
            days.add(DAYS.index(part))
        else:
            raise BlocklistError(f"time window {text!r}: unknown day {part!r}")
    def clock(h: str, mnt: str) -> dt.time:
        hour, minute = int(h), int(mnt)
        if (hour, minute) == (24, 0):
            return dt.time(23, 59, 59, 999999)
        if hour > 23 or minute > 59:
            raise BlocklistError(f"time window {text!r}: {h}:{mnt} is not a time of day")
        return dt.time(hour, minute)
    return Window(frozenset(days), clock(h1, m1), clock(h2, m2))


@dataclass
class Category:
    name: str
    domains: set[str]
    windows: tuple[Window, ...] = ()    # empty: always enforced

    def active(self, when: dt.datetime) -> bool:
        return not self.windows or any(w.contains(when) for w in self.windows)


class Blocklist:
    """All categories; `lookup(name, when)` gives the blocking category or None."""

    def __init__(self, categories: Iterable[Category] = ()) -> None:
        self.categories = {c.name: c for c in categories}
        # One index from domain to categories keeps a lookup at a few dict probes.
        self._index: dict[str, list[str]] = {}
        for c in self.categories.values():
            for d in c.domains:
                self._index.setdefault(d, []).append(c.name)

    @classmethod
    def from_files(cls, files: Iterable[Path],
                   schedules: dict[str, list[str]] | None = None
                   ) -> tuple[Blocklist, list[ParseReport]]:
        cats: dict[str, set[str]] = {}
        reports = []
        for path in files:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as e:
                raise BlocklistError(f"{path}: cannot read: {e}") from None
            domains, report = parse_lines(text.splitlines(), str(path))
            cats.setdefault(path.stem.lower(), set()).update(domains)
            reports.append(report)
        schedules = schedules or {}
        unknown = set(schedules) - set(cats)
        if unknown:
            raise BlocklistError(f"schedule names unknown categories: {', '.join(sorted(unknown))}")
        return cls(Category(name, doms, tuple(parse_window(w) for w in schedules.get(name, [])))
                   for name, doms in cats.items()), reports

    def lookup(self, name: str, when: dt.datetime | None = None) -> str | None:
        domain = normalise_domain(name)
        if domain is None:
            return None
        when = when or dt.datetime.now()
        labels = domain.split(".")
        for i in range(len(labels) - 1):
            for cat in self._index.get(".".join(labels[i:]), ()):
                if self.categories[cat].active(when):
                    return cat
        return None

    def __len__(self) -> int:
        return len(self._index)


def compose(owner: Iterable[Path], provider: Iterable[Path],
            owner_schedules: dict[str, list[str]], provider_schedules: dict[str, list[str]]
            ) -> tuple[Blocklist, list[ParseReport], dict[str, list[str]], list[str]]:
    """The owner's lists and the provider's (the bundle in force) as one block list, with
    the schedules in force and notes on what was left out. The owner's win: a provider's
    schedule of a category the owner lists too is ignored (the owner's category blocks
    as the owner says, always unless the owner scheduled it), the owner's schedule of any
    category replaces the provider's, and a schedule naming no listed category is dropped
    (it could only have narrowed a category there is none of)."""
    owner, provider = list(owner), list(provider)
    owned = {p.stem.lower() for p in owner}
    listed = owned | {p.stem.lower() for p in provider}
    notes = []
    overruled = sorted(set(provider_schedules) & owned)
    if overruled:
        notes.append(f"the provider's schedule of {', '.join(overruled)} ignored: the "
                     "owner lists that category")
    schedules = {c: w for c, w in provider_schedules.items() if c not in owned} | \
        owner_schedules
    unlisted = sorted(set(schedules) - listed)
    if unlisted:
        notes.append(f"schedule of {', '.join(unlisted)} dropped: no list of that category")
    schedules = {c: w for c, w in schedules.items() if c in listed}
    blocklist, reports = Blocklist.from_files([*owner, *provider], schedules)
    return blocklist, reports, schedules, notes


def save_good(path: Path, blocklist: Blocklist, schedules: dict[str, list[str]]) -> None:
    """Keep `blocklist` (with the schedules it was built with) as the last good lists:
    written whole under a temporary name and renamed, so a crash leaves the old or new."""
    record = {"sites": len(blocklist), "schedules": schedules,
              "categories": {n: sorted(c.domains) for n, c in blocklist.categories.items()}}
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, separators=(",", ":"), sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_good(path: Path) -> tuple[Blocklist, dict[str, list[str]]] | None:
    """The last good lists kept by save_good; None when there are none. BlocklistError
    when the file is there but not readable as them."""
    try:
        record = json.loads(path.read_text())
        schedules = record["schedules"]
        return Blocklist(Category(name, {d for d in domains if normalise_domain(d) == d},
                                  tuple(parse_window(w) for w in schedules.get(name, [])))
                         for name, domains in record["categories"].items()), schedules
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise BlocklistError(f"{path}: not the last good lists ({type(e).__name__}: {e})") \
            from None
