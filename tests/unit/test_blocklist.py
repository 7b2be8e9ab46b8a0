"""Block lists: the three formats, suffix matching, categories, time windows, bad input."""
import datetime as dt
from pathlib import Path

import pytest

from netsec.blocklist import (
    Blocklist,
    BlocklistError,
    Category,
    compose,
    load_good,
    parse_lines,
    parse_window,
    save_good,
)

HOSTS = """# a hosts file
0.0.0.0 ads.example.com
127.0.0.1 tracker.example.net  metrics.example.org # trailing comment
0.0.0.0 localhost
::1 v6.example.com
"""
PLAIN = "casino.example\n\n  Poker.Example.  \nnot a domain line\n"
ADBLOCK = """[Adblock Plus 2.0]
! comment
||bets.example^
||odds.example^$third-party
||cdn.example/path^
@@||good.example^
example.com##.banner
"""


def test_hosts_format() -> None:
    domains, report = parse_lines(HOSTS.splitlines(), "hosts")
    assert domains == {"ads.example.com", "tracker.example.net", "metrics.example.org",
                       "v6.example.com"}
    assert report.entries == 4 and report.skipped == []


def test_plain_format_normalises_and_reports() -> None:
    domains, report = parse_lines(PLAIN.splitlines(), "plain")
    assert domains == {"casino.example", "poker.example"}
    assert report.skipped == [(4, "not a hosts line or a domain: 'not a domain line'")]


def test_adblock_domain_anchors_only() -> None:
    domains, report = parse_lines(ADBLOCK.splitlines(), "adblock")
    assert domains == {"bets.example", "odds.example"}
    reasons = dict(report.skipped)
    assert "plain ||domain^" in reasons[5]
    assert "exception or cosmetic" in reasons[6] and "exception or cosmetic" in reasons[7]


def test_suffix_matching_and_categories(tmp_path: Path) -> None:
    (tmp_path / "gambling.txt").write_text("casino.example\n")
    (tmp_path / "ads.hosts").write_text("0.0.0.0 ads.example.com\n")
    bl, reports = Blocklist.from_files(sorted(tmp_path.iterdir()))
    assert bl.lookup("casino.example") == "gambling"
    assert bl.lookup("www.CASINO.example.") == "gambling"
    assert bl.lookup("notcasino.example") is None
    assert bl.lookup("example.com") is None
    assert bl.lookup("x.ads.example.com") == "ads"
    assert bl.lookup("\x00bad..name") is None
    assert len(reports) == 2


def test_time_windows() -> None:
    school = parse_window("mon-fri 20:00-07:00")
    cat = Category("social", {"social.example"}, (school,))
    bl = Blocklist([cat])
    monday_night = dt.datetime(2026, 11, 23, 21, 0)      # a Monday
    tuesday_early = dt.datetime(2026, 11, 24, 6, 30)
    saturday_night = dt.datetime(2026, 11, 28, 21, 0)
    saturday_early = dt.datetime(2026, 11, 28, 6, 30)    # Friday's window runs into Saturday
    monday_noon = dt.datetime(2026, 11, 23, 12, 0)
    assert bl.lookup("social.example", monday_night) == "social"
    assert bl.lookup("social.example", tuesday_early) == "social"
    assert bl.lookup("social.example", saturday_early) == "social"
    assert bl.lookup("social.example", saturday_night) is None
    assert bl.lookup("social.example", monday_noon) is None
    assert parse_window("daily 00:00-24:00").contains(monday_noon)
    assert parse_window("fri-mon 10:00-11:00").days == frozenset({4, 5, 6, 0})


@pytest.mark.parametrize("text", ["weekdays 20:00-07:00", "mon-fri 25:00-07:00",
                                  "mon-fri 8-9", "mon-xyz 10:00-11:00"])
def test_bad_windows_are_named(text: str) -> None:
    with pytest.raises(BlocklistError, match="time window"):
        parse_window(text)


def test_schedule_for_unknown_category(tmp_path: Path) -> None:
    (tmp_path / "ads.txt").write_text("ads.example\n")
    with pytest.raises(BlocklistError, match="unknown categories: social"):
        Blocklist.from_files([tmp_path / "ads.txt"], {"social": ["daily 00:00-01:00"]})


@pytest.fixture
def two_sides(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    (tmp_path / "owner").mkdir()
    (tmp_path / "provider").mkdir()
    (tmp_path / "owner" / "adult.txt").write_text("own.example\n")
    (tmp_path / "provider" / "adult.txt").write_text("theirs.example\n")
    (tmp_path / "provider" / "games.txt").write_text("game.example\n")
    return [tmp_path / "owner" / "adult.txt"], sorted((tmp_path / "provider").glob("*.txt"))


def test_the_owner_wins_over_the_provider(two_sides: tuple[list[Path], list[Path]]) -> None:
    """A provider's schedule cannot switch off the owner's always-on category; it schedules
    the category it alone ships, unless the owner scheduled that one too."""
    owner, provider = two_sides
    night = ["daily 22:00-06:00"]
    noon = dt.datetime(2026, 12, 2, 12, 0)
    bl, _, schedules, notes = compose(owner, provider, {}, {"adult": night, "games": night})
    assert schedules == {"games": night}
    assert "the provider's schedule of adult ignored: the owner lists that category" in notes
    assert bl.lookup("own.example", noon) == bl.lookup("theirs.example", noon) == "adult"
    assert bl.lookup("game.example", noon) is None
    bl, _, schedules, _ = compose(owner, provider, {"games": ["daily 11:00-13:00"]},
                                  {"games": night})
    assert schedules == {"games": ["daily 11:00-13:00"]}
    assert bl.lookup("game.example", noon) == "games"


def test_a_schedule_of_no_listed_category_is_dropped_not_fatal(
        two_sides: tuple[list[Path], list[Path]]) -> None:
    owner, provider = two_sides
    bl, _, schedules, notes = compose(owner, provider, {"social": ["daily 00:00-01:00"]}, {})
    assert schedules == {} and notes == ["schedule of social dropped: no list of that "
                                         "category"]
    assert bl.lookup("own.example") == "adult"


def test_the_last_good_lists_come_back_whole(tmp_path: Path,
                                             two_sides: tuple[list[Path], list[Path]]) -> None:
    owner, provider = two_sides
    bl, _, schedules, _ = compose(owner, provider, {"games": ["daily 11:00-13:00"]}, {})
    path = tmp_path / "good.json"
    assert load_good(path) is None
    save_good(path, bl, schedules)
    back, back_schedules = load_good(path)  # type: ignore[misc]
    assert back_schedules == schedules and len(back) == len(bl) == 3
    noon, night = dt.datetime(2026, 12, 2, 12, 0), dt.datetime(2026, 12, 2, 23, 0)
    for when in (noon, night):
        for site in ("own.example", "theirs.example", "game.example"):
            assert back.lookup(site, when) == bl.lookup(site, when)
    path.write_text("{torn")
    with pytest.raises(BlocklistError, match="good.json: not the last good lists"):
        load_good(path)
