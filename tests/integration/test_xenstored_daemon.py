"""hyperwall-xenstored as a process: durability across SIGKILL, domain sockets, bad input."""
from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from dom0.xenstore.client import Perm, XenStore, XsError
from dom0.xenstore.wire import Op, encode
from dom0.xenstored.daemon import OUTPUT_LIMIT
from tests.conftest import Daemon, wait_for_socket
from tests.xenstore_raw import RawConn


def client(d: Daemon, domid: int | None = None) -> XenStore:
    path = d.socket if domid is None else d.rundir / "domain" / str(domid) / "socket"
    return XenStore(("unix", str(path))).connect()


def holds_and_journals_on(d: Daemon, kept: dict[str, bytes]) -> None:
    """`d` holds `kept`, takes one more write, and after a SIGKILL and a start holds both:
    its journal still appends where it should."""
    with client(d) as xs:
        assert {path: xs.read(path) for path in kept} == kept
        xs.write("/after", "ok")
    d.kill(signal.SIGKILL)
    d.start()
    with client(d) as xs:
        assert {path: xs.read(path) for path in [*kept, "/after"]} == {**kept, "/after": b"ok"}


def test_acknowledged_writes_survive_sigkill(hw_xenstored: Daemon) -> None:
    with client(hw_xenstored) as xs:
        for i in range(200):
            xs.write(f"/durable/n{i}", f"value {i}")
        xs.set_perms("/durable/n7", [Perm(0, "n"), Perm(4, "r")])
        xs.rm("/durable/n3")
        xs.transaction(lambda t: t.write("/durable/tx", "committed"))
        xs.introduce(4)
    hw_xenstored.kill(signal.SIGKILL)
    hw_xenstored.start()
    with client(hw_xenstored) as xs:
        assert xs.read("/durable/n199") == b"value 199"
        assert not xs.exists("/durable/n3")
        assert xs.get_perms("/durable/n7") == [Perm(0, "n"), Perm(4, "r")]
        assert xs.read("/durable/tx") == b"committed"
        assert xs.is_domain_introduced(4)
    # The domain's socket is back and still acts as that domain.
    with client(hw_xenstored, 4) as guest:
        assert guest.read("/durable/n7") == b"value 7"
        with pytest.raises(XsError):
            guest.read("/durable/n8")


def test_a_torn_journal_tail_is_ignored(hw_xenstored: Daemon, tmp_path: Path) -> None:
    with client(hw_xenstored) as xs:
        xs.write("/before", "ok")
    hw_xenstored.kill(signal.SIGKILL)
    with open(tmp_path / "state" / "journal", "ab") as f:
        f.write(struct.pack("<II", 500, 1234) + b"P/half-written")   # a crash mid-append
    hw_xenstored.start()
    holds_and_journals_on(hw_xenstored, {"/before": b"ok"})


def test_clean_stop_removes_sockets_and_keeps_state(hw_xenstored: Daemon) -> None:
    with client(hw_xenstored) as xs:
        xs.write("/kept", "1")
    hw_xenstored.stop()
    assert hw_xenstored.proc is not None and hw_xenstored.proc.returncode == 0
    assert not hw_xenstored.socket.exists()
    hw_xenstored.start()
    with client(hw_xenstored) as xs:
        assert xs.read("/kept") == b"1"


@pytest.mark.parametrize("shared", ["state dir", "run dir"])
def test_a_second_daemon_on_the_same_dir_exits_and_leaves_the_first_alone(
        hw_xenstored: Daemon, tmp_path: Path, shared: str) -> None:
    first = hw_xenstored
    assert first.proc is not None
    with client(first) as xs:
        xs.write("/before", "kept")
    journal = tmp_path / "state" / "journal"
    journal_before, socket_before = journal.read_bytes(), first.socket.stat().st_ino
    state, rundir = (tmp_path / "state", tmp_path / "run2") if shared == "state dir" \
        else (tmp_path / "state2", tmp_path / "run")
    second = subprocess.run(
        [sys.executable, "-m", "dom0.xenstored.daemon", "--rundir", str(rundir),
         "--state-dir", str(state)], capture_output=True, text=True, timeout=30)
    assert second.returncode == 1, second.stderr
    assert f"{shared} {state if shared == 'state dir' else rundir} is in use by " \
        f"hyperwall-xenstored pid {first.proc.pid}" in second.stderr
    assert journal.read_bytes() == journal_before, "the second daemon wrote the journal"
    assert first.socket.stat().st_ino == socket_before, "the second daemon replaced the socket"
    assert (rundir / "socket").exists() == (shared == "run dir"), "only the first's socket"
    holds_and_journals_on(first, {"/before": b"kept"})


def test_domain_socket_lifecycle(hw_xenstored: Daemon) -> None:
    sock = hw_xenstored.rundir / "domain" / "9" / "socket"
    with client(hw_xenstored) as dom0:
        dom0.introduce(9)
        dom0.mkdir("/local/domain/9")
        dom0.set_perms("/local/domain/9", [Perm(9, "n")])   # as a toolstack does
        wait_for_socket(sock, hw_xenstored.proc)
        guest = RawConn(sock)
        assert guest.request(Op.WRITE, b"data/x\0" + b"1").payload == b"OK\0"   # relative
        assert dom0.read("/local/domain/9/data/x") == b"1"
        dom0.release(9)
        assert not sock.exists()
        assert not dom0.exists("/local/domain/9/data/x"), "the released domain's nodes go"
        assert guest.is_closed_by_peer(), "its connection was closed"
        dom0.introduce(9)                 # the same domid again gets a fresh socket
        assert not dom0.exists("/local/domain/9"), "and inherits nothing"
        # Its home went with the old domain, so it may not even learn what is missing.
        assert RawConn(sock).request(Op.READ, b"data/x\0").payload == b"EACCES\0"


@pytest.mark.parametrize("frame", [
    struct.pack("=IIII", Op.READ, 1, 0, 4097) + b"x" * 64,         # oversized
    struct.pack("=IIII", 0xFFFFFFFF, 1, 0, 0xFFFFFFFF),             # garbage header
])
def test_bad_frames_close_only_that_connection(hw_xenstored: Daemon, frame: bytes) -> None:
    good = RawConn(hw_xenstored.socket)
    bad = RawConn(hw_xenstored.socket)
    bad.send_raw(frame)
    assert bad.is_closed_by_peer()
    assert good.request(Op.WRITE, b"/still\0alive").payload == b"OK\0"
    assert good.request(Op.READ, b"/still\0").payload == b"alive"


def test_short_frame_then_close_and_floods(hw_xenstored: Daemon) -> None:
    half = RawConn(hw_xenstored.socket)
    half.send_raw(struct.pack("=II", Op.READ, 1))
    half.close()
    with client(hw_xenstored) as dom0:
        dom0.introduce(11)
        dom0.mkdir("/local/domain/11")
        dom0.set_perms("/local/domain/11", ["n11"])
    guest = RawConn(hw_xenstored.rundir / "domain" / "11" / "socket")
    errors = set()
    for i in range(1100):      # past the 1000-node quota
        errors.add(guest.request(Op.WRITE, f"n{i}\0x".encode()).payload)
    for i in range(120):       # past the 100-watch quota
        errors.add(guest.request(Op.WATCH, f"w{i}\0t\0".encode()).payload)
    for _ in range(12):        # past the 10-transaction quota
        errors.add(guest.request(Op.TRANSACTION_START, b"\0").payload)
    assert {b"ENOSPC\0", b"E2BIG\0"} <= errors
    with client(hw_xenstored) as dom0:
        assert dom0.exists("/local/domain/11/n0")
        assert not dom0.exists("/local/domain/11/n1099"), "no write past the quota"
        dom0.write("/dom0-unaffected", "yes")


def test_a_client_that_never_reads_is_cut_off(hw_xenstored: Daemon) -> None:
    with client(hw_xenstored) as dom0:
        deaf = RawConn(hw_xenstored.socket)
        deaf.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        token = b"t" * 3000     # each event carries it: ~18 MB the deaf client never reads
        deaf.send_raw(encode(Op.WATCH, 1, 0, b"/flood\0" + token + b"\0"))
        for i in range(6000):
            dom0.write("/flood/v", str(i))
        dom0.write("/after-flood", "ok")
        assert dom0.read("/after-flood") == b"ok"
    assert drained_to_eof(deaf), "the daemon closed the connection of the deaf client"


def drained_to_eof(conn: RawConn) -> bool:
    """Read what is queued (at most the daemon's output limit) until the peer closes."""
    received = 0
    try:
        while data := conn.sock.recv(1 << 16):
            received += len(data)
            assert received < 2 * OUTPUT_LIMIT
    except ConnectionResetError:
        pass
    return True
