"""The prefilter: both backends find exactly the occurring fast patterns."""
from __future__ import annotations

import random

import pytest

from netsec.detect.prefilter import Prefilter, PrefilterError, choose_backend, hyperscan

BACKENDS = ["python"] + (["hyperscan"] if hyperscan else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_finds_overlapping_prefix_and_nocase_patterns(backend: str) -> None:
    pf = Prefilter([
        (1, "pkt", b"abc", False),
        (2, "pkt", b"ab", False),      # a prefix of another pattern at the same position
        (3, "pkt", b"bc", False),      # overlaps the end of another
        (4, "pkt", b"EVIL", True),
        (5, "pkt", b"evil", False),    # same bytes, case-sensitive: must not match "EvIl"
        (6, "http.uri", b"abc", False),
        (7, "pkt", b"abc", False),     # a duplicate pattern owned by another rule
        (8, "pkt", b"\x00\xff(.*", False),  # regex metacharacters and binary
    ], backend=backend)
    assert pf.scan("pkt", b"xxabcx EvIl") == {1, 2, 3, 4, 7}
    assert pf.scan("pkt", b"evil") == {4, 5}
    assert pf.scan("pkt", b"a\x00\xff(.*") == {8}
    assert pf.scan("pkt", b"nothing here") == set()
    assert pf.scan("http.uri", b"/abc") == {6}
    assert pf.scan("dns.query", b"abc") == set()
    assert pf.scan("pkt", [b"zz", b"EVIL"]) == {4}


def test_backends_agree_on_random_patterns() -> None:
    if hyperscan is None:
        pytest.skip("hyperscan not installed")
    rng = random.Random(7)
    alphabet = b"abAB\x00."
    entries = [(i, "pkt", bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 4))),
                rng.random() < 0.4) for i in range(120)]
    hs, py = Prefilter(entries, backend="hyperscan"), Prefilter(entries, backend="python")
    for _ in range(300):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert hs.scan("pkt", data) == py.scan("pkt", data), data


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERWALL_PREFILTER", "python")
    assert choose_backend() == "python"
    assert Prefilter([(1, "pkt", b"x", False)]).backend == "python"
    with pytest.raises(PrefilterError, match="unknown prefilter backend 'nope'"):
        choose_backend("nope")


def test_empty_pattern_is_refused() -> None:
    with pytest.raises(PrefilterError, match="empty fast pattern for rule id 3"):
        Prefilter([(3, "pkt", b"", False)], backend="python")
