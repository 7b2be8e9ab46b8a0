"""The restart policy every supervisor runs (domains.restart), on a made-up clock: the
delays, the crash-loop count, the outages and what is said."""
from __future__ import annotations

import signal

import pytest

from domains.agent import SERVICES_BACKOFF
from domains.init import AGENT_BACKOFF
from domains.restart import Backoff, Restarts
from domains.supervise import ENGINE


def delays(backoff: Backoff, lives: list[float]) -> list[float | None]:
    """The delay after each death of children that lived `lives` seconds, one after another."""
    restarts, now, out = Restarts("x", backoff), 100.0, []
    for lived in lives:
        restarts.started(now)
        now += lived
        ended = restarts.exited(now, 1)
        out.append(ended.delay)
        now += ended.delay or 0.0
    return out


@pytest.mark.parametrize("lives, want", [
    ([30.0], [0.0]),                                  # a crash out of the blue: at once
    ([0.1, 0.1, 0.1, 0.1], [0.0, 0.05, 0.1, 0.2]),    # dying young: ever more slowly
    ([0.1] * 12, [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0]),
    ([0.1, 0.1, 0.1, 30.0], [0.0, 0.05, 0.1, 0.0]),   # healthy for a while: forgiven
    ([0.1, 0.1, 10.0, 0.1], [0.0, 0.05, 0.0, 0.05]),  # exactly stable_after is healthy
])
def test_the_engines_figures(lives: list[float], want: list[float]) -> None:
    assert delays(ENGINE, lives) == pytest.approx(want)


def test_inits_figures_for_the_agent() -> None:
    """Doubling from half a second to 30 s; a minute's run starts over."""
    assert delays(AGENT_BACKOFF, [0.1] * 9) == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert delays(AGENT_BACKOFF, [0.1, 0.1, 59.9, 60.0, 0.1]) == [0.5, 1, 2, 0.5, 1]


def test_the_agents_figures_for_the_services_a_constant_half_second() -> None:
    assert delays(SERVICES_BACKOFF, [0.1, 0.1, 0.1, 100.0, 0.1]) == [0.5] * 5


def test_what_a_crash_loop_says() -> None:
    restarts = Restarts("ipsd", ENGINE)
    restarts.started(0.0)
    assert restarts.exited(3.0, -signal.SIGKILL).line == \
        "ipsd killed by SIGKILL after 3.0s; restarting ipsd at once"
    restarts.started(3.0)
    assert restarts.exited(3.1, 2).line == ("ipsd exited with 2 after 0.1s, 2 deaths in a row "
                                            "with no run of 10s between; restarting ipsd in 0.05s")
    restarts.started(3.2)
    assert restarts.exited(3.2, -63).line.startswith("ipsd killed by signal 63 after 0.0s, 3 ")
    assert restarts.in_a_row == 3 and restarts.starts == 3


def test_a_child_asked_to_stop_is_neither_restarted_nor_counted() -> None:
    restarts = Restarts("agent", ENGINE)
    restarts.started(0.0)
    ended = restarts.exited(0.5, -signal.SIGTERM, restart=False)
    assert ended.delay is None and ended.line == "agent killed by SIGTERM after 0.5s"
    assert restarts.in_a_row == 0 and restarts.outages == []


def test_an_outage_lasts_from_the_death_to_the_next_ready() -> None:
    restarts = Restarts("ipsd", ENGINE)
    restarts.started(0.0)
    assert restarts.ready(0.2, 41).line == "ipsd 41 running" and restarts.outages == []
    restarts.exited(5.0, -signal.SIGKILL)
    restarts.started(5.0)
    back = restarts.ready(5.25, 42)
    assert back.line == "ipsd 42 running, 0.250s after the last one died"
    assert back.outage is not None and back.outage.down == pytest.approx(0.25)
    assert (back.outage.exit_code, back.outage.lived) == (-signal.SIGKILL, 5.0)
    assert restarts.outages == [back.outage]


def test_a_successor_that_dies_unready_leaves_an_outage_without_end() -> None:
    restarts = Restarts("ipsd", ENGINE)
    restarts.started(0.0)
    assert restarts.exited(1.0, 1).outage is None
    restarts.started(1.0)
    second = restarts.exited(1.1, 1)             # never said ready
    assert second.outage is not None and second.outage.down is None
    assert second.outage.exit_code == 1 and second.outage.lived == 1.0
    restarts.started(1.2)
    back = restarts.ready(1.3, 7)
    assert back.outage is not None and back.outage.down == pytest.approx(0.2)
    assert [o.down is None for o in restarts.outages] == [True, False]


def test_a_start_that_failed_is_a_death_at_birth() -> None:
    restarts = Restarts("agent", Backoff(0.5, 1.0, 30.0, 60.0))
    first = restarts.failed(0.0, "/nonexistent: not there")
    assert first.delay == 0.5 and first.line == "/nonexistent: not there; restarting agent in 0.5s"
    assert restarts.failed(0.5, "again").delay == 1.0


@pytest.mark.parametrize("figures", [(-1, 1, 1, 1), (0, 0, 1, 1), (0, 2, 1, 1), (0, 1, 1, 0)])
def test_figures_that_make_no_policy_are_refused(figures: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="backoff: want .* got"):
        Backoff(*figures)
