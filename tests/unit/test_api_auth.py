"""The authorisation policy (pure) and how credentials become a caller."""
from __future__ import annotations

import grp
import os
import pwd

import pytest

from dom0.api.auth import (
    OWNER_ONLY,
    SECURITY_READS,
    Caller,
    Operation,
    PeerCred,
    is_owner,
    may_use,
    read_refusal,
    readable_domains,
    refusal,
    resolve_caller,
)

OWNER = Caller(uid=1001, user="olga", owner=True)
ALICE = Caller(uid=1002, user="alice", owner=False)
NOBODY = Caller(uid=4_000_000, user=None, owner=False)
DOMAIN_OPS = [op for op in Operation if op not in OWNER_ONLY
              and op not in (Operation.LIST, Operation.EVENTS)]


@pytest.mark.parametrize("uid, groups, owner_gid, expected", [
    (0, [0], None, True),                # root, even without the group existing
    (1001, [1001, 995], 995, True),      # a member of the owner group
    (1001, [1001], 995, False),
    (1001, [1001, 995], None, False),    # no owner group on this machine
])
def test_is_owner(uid: int, groups: list[int], owner_gid: int | None, expected: bool) -> None:
    assert is_owner(uid, groups, owner_gid) is expected


@pytest.mark.parametrize("op", list(Operation))
def test_owners_may_do_everything(op: Operation) -> None:
    assert refusal(OWNER, op, "work", ("alice",)) is None
    assert refusal(OWNER, op, "nope", None) is None


@pytest.mark.parametrize("op", DOMAIN_OPS)
def test_a_listed_user_may_use_their_domain(op: Operation) -> None:
    assert refusal(ALICE, op, "work", ("bob", "alice")) is None


@pytest.mark.parametrize("op", DOMAIN_OPS)
def test_an_unlisted_user_is_refused_and_told_why(op: Operation) -> None:
    reason = refusal(ALICE, op, "work", ("bob",))
    assert reason is not None and "'alice'" in reason and "'work'" in reason
    assert "users" in reason


@pytest.mark.parametrize("op", DOMAIN_OPS)
def test_a_missing_domain_looks_like_a_hidden_one(op: Operation) -> None:
    assert refusal(ALICE, op, "work", None) == refusal(ALICE, op, "work", ("bob",))


@pytest.mark.parametrize("op", sorted(OWNER_ONLY, key=lambda o: o.value))
def test_platform_operations_are_for_owners_only(op: Operation) -> None:
    reason = refusal(ALICE, op, "work", ("alice",))
    assert reason is not None and "owners" in reason and "'hyperwall'" in reason


@pytest.mark.parametrize("op", [Operation.LIST, Operation.EVENTS])
def test_anyone_may_list_and_follow_events_filtered(op: Operation) -> None:
    assert refusal(NOBODY, op, None, None) is None


USERS = {"sys-sec": (), "work": ("alice",), "family": ("alice", "bob"), "untrusted": ()}
READS = sorted(SECURITY_READS, key=lambda o: o.value)


def test_an_owner_reads_every_record_and_a_user_those_of_their_domains() -> None:
    assert readable_domains(OWNER, USERS) is None
    assert readable_domains(ALICE, USERS) == {"work", "family"}
    assert readable_domains(Caller(uid=1003, user="bob", owner=False), USERS) == {"family"}
    assert readable_domains(NOBODY, USERS) == frozenset()


@pytest.mark.parametrize("op", READS)
def test_a_listed_user_reads_their_domains_records(op: Operation) -> None:
    assert read_refusal(ALICE, op, "family", USERS) is None
    assert read_refusal(ALICE, op, None, USERS) is None    # theirs only: readable_domains
    assert read_refusal(OWNER, op, "sys-sec", USERS) is None
    assert read_refusal(OWNER, op, None, USERS) is None


@pytest.mark.parametrize("op", READS)
def test_records_of_another_or_a_missing_domain_are_refused_alike(op: Operation) -> None:
    reason = read_refusal(ALICE, op, "untrusted", USERS)
    assert reason is not None and "'alice'" in reason and "'untrusted'" in reason
    assert read_refusal(ALICE, op, "nope", USERS) == reason.replace("'untrusted'", "'nope'")
    assert read_refusal(ALICE, op, "sys-sec", USERS) is not None


@pytest.mark.parametrize("op", READS)
def test_a_user_named_nowhere_reads_nothing(op: Operation) -> None:
    reason = read_refusal(Caller(uid=1004, user="mallory", owner=False), op, None, USERS)
    assert reason is not None and "'mallory'" in reason and op.value in reason
    assert "users" in reason


@pytest.mark.parametrize("op", [Operation.STATS, Operation.RELOAD, Operation.PROVIDER_STATUS])
def test_the_engine_and_the_provider_are_the_owners(op: Operation) -> None:
    assert read_refusal(OWNER, op, None, USERS) is None
    reason = read_refusal(ALICE, op, None, USERS)
    assert reason is not None and reason.startswith(f"{op.value} is reserved to the platform's")


def test_a_uid_without_a_name_uses_nothing() -> None:
    assert not may_use(NOBODY, ("alice",))
    assert "uid 4000000" in (refusal(NOBODY, Operation.GET, "work", ("alice",)) or "")


def test_root_resolves_to_an_owner() -> None:
    caller = resolve_caller(PeerCred(pid=1, uid=0, gid=0), owner_group="no-such-group-hw")
    assert caller == Caller(uid=0, user="root", owner=True, owner_group="no-such-group-hw")


def test_an_unknown_uid_resolves_to_no_user_and_no_ownership() -> None:
    caller = resolve_caller(PeerCred(pid=1, uid=4_000_000, gid=4_000_000))
    assert (caller.user, caller.owner) == (None, False)


def test_membership_is_read_from_the_group_database() -> None:
    # A real account whose primary group exists: owning that group makes it an owner.
    entry = next(p for p in pwd.getpwall() if p.pw_uid != 0 and _has_group(p.pw_gid))
    group = grp.getgrgid(entry.pw_gid).gr_name
    cred = PeerCred(pid=1, uid=entry.pw_uid, gid=entry.pw_gid)
    assert resolve_caller(cred, owner_group=group).owner
    assert not resolve_caller(cred, owner_group="no-such-group-hw").owner
    assert group in {grp.getgrgid(g).gr_name for g in os.getgrouplist(entry.pw_name,
                                                                       entry.pw_gid)}


def _has_group(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True
