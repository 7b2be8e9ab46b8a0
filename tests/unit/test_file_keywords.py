"""The file keywords, rules loaded from text, matched through the engine on scapy sessions
(the same as tests/unit/test_fileinfo_e2e.py's) with file tracking left automatic: the
rules themselves turn it on."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from netsec import flow as flow_mod
from netsec.rules import load_rules
from tests.unit.test_engine_e2e import alerts, run, tcp_session
from tests.unit.test_fileinfo_e2e import PDF, get, response

NOTES = b"plain notes\n" * 200


def session() -> list:
    """Two downloads on one connection: report.pdf (a PDF), then notes.TXT (text)."""
    return tcp_session([
        (get(), response(PDF, "Content-Type: application/pdf")),
        (get("/dl/notes.TXT"), response(NOTES))])


def fired(tmp_path: Path, rules: str, pkts: list | None = None) -> list[tuple[int, int]]:
    """(sid, tx_id) of every alert, with file tracking automatic (FlowConfig's default)."""
    _, events = run(tmp_path, pkts or session(), rules, flow_config=flow_mod.FlowConfig())
    return [(a["alert"]["signature_id"], a["tx_id"]) for a in alerts(events)]


def rule(sid: int, options: str) -> str:
    return f'alert http any any -> any any (msg:"file {sid}"; {options} sid:{sid};)\n'


def test_name_extension_and_magic(tmp_path: Path) -> None:
    rules = (rule(1, 'filename:"report";') + rule(2, 'fileext:"txt";') +
             rule(3, 'filemagic:"PDF document";') + rule(4, 'filename:!"report";') +
             rule(5, 'fileext:"exe";') + rule(6, 'filemagic:"pdf document";') +
             rule(7, 'fileext:".pdf"; filemagic:"PDF";'))
    assert sorted(fired(tmp_path, rules)) == [(1, 0), (2, 1), (3, 0), (4, 1), (7, 0)]


def test_filesize_forms(tmp_path: Path) -> None:
    n = len(PDF)
    rules = (rule(1, f"filesize:{n};") + rule(2, f"filesize:>{n - 1};") +
             rule(3, f"filesize:<{n};") + rule(4, f"filesize:{n - 1}<>{n + 1};") +
             rule(5, f"filesize:{n}-{n + 5};") + rule(6, f"filesize:!{n};"))
    assert sorted(fired(tmp_path, rules)) == [(1, 0), (2, 0), (3, 1), (4, 0), (6, 1)]


def test_filesize_of_a_file_cut_short_matches_only_a_lower_bound(tmp_path: Path) -> None:
    pkts = tcp_session([(get(), response(PDF[:1000], length=len(PDF)))])
    rules = rule(1, "filesize:<2000;") + rule(2, "filesize:>500;") + rule(3, "filesize:1000;")
    # the server's FIN ends the body short of its Content-Length: TRUNCATED at 1000
    assert fired(tmp_path, rules, pkts) == [(2, 0)]


def test_hash_lists_relative_to_the_rule_file_with_negation(tmp_path: Path) -> None:
    (tmp_path / "bad.md5").write_text(
        f"# known bad\n{hashlib.md5(PDF).hexdigest()}  report.pdf\n{'0' * 32}\n")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "bad.sha256").write_text(hashlib.sha256(NOTES).hexdigest().upper())
    (tmp_path / "sha1.txt").write_text(hashlib.sha1(PDF).hexdigest() + "\n")
    rules = (rule(1, "filemd5:bad.md5;") + rule(2, "filemd5:!bad.md5;") +
             rule(3, 'filesha256:"lists/bad.sha256";') + rule(4, "filesha1:sha1.txt;"))
    assert sorted(fired(tmp_path, rules)) == [(1, 0), (2, 1), (3, 1), (4, 0)]


def test_filestore_marks_the_file_stored(tmp_path: Path) -> None:
    rules = rule(1, 'fileext:"pdf"; filestore;') + rule(2, "filestore:to_client,file; noalert;")
    _, events = run(tmp_path, session(), rules, flow_config=flow_mod.FlowConfig())
    infos = [e["fileinfo"] for e in events if e["event_type"] == "fileinfo"]
    assert [(i["filename"], i["stored"]) for i in infos] == \
        [("report.pdf", True), ("notes.TXT", True)]
    assert [a["alert"]["signature_id"] for a in alerts(events)] == [1]


def test_rules_without_file_keywords_track_no_files(tmp_path: Path) -> None:
    rules = rule(1, 'http.uri; content:"report";')
    _, events = run(tmp_path, session(), rules, flow_config=flow_mod.FlowConfig())
    assert [e for e in events if e["event_type"] == "fileinfo"] == []
    assert [a["alert"]["signature_id"] for a in alerts(events)] == [1]   # positive control


@pytest.mark.parametrize(("options", "reason"), [
    ("filename:report;", "filename: value must be quoted"),
    ('filemagic:"";', "filemagic: empty value"),
    ("filesize:big;", "filesize: bad value 'big'"),
    ("filesize:9<>3;", "filesize: bad range"),
    ("filemd5:missing.md5;", "filemd5: cannot read the hash list"),
    ("filesha256:short.sha256;", "filesha256: .*short.sha256:2: 'abc' is not a sha256 hash"),
    ("filemd5:empty.md5;", "filemd5: .*empty.md5: no md5 hash in the list"),
    ("filestore:sideways;", "filestore: want"),
])
def test_errors_name_the_keyword_and_the_rule(tmp_path: Path, options: str,
                                              reason: str) -> None:
    (tmp_path / "short.sha256").write_text(hashlib.sha256(b"").hexdigest() + "\nabc\n")
    (tmp_path / "empty.md5").write_text("# nothing yet\n")
    rules = tmp_path / "bad.rules"
    rules.write_text(rule(1, 'filename:"fine";') + rule(42, options))
    ruleset = load_rules([rules])
    assert [r.sid for r in ruleset.rules] == [1]
    [skipped] = ruleset.skipped
    assert (skipped.sid, skipped.file, skipped.line) == (42, str(rules), 2)
    assert re.search(reason, skipped.reason), skipped.reason
