"""The prefilter: which rules' fast patterns occur in a buffer, in one scan per buffer.

Every rule with a fast pattern contributes (buffer, pattern, nocase). Per buffer, one
multi-pattern matcher answers "which of these patterns occur anywhere in the data?".
Two interchangeable backends lead to the same alerts:

- Hyperscan (a block-mode database per buffer, each pattern a hex-escaped literal with
  SINGLEMATCH, CASELESS for nocase), when the `hyperscan` wheel imports;
- pure Python: up to a few hundred patterns, a caseless `in` per pattern; beyond that
  one caseless trie-shaped regular expression over the patterns' first bytes, searched
  with a lookahead so it reports, at each position, the longest pattern starting
  there, plus the shorter patterns that are its prefixes. It never misses a
  pattern that occurs, but may also name rules whose pattern does not (case or tail
  differ): the prefilter only picks candidates, and the full match decides, so the
  alerts are identical to Hyperscan's.

`HYPERWALL_PREFILTER=python|hyperscan` (or the `backend` argument) forces one.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable

try:
    import hyperscan
except ImportError:  # the wheel exists for x86_64 only
    hyperscan = None  # type: ignore[assignment]

BACKENDS = ("hyperscan", "python")
ENV_VAR = "HYPERWALL_PREFILTER"

Scanner = Callable[[bytes], set[int]]


class PrefilterError(ValueError):
    """A backend was asked for that cannot run here."""


def choose_backend(requested: str | None = None) -> str:
    """The backend to use: the argument, else the env var, else Hyperscan when present."""
    name = requested or os.environ.get(ENV_VAR) or ("hyperscan" if hyperscan else "python")
    if name not in BACKENDS:
        raise PrefilterError(f"unknown prefilter backend {name!r} (expected one of {BACKENDS})")
    if name == "hyperscan" and hyperscan is None:
        raise PrefilterError("prefilter backend 'hyperscan' requested but `hyperscan` "
                             "does not import on this machine")
    return name


class Prefilter:
    """Per-buffer multi-pattern matchers mapping occurring patterns to the ids that own them.

    `entries` are (owner id, buffer, pattern, nocase); `scan(buffer, data)` returns the set
    of owner ids whose pattern occurs in `data`. Identical patterns share one matcher slot.
    """

    def __init__(self, entries: Iterable[tuple[int, str, bytes, bool]],
                 backend: str | None = None) -> None:
        self.backend = choose_backend(backend)
        by_buffer: dict[str, dict[tuple[bytes, bool], list[int]]] = {}
        for owner, buffer, pattern, nocase in entries:
            if not pattern:
                raise PrefilterError(f"empty fast pattern for rule id {owner} on {buffer}")
            key = (pattern.lower() if nocase else pattern, nocase)
            by_buffer.setdefault(buffer, {}).setdefault(key, []).append(owner)
        self.fallbacks: list[str] = []  # buffers Hyperscan refused, matched in Python
        self._scanners: dict[str, Scanner] = {}
        for buffer, patterns in by_buffer.items():
            keys = list(patterns)
            owners = [tuple(patterns[k]) for k in keys]
            scanner = None
            if self.backend == "hyperscan":
                try:
                    scanner = _hyperscan_scanner(keys, owners)
                except hyperscan.error:
                    self.fallbacks.append(buffer)
            self._scanners[buffer] = scanner or _python_scanner(keys, owners)

    @property
    def buffers(self) -> frozenset[str]:
        return frozenset(self._scanners)

    def scan(self, buffer: str, data: bytes | list[bytes]) -> set[int]:
        scanner = self._scanners.get(buffer)
        if scanner is None:
            return set()
        if isinstance(data, list):
            found: set[int] = set()
            for item in data:
                found |= scanner(item)
            return found
        return scanner(data)


def _hyperscan_scanner(keys: list[tuple[bytes, bool]],
                       owners: list[tuple[int, ...]]) -> Scanner:
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    single, caseless = hyperscan.HS_FLAG_SINGLEMATCH, hyperscan.HS_FLAG_CASELESS
    db.compile(
        expressions=["".join(f"\\x{b:02x}" for b in p).encode() for p, _ in keys],
        ids=list(range(len(keys))),
        elements=len(keys),
        flags=[single | caseless if nocase else single for _, nocase in keys],
    )
    scan = db.scan

    def scanner(data: bytes) -> set[int]:
        hits: list[int] = []
        scan(data, match_event_handler=lambda pid, _f, _t, _fl, _c: hits.append(pid))
        found: set[int] = set()
        for pid in hits:
            found.update(owners[pid])
        return found

    return scanner


def _python_scanner(keys: list[tuple[bytes, bool]],
                    owners: list[tuple[int, ...]]) -> Scanner:
    # One caseless trie over every pattern's first _PY_PREFIX bytes: it may name rules whose
    # pattern is not there (case differs, or the tail differs), never miss one that is; the
    # detector's full match then decides, so alerts are the same as with Hyperscan.
    merged: dict[bytes, set[int]] = {}
    for (pattern, _), own in zip(keys, owners, strict=True):
        merged.setdefault(pattern[:_PY_PREFIX].lower(), set()).update(own)
    patterns = {k: tuple(v) for k, v in merged.items()}
    if len(patterns) > _LOOP_MAX:
        return _TrieSearch(patterns).scan
    items = list(patterns.items())

    def scanner(data: bytes) -> set[int]:
        low = data.lower()
        found: set[int] = set()
        for k, own in items:
            if k in low:
                found.update(own)
        return found

    return scanner


_PY_PREFIX = 24  # bounds the regex's nesting; long patterns are rare and verified anyway
# Up to this many patterns, one C-level `in` per pattern beats the trie regex, which pays
# for its branches at every byte (measured on ET Open's payload patterns: 118 patterns
# on 1,400 bytes, 68 us against 236 us).
_LOOP_MAX = 512


class _TrieSearch:
    """Every pattern occurring in the data (caseless); see the module docstring."""

    def __init__(self, patterns: dict[bytes, tuple[int, ...]]) -> None:
        self.patterns = patterns
        # For each pattern, the shorter patterns it starts with: present wherever it is.
        self.prefixes = {p: [q for q in patterns if len(q) < len(p) and p.startswith(q)]
                         for p in patterns}
        body = _trie_regex(_trie(patterns))
        self.regex = re.compile(b"(?=(" + body + b"))", re.IGNORECASE | re.DOTALL)

    def scan(self, data: bytes) -> set[int]:
        found: set[int] = set()
        seen: set[bytes] = set()
        patterns, prefixes = self.patterns, self.prefixes
        for m in self.regex.finditer(data):
            hit = m.group(1).lower()
            if hit in seen:
                continue
            seen.add(hit)
            found.update(patterns[hit])
            for q in prefixes[hit]:
                if q not in seen:
                    seen.add(q)
                    found.update(patterns[q])
        return found


_END = -1   # the key that marks a node where a word ends
_Trie = dict[int, "_Trie"]


def _trie(patterns: Iterable[bytes]) -> _Trie:
    root: _Trie = {}
    for p in patterns:
        node = root
        for b in p:
            node = node.setdefault(b, {})
        node[_END] = {}
    return root


def _trie_regex(node: _Trie) -> bytes:
    """A regex matching the longest trie word at the current position (greedy branches)."""
    branches = [re.escape(bytes([b])) + _trie_regex(child)
                for b, child in node.items() if b != _END]
    if not branches:
        return b""
    body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
    if _END in node:
        return b"(?:" + body + b")?"
    return body
