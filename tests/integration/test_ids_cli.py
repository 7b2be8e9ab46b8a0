"""`hyperwall-ids` as its console script: Suricata's options, eve.json, summary, exit codes."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from tests.conftest import ET_OPEN

EXE = shutil.which("hyperwall-ids", path=str(Path(sys.executable).parent))
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")  # fixed MACs: no ARP lookups
RULES = ('drop tcp any any -> any 80 (msg:"ET TEST evil"; flow:established,to_server; '
         'content:"/evil.php"; classtype:trojan-activity; sid:9000001; rev:2;)\n')


def ids(*args: str) -> subprocess.CompletedProcess[str]:
    assert EXE, "hyperwall-ids is not installed (pip install -e .)"
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def case(tmp_path: Path) -> Path:
    c, s, t = "10.0.0.5", "192.0.2.80", 1_700_000_000.0
    req = b"GET /evil.php HTTP/1.1\r\nHost: x\r\n\r\n"
    pkts = [ETH / IP(src=c, dst=s) / TCP(sport=4000, dport=80, flags="S", seq=1),
            ETH / IP(src=s, dst=c) / TCP(sport=80, dport=4000, flags="SA", seq=9, ack=2),
            ETH / IP(src=c, dst=s) / TCP(sport=4000, dport=80, flags="A", seq=2, ack=10),
            ETH / IP(src=c, dst=s) / TCP(sport=4000, dport=80, flags="PA", seq=2, ack=10) / req,
            ETH / IP(src=s, dst=c) / TCP(sport=80, dport=4000, flags="A", seq=10,
                                         ack=2 + len(req))]
    for i, p in enumerate(pkts):
        p.time = t + i
    wrpcap(str(tmp_path / "in.pcap"), pkts)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "test.rules").write_text(RULES)
    if (ET_OPEN / "classification.config").exists():
        shutil.copy(ET_OPEN / "classification.config", tmp_path / "rules")
    return tmp_path


def events(logdir: Path) -> list[dict]:
    return [json.loads(line) for line in (logdir / "eve.json").read_text().splitlines()]


def test_ids_mode_writes_an_allowed_alert_and_a_summary(case: Path) -> None:
    r = ids("-r", str(case / "in.pcap"), "-S", str(case / "rules"), "-l", str(case / "log"),
            "-k", "none")
    assert r.returncode == 0, r.stderr
    assert "5 packets, 1 alerts, 0 drops" in r.stderr
    evs = events(case / "log")
    [alert] = [e for e in evs if e["event_type"] == "alert"]
    assert alert["alert"]["action"] == "allowed" and alert["alert"]["signature_id"] == 9000001
    assert alert["pcap_cnt"] == 4 and alert["timestamp"] == "2023-11-14T22:13:23.000000+0000"
    assert [e["event_type"] for e in evs][-2:] == ["flow", "stats"]


def test_simulate_ips_blocks_with_a_drop_event_and_json_summary(case: Path) -> None:
    r = ids("-r", str(case / "in.pcap"), "-S", str(case / "rules" / "test.rules"),
            "-l", str(case / "log"), "--simulate-ips", "--json",
            "--set", "stream.reassembly.depth=1mb", "--set", "stream.midstream=true")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["packets"], summary["alerts"], summary["drops"]) == (5, 1, 2)
    evs = events(case / "log")
    assert [e["alert"]["action"] for e in evs if e["event_type"] == "alert"] == ["blocked"]
    assert [e["pcap_cnt"] for e in evs if e["event_type"] == "drop"] == [4, 5]


def test_errors_name_what_is_wrong(case: Path) -> None:
    r = ids("-r", str(case / "missing.pcap"), "-S", str(case / "rules"))
    assert r.returncode == 1 and f"{case / 'missing.pcap'}: no such file" in r.stderr
    r = ids("-r", str(case / "in.pcap"), "-S", str(case / "nope.rules"))
    assert r.returncode == 1 and "nope.rules: no such rule file or folder" in r.stderr
    r = ids("-r", str(case / "in.pcap"), "-S", str(case / "rules"),
            "--set", "stream.reassembly.depth=lots")
    assert r.returncode == 1 and "not a size" in r.stderr
    r = ids("-r", str(case / "in.pcap"), "-S", str(case / "rules"), "--set", "mpm-algo")
    assert r.returncode == 1 and "--set mpm-algo: want name=value" in r.stderr
    r = ids("-r", str(case / "in.pcap"), "-S", str(case / "rules"),
            "--set", "exception-policy=sometimes")
    assert r.returncode == 1 and "--set exception-policy=sometimes: want one of" in r.stderr
    # Suricata settings this engine does not apply are accepted and named once
    r = ids("-r", str(case / "in.pcap"), "-S", str(case / "rules"), "-l", str(case / "log"),
            "--set", "mpm-algo=hs", "--set", "detect.guess-applayer-tx=yes",
            "--set", "mpm-algo=ac", "--set", "exception-policy=drop-flow")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("ignored, not applied by this engine: "
                          "mpm-algo, detect.guess-applayer-tx\n") == 1


def test_check_rules_reports_loaded_and_skipped_with_where_and_why(case: Path) -> None:
    (case / "rules" / "bad.rules").write_text(
        'alert tcp any any -> any any (msg:"bad"; nosuchkeyword; sid:77;)\n')
    r = ids("--check-rules", "-S", str(case / "rules"), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["total"]["loaded"] == 1 and report["total"]["skipped"] == 1
    [skip] = report["skipped"]
    assert skip["sid"] == 77 and skip["file"].endswith("bad.rules") and skip["line"] == 1
    text = ids("--check-rules", "-S", str(case / "rules")).stdout
    assert "bad.rules:1: sid 77:" in text


@pytest.mark.parametrize(("home", "alerts"), [("[10.0.0.0/8]", 1), ("[172.16.0.0/12]", 0)])
def test_suricata_yaml_vars_decide_home_net(case: Path, home: str, alerts: int) -> None:
    (case / "vars.yaml").write_text(f'vars:\n  address-groups:\n    HOME_NET: "{home}"\n')
    (case / "home.rules").write_text('alert tcp $HOME_NET any -> any 80 (msg:"home"; '
                                     'content:"/evil.php"; sid:5;)\n')
    r = ids("-r", str(case / "in.pcap"), "-S", str(case / "home.rules"), "-c",
            str(case / "vars.yaml"), "-l", str(case / "log"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["alerts"] == alerts
