"""`hyperwall report --eve FILE...`: the parent's report read from sys-sec's EVE logs
directly, the engine's and the resolver's records together; bad input named."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dom0.cli import main as cli

IP = "10.137.0.12"


def write(path: Path, *records: dict, torn: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + torn)
    return path


@pytest.fixture
def logs(tmp_path: Path) -> list[Path]:
    engine = write(
        tmp_path / "eve.json",
        # The inline engine names the guest as `domain`.
        {"timestamp": "2026-11-24T09:00:00.000000+0000", "event_type": "alert",
         "src_ip": IP, "dest_ip": "198.51.100.80", "flow_id": 3,
         "alert": {"action": "blocked", "signature_id": 9100001,
                   "signature": "hyperwall adult: blocked.example (sni)"},
         "hyperwall": {"domain": "family", "guest_ip": IP, "category": "adult",
                       "site": "blocked.example", "by": "sni"}},
        {"timestamp": "2026-11-24T09:01:00.000000+0000", "event_type": "alert",
         "src_ip": "198.51.100.80", "dest_ip": IP, "flow_id": 4,
         "alert": {"action": "blocked", "signature_id": 2019401,
                   "signature": "ET MALWARE bad download"}},
        {"timestamp": "2026-11-24T09:02:00.000000+0000", "event_type": "flow",
         "src_ip": IP, "dest_ip": "198.51.100.9", "flow_id": 8},
        {"timestamp": "2026-11-24T09:03:00.000000+0000", "event_type": "alert",
         "src_ip": "10.137.0.13", "dest_ip": "198.51.100.9",
         "alert": {"action": "allowed", "signature_id": 1, "signature": "not family's"},
         "hyperwall": {"domain": "other", "guest_ip": "10.137.0.13"}},
        torn='{"timestamp": "2026-11-24T09:04',     # a line being written
    )
    resolver = write(
        tmp_path / "dns.json",
        # The resolver names it as `guest`.
        {"timestamp": "2026-11-24T08:00:00.000000+0000", "event_type": "alert",
         "src_ip": IP, "dest_ip": "10.137.255.254",
         "alert": {"action": "blocked", "signature_id": 0,
                   "signature": "hyperwall adult: blocked.example (dns)"},
         "hyperwall": {"guest": "family", "guest_ip": IP, "category": "adult",
                       "site": "blocked.example", "by": "dns"}})
    return [engine, resolver]


def report(logs: list[Path], *extra: str) -> list[str]:
    argv = ["report", "--domain", "family", *extra]
    for path in logs:
        argv += ["--eve", str(path)]
    return argv


def test_json_puts_both_logs_together(logs: list[Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["--json", *report(logs)]) == cli.EXIT_OK
    r = json.loads(capsys.readouterr().out)
    assert r["blocked"] == [{"category": "adult", "requests": 2,
                             "sites": [{"site": "blocked.example", "requests": 2}]}]
    assert [a["signature"] for a in r["alerts"]] == ["ET MALWARE bad download"]
    assert r["top_destinations"] == [{"destination": "198.51.100.9", "flows": 1}]


def test_text_is_tables_and_since_filters(logs: list[Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(report(logs, "--since", "2026-11-24T08:30")) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "Blocked sites by category" in out and "not family's" not in out
    row = next(line for line in out.splitlines() if line.strip().startswith("adult"))
    assert row.split()[:3] == ["adult", "1", "blocked.example"]   # the 08:00 one is older


@pytest.mark.parametrize(("argv", "says"), [
    (["--since", "yesterday"], "--since: 'yesterday' is not a time"),
    (["--eve", "/nonexistent/eve.json"], "--eve /nonexistent/eve.json: No such file"),
])
def test_bad_input_is_named(logs: list[Path], capsys: pytest.CaptureFixture[str],
                            argv: list[str], says: str) -> None:
    assert cli.run([*report(logs), *argv]) == cli.EXIT_ERROR
    assert says in capsys.readouterr().err
    assert cli.run(["--json", *report(logs), *argv]) == cli.EXIT_ERROR
    assert says in json.loads(capsys.readouterr().out)["error"]["message"]


def test_the_engines_log_alone_names_the_guest_as_domain(
        logs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["--json", *report(logs[:1])]) == cli.EXIT_OK
    r = json.loads(capsys.readouterr().out)
    assert r["blocked"][0]["requests"] == 1 and r["top_destinations"]
