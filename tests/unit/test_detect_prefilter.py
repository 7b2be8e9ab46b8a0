"""The prefilter: both backends find exactly the occurring fast patterns."""
from __future__ import annotations

import random

import pytest

from netsec.detect.prefilter import Prefilter, PrefilterError, choose_backend, hyperscan

BACKENDS = ["python"] + (["hyperscan"] if hyperscan else [])


@pytest.fixture(params=["loop", "trie"])
def python_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fallback's two strategies: a per-pattern loop, or the trie regex (forced)."""
    if request.param == "trie":
        from netsec.detect import prefilter
        monkeypatch.setattr(prefilter, "_LOOP_MAX", 0)
    return request.param


def exact(entries, data: bytes) -> set[int]:
    return {o for o, _, p, nc in entries if (p.lower() in data.lower() if nc else p in data)}


ENTRIES = [
    (1, "pkt", b"abc", False),
    (2, "pkt", b"ab", False),      # a prefix of another pattern at the same position
    (3, "pkt", b"bc", False),      # overlaps the end of another
    (4, "pkt", b"EVIL", True),
    (5, "pkt", b"evil", False),    # same bytes, case-sensitive
    (6, "http.uri", b"abc", False),
    (7, "pkt", b"abc", False),     # a duplicate pattern owned by another rule
    (8, "pkt", b"\x00\xff(.*", False),  # regex metacharacters and binary
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_finds_overlapping_prefix_and_nocase_patterns(backend: str, python_mode: str) -> None:
    pf = Prefilter(ENTRIES, backend=backend)
    # Hyperscan is exact; the Python fallback may add rules that differ only in case.
    extra = {5} if backend == "python" else set()
    assert pf.scan("pkt", b"xxabcx EvIl") == {1, 2, 3, 4, 7} | extra
    assert pf.scan("pkt", b"evil") == {4, 5}
    assert pf.scan("pkt", b"a\x00\xff(.*") == {8}
    assert pf.scan("pkt", b"nothing here") == set()
    assert pf.scan("http.uri", b"/abc") == {6}
    assert pf.scan("dns.query", b"abc") == set()
    assert pf.scan("pkt", [b"zz", b"EVIL"]) == {4} | extra


@pytest.mark.parametrize("backend", BACKENDS)
def test_never_misses_an_occurring_pattern(backend: str, python_mode: str) -> None:
    rng = random.Random(7)
    alphabet = b"abAB\x00."
    entries = [(i, "pkt", bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 30))),
                rng.random() < 0.4) for i in range(150)]
    entries += [(1000 + i, "pkt", bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 4))),
                 rng.random() < 0.4) for i in range(60)]
    pf = Prefilter(entries, backend=backend)
    for _ in range(300):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        got = pf.scan("pkt", data)
        if backend == "hyperscan":
            assert got == exact(entries, data), data
        else:
            assert exact(entries, data) <= got, data
            # Only candidates whose first bytes occur caselessly: never the whole rule set.
            assert all(entries_prefix_in(entries, o, data) for o in got), data


def entries_prefix_in(entries, owner: int, data: bytes) -> bool:
    pattern = next(p for o, _, p, _ in entries if o == owner)
    return pattern[:24].lower() in data.lower()


def test_long_patterns_do_not_overflow_the_fallback(python_mode: str) -> None:
    pf = Prefilter([(1, "pkt", b"A" * 3000, False), (2, "pkt", b"x" * 900 + b"y", True)],
                   backend="python")
    assert pf.scan("pkt", b"A" * 3000) == {1}
    assert pf.scan("pkt", b"X" * 900 + b"Y") == {2}


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERWALL_PREFILTER", "python")
    assert choose_backend() == "python"
    assert Prefilter([(1, "pkt", b"x", False)]).backend == "python"
    with pytest.raises(PrefilterError, match="unknown prefilter backend 'nope'"):
        choose_backend("nope")


def test_empty_pattern_is_refused() -> None:
    with pytest.raises(PrefilterError, match="empty fast pattern for rule id 3"):
        Prefilter([(3, "pkt", b"", False)], backend="python")


def test_a_buffer_hyperscan_refuses_falls_back_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    if hyperscan is None:
        pytest.skip("hyperscan not installed")

    def refuse(*args, **kw):
        raise hyperscan.error("pattern too large")

    # Hyperscan's own class, not our function that calls it: a compiled engine calls its
    # own functions directly, past any patch of its module.
    monkeypatch.setattr(hyperscan, "Database", refuse)
    pf = Prefilter([(1, "pkt", b"evil", False), (2, "http.uri", b"/x", False)],
                   backend="hyperscan")
    assert sorted(pf.fallbacks) == ["http.uri", "pkt"]
    assert pf.scan("pkt", b"so evil") == {1} and pf.scan("http.uri", b"/x") == {2}
