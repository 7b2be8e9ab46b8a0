import re

import pytest

from domains.syssec.ipsd_pool import (
    default_workers,
    merge_stats,
    parse_queue_balance,
    plan_queues,
    worker_argv,
)


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


def test_worker_argv_gives_each_worker_its_queue_socket_and_pidfile() -> None:
    pool = ["ipsd", "--queue", "0", "-S", "rules", "--pidfile", "/run/ipsd.pid",
            "--socket", "/run/ipsd.sock", "--set", "a=b"]
    assert worker_argv(pool, 3) == ["ipsd", "--queue", "3", "-S", "rules", "--pidfile",
                                    "/run/ipsd.pid.3", "--socket", "/run/ipsd.sock.3",
                                    "--set", "a=b"]
    assert worker_argv(["ipsd", "-l", "log"], 1) == ["ipsd", "-l", "log", "--queue", "1"]
    with pytest.raises(ValueError, match="--socket has no value"):
        worker_argv(["ipsd", "--socket"], 0)


def test_merged_stats_sum_the_traffic_and_keep_each_worker() -> None:
    a = {"pid": 10, "uptime": 5.0, "rules_loaded": 7, "reloads": 2, "reload_failures": 0,
         "packets": 100, "bytes": 1000, "alerts": 1, "drops": 1, "flows_active": 3,
         "bypassed_depth": 1, "queue": {"received": 100, "accepted": 99}}
    b = {**a, "pid": 11, "uptime": 2.0, "reloads": 1, "reload_failures": 1, "packets": 50,
         "bytes": 500, "alerts": 0, "queue": {"received": 50, "accepted": 50}}
    got = merge_stats([a, b])
    assert got["pid"] == 10 and got["packets"] == 150 and got["bytes"] == 1500
    assert got["alerts"] == 1 and got["drops"] == 2 and got["flows_active"] == 6
    assert got["queue"] == {"received": 150, "accepted": 149}
    # A reload is in force once every worker took it; uptime is the youngest worker's.
    assert got["reloads"] == 1 and got["reload_failures"] == 1 and got["uptime"] == 2.0
    assert got["rules_loaded"] == 7 and got["workers"] == [a, b]
    with pytest.raises(ValueError, match="no worker"):
        merge_stats([])
