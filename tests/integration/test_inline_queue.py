"""The inline shell against the kernel's real NFQUEUE, in a three-namespace router."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netlab import Lab, lab

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def router() -> Iterator[tuple[Lab, dict[str, str]]]:
    with lab("hwiq") as net:
        a, r, b = net.ns("a"), net.ns("r"), net.ns("b")
        net.link(a, "eth0", r, "ra")
        net.link(r, "rb", b, "eth0")
        net.run(a, "ip", "addr", "add", "192.0.2.1/24", "dev", "eth0")
        net.run(a, "ip", "route", "add", "default", "via", "192.0.2.254")
        net.run(r, "ip", "addr", "add", "192.0.2.254/24", "dev", "ra")
        net.run(r, "ip", "addr", "add", "198.51.100.254/24", "dev", "rb")
        net.run(b, "ip", "addr", "add", "198.51.100.1/24", "dev", "eth0")
        net.run(b, "ip", "route", "add", "default", "via", "198.51.100.254")
        net.run(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        net.run(r, "iptables-restore", input=b"""*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -m connmark --mark 0x1/0x1 -j ACCEPT
-A FORWARD -j NFQUEUE --queue-num 3
COMMIT
*mangle
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -m mark --mark 0x1/0x1 -j CONNMARK --save-mark --nfmask 0x1 --ctmask 0x1
COMMIT
""")
        yield net, {"a": a, "r": r, "b": b}


class Probe:
    def __init__(self, net: Lab, ns: str, mode: str, tmp: Path) -> None:
        self.stats_file = tmp / "stats.json"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(REPO / "tests/inline_probe.py"),
             "3", mode, str(self.stats_file)],
            stdout=subprocess.PIPE, cwd=REPO, env={"PYTHONPATH": str(REPO)})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until bound, or EOF if it died
        assert line.strip() == b"ready", f"probe failed to bind: {line!r}"

    def stop(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        return json.loads(self.stats_file.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def ping(net: Lab, ns: str, dst: str, *extra: str) -> bool:
    return net.run(ns, "ping", "-c1", "-W1", *extra, dst, check=False).returncode == 0


def test_accepts_drops_by_content_and_fails_closed(router, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    net, n = router
    assert not ping(net, n["a"], "198.51.100.1"), "no reader yet: the queue drops (fail closed)"
    probe = Probe(net, n["r"], "drop-evil", tmp_path)
    try:
        assert ping(net, n["a"], "198.51.100.1")
        evil = b"EVIL".hex()
        assert not ping(net, n["a"], "198.51.100.1", "-p", evil), "content match is dropped"
        assert ping(net, n["a"], "198.51.100.1")
    finally:
        stats = probe.stop()
    assert stats["dropped"] >= 1 and stats["accepted"] >= 4
    assert stats["batches"] >= 1
    assert not ping(net, n["a"], "198.51.100.1"), "reader gone: fail closed again"


def test_bypass_mark_takes_the_flow_out_of_the_queue(router, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    net, n = router
    probe = Probe(net, n["r"], "bypass-first", tmp_path)
    try:
        # One ping flow (same ICMP id): the first echo and its reply are queued and marked;
        # the connmark then carries the later ones past the queue.
        assert net.run(n["a"], "ping", "-c5", "-i0.2", "-W1", "198.51.100.1",
                       check=False).returncode == 0
    finally:
        stats = probe.stop()
    assert 1 <= stats["bypassed"] < 10, stats
    assert stats["received"] == stats["bypassed"]
