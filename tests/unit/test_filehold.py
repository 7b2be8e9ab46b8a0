"""The verdict hand-off in IPS mode, sans-IO: ipsd's decisions and its Inline shell with a
scanner object implementing FileScanner (the contract) in Scans' real worker threads; the
packets are scapy-built (tests/unit/test_ipsd.py's flows), the clock is the test's. The
real clamd and a guest behind NFQUEUE: tests/integration/test_filehold_inline.py."""
from __future__ import annotations

import argparse
import gzip
import hashlib
import select
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from domains.syssec import ipsd as ipsd_mod
from domains.syssec import nfqueue as nfq
from domains.syssec.filehold import FileHold
from domains.syssec.inline import InlineQueue
from domains.syssec.ipsd import ConfigError, Inline, Ipsd, Scans
from netsec.engine import Verdict
from netsec.filescan import Finding, Outcome, ScanResult
from netsec.flow import FlowConfig
from tests.unit.test_ipsd import GUEST, RULE, SERVER, T0, flow

MARK = b"HYPERWALL-FILEHOLD-TEST-MARK"
BAD = b"x" * 500 + MARK + b"y" * 500
GOOD = b"x" * 500 + b"-" * len(MARK) + b"y" * 500   # the same size, clean
NEXT = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"


class MarkScanner:
    """A FileScanner: INFECTED when the file holds MARK; `gate`, when given, is waited for
    before answering (a slow or hung scanner); `boom` raises instead."""

    def __init__(self, gate: threading.Event | None = None, boom: bool = False) -> None:
        self.gate = gate
        self.boom = boom
        self.seen: list[tuple[str, bytes]] = []

    def scan(self, data: bytes, name: str) -> ScanResult:
        if self.gate is not None:
            self.gate.wait(10)
        if self.boom:
            raise RuntimeError("scanner crashed")
        self.seen.append((name, data))
        if MARK in data:
            return ScanResult(Outcome.INFECTED, (Finding("clamav", "Test.Mark"),))
        return ScanResult(Outcome.CLEAN)

    def scan_file(self, path: Path) -> ScanResult:
        return self.scan(path.read_bytes(), path.name)


class Shell:
    """ipsd's Inline around a real Ipsd, packets handed in with their index as handle."""

    def __init__(self, tmp_path: Path, scanner: MarkScanner, fail: str = "closed",
                 timeout: float = 5.0, file_max_size: int = 16 << 20) -> None:
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "a.rules").write_text(RULE)
        (tmp_path / "domains.json").write_text(f'{{"{GUEST}": "family"}}')
        self.ipsd = Ipsd([tmp_path / "rules"], tmp_path / "log", tmp_path / "domains.json",
                         FlowConfig(inline=True, file_max_size=file_max_size),
                         hold=FileHold(timeout, fail))
        self.now = T0
        self.scans = Scans(scanner)
        self.handle = 0
        self.inline = Inline(self.ipsd, clock=lambda: self.now, scans=self.scans,
                             current=lambda: self.handle)
        self.written: list[dict] = []
        self.ipsd.write = self.written.append   # type: ignore[method-assign,assignment]

    def feed(self, packets: list[bytes]) -> list[Verdict | None]:
        out = []
        for p in packets:
            self.handle += 1
            out.append(self.inline(p))
        return out

    def settle(self, timeout: float = 5.0) -> list[tuple[int, Verdict]]:
        """Wait for the scanners' answers (the shell's select on Scans), then settle."""
        if self.scans.done.empty():
            select.select([self.scans], [], [], timeout)
        self.inline.settle()
        return self.inline.take_later()

    def alerts(self) -> list[dict]:
        return [e for e in self.written if e["event_type"] == "alert"]

    def close(self) -> None:
        self.scans.close()
        self.ipsd.out.close()


@pytest.fixture
def shells() -> Iterator[list[Shell]]:
    made: list[Shell] = []
    yield made
    for s in made:
        s.close()


def shell(shells: list[Shell], *args: object, **kw: object) -> Shell:
    s = Shell(*args, **kw)  # type: ignore[arg-type]
    shells.append(s)
    return s


def download(body: bytes, *headers: bytes, sport: int = 40000, then: bool = True) -> list[bytes]:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(h + b"\r\n" for h in headers)
    if not any(h.lower().startswith(b"transfer-encoding") for h in headers):
        head += b"Content-Length: %d\r\n" % len(body)
    payloads = [(True, b"GET /dl/file.bin HTTP/1.1\r\nHost: h\r\n\r\n"),
                (False, head + b"\r\n" + body)]
    if then:
        payloads.append((True, NEXT))   # a later packet of the same flow
    return flow(payloads, sport)


def test_an_infected_file_is_held_dropped_and_reset_with_an_alert_naming_it(
        tmp_path: Path, shells: list[Shell]) -> None:
    s = shell(shells, tmp_path, MarkScanner())
    pkts = download(BAD)
    got = s.feed(pkts)
    # the handshake and the request pass; the packet that completes the file is held,
    # and the flow's next packet waits behind it
    assert got == [Verdict.ACCEPT] * 4 + [None, None]
    assert s.settle() == [(5, Verdict.DROP), (6, Verdict.DROP)]
    assert len(s.inline.take_outbox()) == 2   # a RST to each end
    [alert] = s.alerts()
    assert alert["alert"]["action"] == "blocked"
    assert alert["alert"]["signature"] == "clamav: Test.Mark in file.bin"
    assert alert["hyperwall"]["domain"] == "family"
    assert (alert["src_ip"], alert["dest_ip"]) == (SERVER, GUEST)
    [f] = alert["files"]
    assert (f["filename"], f["size"], f["state"]) == ("file.bin", len(BAD), "CLOSED")
    assert f["sha256"] == hashlib.sha256(BAD).hexdigest()
    assert alert["scan"]["findings"] == [{"scanner": "clamav", "signature": "Test.Mark"}]
    assert any(e["event_type"] == "drop" for e in s.written)
    assert s.ipsd.counts["files_blocked"] == 1
    # the engine drops the rest of the flow
    assert s.feed(flow([(False, b"more")], 40000)[-1:]) == [Verdict.DROP]


def test_a_clean_file_of_the_same_size_is_released_in_order(tmp_path: Path,
                                                              shells: list[Shell]) -> None:
    scanner = MarkScanner()
    s = shell(shells, tmp_path, scanner)
    assert s.feed(download(GOOD)) == [Verdict.ACCEPT] * 4 + [None, None]
    assert s.settle() == [(5, Verdict.ACCEPT), (6, Verdict.ACCEPT)]
    assert s.alerts() == [] and s.inline.take_outbox() == []
    assert scanner.seen == [("file.bin", GOOD)]
    assert s.ipsd.counts["files_held"] == 1


@pytest.mark.parametrize("shape", ["chunked", "gzip"])
def test_the_scanner_gets_the_decoded_file(tmp_path: Path, shells: list[Shell],
                                           shape: str) -> None:
    scanner = MarkScanner()
    s = shell(shells, tmp_path, scanner)
    if shape == "chunked":
        body = b"".join(b"%x\r\n%s\r\n" % (len(BAD[i:i + 300]), BAD[i:i + 300])
                        for i in range(0, len(BAD), 300)) + b"0\r\n\r\n"
        pkts = download(body, b"Transfer-Encoding: chunked")
    else:
        pkts = download(gzip.compress(BAD), b"Content-Encoding: gzip")
    assert s.feed(pkts)[-2:] == [None, None]
    assert s.settle() == [(5, Verdict.DROP), (6, Verdict.DROP)]
    assert scanner.seen == [("file.bin", BAD)]


def test_other_flows_keep_moving_while_one_waits(tmp_path: Path, shells: list[Shell]) -> None:
    gate = threading.Event()
    s = shell(shells, tmp_path, MarkScanner(gate))
    assert s.feed(download(GOOD))[-2:] == [None, None]
    other = flow([(True, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"), (False, b"HTTP/1.1 204 No "
                  b"Content\r\n\r\n")], sport=40001)
    assert s.feed(other) == [Verdict.ACCEPT] * len(other)
    s.inline.settle()
    assert s.inline.take_later() == []   # still waiting
    gate.set()
    assert s.settle() == [(5, Verdict.ACCEPT), (6, Verdict.ACCEPT)]


@pytest.mark.parametrize(("fail", "verdict"), [("closed", Verdict.DROP),
                                               ("open", Verdict.ACCEPT)])
def test_a_scanner_that_does_not_answer_in_time_is_the_fail_setting(
        tmp_path: Path, shells: list[Shell], fail: str, verdict: Verdict) -> None:
    gate = threading.Event()
    s = shell(shells, tmp_path, MarkScanner(gate), fail=fail, timeout=2.0)
    assert s.feed(download(BAD))[-2:] == [None, None]
    s.now += 1.0
    s.inline.settle()
    assert s.inline.take_later() == []
    s.now += 1.5
    s.inline.settle()
    assert s.inline.take_later() == [(5, verdict), (6, verdict)]
    [alert] = s.alerts()
    assert "did not answer within 2 s" in alert["alert"]["signature"]
    assert alert["alert"]["action"] == ("blocked" if fail == "closed" else "allowed")
    gate.set()   # the late answer finds no hold: nothing more happens
    select.select([s.scans], [], [], 5)
    s.inline.settle()
    assert s.inline.take_later() == [] and len(s.alerts()) == 1


def test_a_scanner_that_crashes_fails_closed(tmp_path: Path, shells: list[Shell]) -> None:
    s = shell(shells, tmp_path, MarkScanner(boom=True))
    assert s.feed(download(GOOD))[-2:] == [None, None]
    assert s.settle() == [(5, Verdict.DROP), (6, Verdict.DROP)]
    assert "scanner failed: scanner crashed" in s.alerts()[0]["alert"]["signature"]


def test_a_file_past_the_size_cap_is_not_scanned_and_fails_closed(
        tmp_path: Path, shells: list[Shell]) -> None:
    scanner = MarkScanner()
    s = shell(shells, tmp_path, scanner, file_max_size=512)
    got = s.feed(download(GOOD, then=False))
    assert got[-1] is None
    assert s.inline.take_later() == [(5, Verdict.DROP)]   # no scan to wait for
    assert scanner.seen == []
    assert "larger than the 512-byte file limit" in s.alerts()[0]["alert"]["signature"]


def test_without_a_scanner_nothing_is_held_and_files_follow_the_rules(tmp_path: Path) -> None:
    (tmp_path / "a.rules").write_text(RULE)
    plain = Ipsd([tmp_path / "a.rules"], tmp_path / "log", None, FlowConfig(inline=True))
    try:
        assert [plain.decide(p, T0).verdict for p in download(BAD)] == [Verdict.ACCEPT] * 6
        assert not plain.flows.tracks_files and not plain.engine.collect_files
        assert not plain.flows.file_data   # a file keyword alone keeps no file data
    finally:
        plain.out.close()


def args(*argv: str) -> argparse.Namespace:
    return ipsd_mod.parse_args(["-l", "/tmp/unused-log", *argv])


def test_command_line(tmp_path: Path) -> None:
    a = args("--clamd-socket", "/run/clamd.sock", "--scan-timeout", "3", "--scan-fail", "open")
    assert (a.clamd_socket, a.scan_timeout, a.scan_fail) == (Path("/run/clamd.sock"), 3.0,
                                                            "open")
    with pytest.raises(SystemExit):
        args("--scan-fail", "maybe")
    (tmp_path / "a.rules").write_text(RULE)
    rules = ["-S", str(tmp_path / "a.rules"), "-l", str(tmp_path / "log")]
    with pytest.raises(ConfigError, match="scan-timeout: 0.0 is not a positive"):
        ipsd_mod.build(ipsd_mod.parse_args([*rules, "--clamd-socket", "/x", "--scan-timeout",
                                            "0"]))
    with pytest.raises(ConfigError, match="file-store.enabled=no"):
        ipsd_mod.build(ipsd_mod.parse_args([*rules, "--clamd-socket", "/x", "--set",
                                            "file-store.enabled=no"]))
    built = ipsd_mod.build(ipsd_mod.parse_args([*rules, "--clamd-socket", "/x"]))
    try:
        assert built.hold is not None and built.flows.tracks_files and not built.hold.fail_open
        assert built.flows.file_data and built.engine.collect_files
    finally:
        built.out.close()
    assert ipsd_mod.scanner(args()) is None
    assert ipsd_mod.scanner(args("--clamd-socket", "/x")) is not None


class _Sent:
    """Stands in for the NFQUEUE socket: what InlineQueue sends, as (kind, verdict, id)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, int, int]] = []

    def send(self, data: bytes) -> int:
        assert data, "an empty datagram (the kernel answers ENODATA)"
        off = 0
        while off < len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            verdict, packet_id = struct.unpack_from("!II", data, off + length - 8)
            name = "batch" if kind & 0xFF == nfq.NFQNL_MSG_VERDICT_BATCH else "one"
            self.messages.append((name, verdict, packet_id))
            off += (length + 3) & ~3
        return len(data)


def test_the_queue_never_batch_accepts_over_a_held_packet() -> None:
    """A batch verdict accepts every id up to its own: while a packet is held, accepts go
    one by one; a batch of held packets alone sends nothing; answers come by id."""
    held = {2, 3}
    q = InlineQueue(0, lambda p: None if p in (b"2", b"3") else Verdict.ACCEPT)
    sent = _Sent()
    q.sock = sent   # type: ignore[assignment]
    q._answer([nfq.QueuedPacket(0, i, 0, 0, str(i).encode()) for i in (1, 2, 4)])
    assert q.held == {2}
    assert sent.messages == [("one", nfq.NF_ACCEPT, 1), ("one", nfq.NF_ACCEPT, 4)]
    sent.messages.clear()
    q._answer([nfq.QueuedPacket(0, 3, 0, 0, b"3")])
    assert q.held == held and sent.messages == []
    q.answer_later([(2, Verdict.DROP), (3, Verdict.DROP), (99, Verdict.ACCEPT)])
    assert sent.messages == [("one", nfq.NF_DROP, 2), ("one", nfq.NF_DROP, 3)]
    assert q.held == set() and (q.stats.held, q.stats.dropped) == (2, 2)
    sent.messages.clear()
    q._answer([nfq.QueuedPacket(0, i, 0, 0, b"x") for i in (5, 6)])
    assert sent.messages == [("batch", nfq.NF_ACCEPT, 6)]   # nothing held: one batch again
