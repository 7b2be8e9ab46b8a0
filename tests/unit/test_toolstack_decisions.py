"""The toolstack's decisions, apart from its IO: what recovery does with a domain it finds,
which backend states mean a domain stopped by itself, and when a probe starts a domain."""
from __future__ import annotations

import pytest

from dom0.backends.base import RunState
from dom0.config import Autostart
from dom0.model import DomainState, EventKind
from dom0.toolstack.autostart import probe_matches, starts_on
from dom0.toolstack.recovery import Found, found, from_run_state
from dom0.toolstack.supervision import stopped_by_itself


@pytest.mark.parametrize("run", list(RunState))
def test_a_half_created_domain_is_rolled_back_whatever_its_backend_says(run: RunState) -> None:
    assert found(True, run) is Found.ROLL_BACK


def test_a_domain_its_backend_no_longer_holds_loses_its_entries() -> None:
    assert found(False, RunState.ABSENT) is Found.REMOVE


@pytest.mark.parametrize("run, state", [
    (RunState.RUNNING, DomainState.RUNNING), (RunState.PAUSED, DomainState.PAUSED),
    (RunState.CREATED, DomainState.CREATED), (RunState.SHUTDOWN, DomainState.SHUTDOWN),
    (RunState.CRASHED, DomainState.CRASHED)])
def test_a_domain_the_backend_holds_is_adopted_in_its_state(run: RunState,
                                                            state: DomainState) -> None:
    assert found(False, run) is Found.ADOPT
    assert from_run_state(run) is state


@pytest.mark.parametrize("run, kind", [
    (RunState.RUNNING, None), (RunState.PAUSED, None), (RunState.CREATED, None),
    (RunState.SHUTDOWN, EventKind.SHUTDOWN), (RunState.ABSENT, EventKind.SHUTDOWN),
    (RunState.CRASHED, EventKind.CRASHED)])
def test_a_domain_that_stopped_by_itself_is_reported_as_what_it_did(
        run: RunState, kind: EventKind | None) -> None:
    assert stopped_by_itself(run) is kind


def test_a_probe_matches_only_the_address_the_config_expects() -> None:
    probe = Autostart(probe_name="intranet.corp", probe_address="10.1.2.3")
    assert probe_matches(probe, b"10.1.2.3")
    assert not probe_matches(probe, b"10.1.2.4")
    assert not probe_matches(probe, None)


def test_a_probe_starts_its_domain_once_per_change_to_a_match() -> None:
    assert starts_on(True, None) and starts_on(True, False)
    assert not starts_on(True, True)       # a start that failed is not retried each round
    assert not starts_on(False, None) and not starts_on(False, True)
