from __future__ import annotations

import sys
import time

import pytest

from domains.runner import CommandError, full_argv, run, run_sync


async def test_run_returns_output_and_status() -> None:
    done = await run([sys.executable, "-c", "import sys; print('hi'); sys.exit(3)"],
                     check=False)
    assert (done.returncode, done.stdout) == (3, b"hi\n")


async def test_run_feeds_input() -> None:
    done = await run(["cat"], input=b"abc")
    assert done.stdout == b"abc"


async def test_failure_names_command_and_stderr() -> None:
    with pytest.raises(CommandError) as err:
        await run([sys.executable, "-c", "import sys; sys.exit('boom here')"])
    assert "boom here" in str(err.value) and "exited with 1" in str(err.value)
    assert err.value.returncode == 1 and err.value.argv[0] == sys.executable


async def test_timeout_kills_what_the_command_forked_too() -> None:
    started = time.monotonic()
    with pytest.raises(CommandError, match="timed out after 0.2s"):
        await run(["sh", "-c", "sleep 30; true"], timeout=0.2)
    assert time.monotonic() - started < 5


async def test_missing_program_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="could not start"):
        await run(["/nonexistent/hyperwall-tool"])


def test_sync_variant_checks() -> None:
    assert run_sync(["echo", "x"]).stdout == b"x\n"
    with pytest.raises(CommandError, match="`false` exited with 1"):
        run_sync(["false"])


def test_netns_prefixes_ip_netns_exec() -> None:
    assert full_argv(["ip", "link"], "hw-7") == ["ip", "netns", "exec", "hw-7", "ip", "link"]
    assert full_argv(["ip", "link"], None) == ["ip", "link"]
    with pytest.raises(ValueError):
        full_argv([], None)
