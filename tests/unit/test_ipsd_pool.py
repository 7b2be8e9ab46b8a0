import re

import pytest

from domains.syssec.ipsd_pool import default_workers, parse_queue_balance, plan_queues


def test_queue_balance_is_inclusive() -> None:
    assert list(parse_queue_balance("4:5")) == [4, 5]
    assert list(parse_queue_balance("7")) == [7]


@pytest.mark.parametrize("bad", ["a:b", "5:4", "1:70000", "-1:2", ""])
def test_bad_queue_balance_names_option_and_value(bad: str) -> None:
    with pytest.raises(ValueError, match="--queue-balance: " + re.escape(repr(bad))):
        parse_queue_balance(bad)


def test_one_worker_per_queue() -> None:
    assert plan_queues(range(2, 4), 2) == [2, 3]
    with pytest.raises(ValueError, match="--workers 3 does not match --queue-balance 2:3"):
        plan_queues(range(2, 4), 3)


def test_default_workers_follows_affinity() -> None:
    import os
    assert default_workers() == len(os.sched_getaffinity(0)) >= 1
