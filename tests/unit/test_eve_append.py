"""Several ipsd workers append to one eve.json: every line stays whole (netsec.eve.AppendLog)."""
from __future__ import annotations

import json
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from netsec import eve
from tests.conftest import REPO

# WRITER PATH COUNT: COUNT records of mixed sizes, some far past a stdio buffer (8 KiB), so a
# line written in pieces would show.
HAMMER = r"""
import sys
from pathlib import Path
from netsec import eve
name, path, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
out = eve.EveWriter(eve.AppendLog(path))
for i in range(count):
    out.write({"event_type": "alert", "writer": name, "n": i, "pad": name * (i % 7 * 9000)})
"""
COUNT = 400


def test_two_writers_hammering_one_file_leave_only_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    writers = [subprocess.Popen([sys.executable, "-c", HAMMER, name, str(path), str(COUNT)],
                                cwd=REPO, env={"PYTHONPATH": str(REPO)}) for name in "ab"]
    for w in writers:
        assert w.wait(timeout=60) == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]   # a torn line would not parse
    for name in "ab":
        assert [r["n"] for r in records if r["writer"] == name] == list(range(COUNT))
    # The control that they did write at once: the file goes back and forth between them.
    switches = sum(x["writer"] != y["writer"] for x, y in pairwise(records))
    assert switches > 2, f"the writers did not overlap ({switches} switches)"
    print(f"\n{len(records)} records, {switches} switches between the writers")


def test_append_log_appends_to_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    path.write_text('{"old":1}\n')
    log = eve.AppendLog(path)
    eve.EveWriter(log).write({"new": 2})
    log.close()
    assert path.read_text() == '{"old":1}\n{"new":2}\n'
    with pytest.raises(FileNotFoundError):
        eve.AppendLog(tmp_path / "missing" / "eve.json")
