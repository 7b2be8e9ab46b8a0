"""Hyperwall's xenstored against Xen's real oxenstored, reply for reply.

Each test is a script of raw requests (tests/xenstore_raw.py) run on a fresh instance of
each daemon over its privileged socket; the transcripts — every reply's type, echoed
transaction id and payload, every watch event — must be equal byte for byte, after
normalising only what legitimately differs:
- transaction ids: each daemon numbers them its own way (oxenstored counts per daemon,
  Hyperwall may too, but nothing promises the same numbers), so the n-th distinct id a
  transcript mentions is rewritten `T<n>` wherever it appears (reply header, START reply);
- the trees start differently (oxenstored creates `/local` and `/tool`, Hyperwall leaves
  that to the toolstack), so scripts work under `/t` and never list `/`.
Where Hyperwall deliberately differs (an operation oxenstored lacks, a quirk of
oxenstored's), a test says so and asserts each daemon's behaviour separately.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from dom0.xenstore.wire import Op
from tests.conftest import Daemon
from tests.xenstore_raw import RawConn

pytestmark = pytest.mark.root

Entry = tuple[str, int, bytes]      # (op name, normalised tx, normalised payload)


@dataclass
class Session:
    """One daemon's side of a script: sends raw requests, records normalised replies."""

    daemon: Daemon
    conn: RawConn
    log: list[Entry] = field(default_factory=list)
    _tx_names: dict[int, int] = field(default_factory=dict)

    def tx_name(self, real: int) -> int:
        if real == 0:
            return 0
        return self._tx_names.setdefault(real, len(self._tx_names) + 1)

    def real_tx(self, name: int) -> int:
        """The daemon's own id for the script's `name`-th transaction (unknown ids pass)."""
        for real, n in self._tx_names.items():
            if n == name:
                return real
        return name

    def req(self, op: int, payload: bytes, tx: int = 0) -> bytes:
        """Send `op` (tx named as the script knows it) and record the reply; returns its
        payload as the daemon sent it."""
        f = self.conn.request(op, payload, self.real_tx(tx))
        assert f.req_id == self.conn.req_id, f"reply to {f.req_id}, expected {self.conn.req_id}"
        body = f.payload
        if f.op == Op.TRANSACTION_START:
            body = b"T%d\0" % self.tx_name(int(f.payload.rstrip(b"\0")))
        self.flush()
        name = Op(f.op).name if f.op in Op._value2member_map_ else str(f.op)
        self.log.append((name, self.tx_name(f.tx_id), body))
        return f.payload

    def flush(self) -> None:
        """Record the watch events the last request fired, as one batch.

        A round trip first: oxenstored sends events after the reply, Hyperwall before. The
        order of the events one change fires on several watches is unspecified (each daemon
        walks its watches its own way), so a batch is compared sorted."""
        self.conn.request(Op.READ, b"/\0")
        if self.conn.events:
            batch = sorted(e.payload for e in self.conn.events)
            self.log.append(("EVENTS", 0, b"|".join(batch)))
            self.conn.events.clear()


Script = Callable[[Session], object]


def run(daemon: Daemon, script: Script) -> list[Entry]:
    conn = RawConn(daemon.socket)
    try:
        s = Session(daemon, conn)
        script(s)
        return s.log
    finally:
        conn.close()


def same(hw: Daemon, ox: Daemon, script: Script) -> list[Entry]:
    """Run `script` on both daemons and assert identical transcripts; returns Hyperwall's."""
    hw_log, ox_log = run(hw, script), run(ox, script)
    for i, (mine, theirs) in enumerate(zip(hw_log, ox_log, strict=True)):
        assert mine == theirs, f"entry {i}: hyperwall {mine} != oxenstored {theirs}"
    return hw_log


@pytest.fixture
def pair(hw_xenstored: Daemon, oxenstored: Daemon) -> tuple[Daemon, Daemon]:
    return hw_xenstored, oxenstored


def args(*parts: str | bytes) -> bytes:
    return b"".join((p.encode() if isinstance(p, str) else p) + b"\0" for p in parts)


# ---- nodes -------------------------------------------------------------------------------

def test_node_operations(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WRITE, b"/t/a/b\0hello")                  # creates /t and /t/a
        s.req(Op.READ, args("/t/a/b"))
        s.req(Op.READ, args("/t/a"))                        # created parents are empty
        s.req(Op.WRITE, b"/t/bin\0with\0nul\xff")           # values are bytes
        s.req(Op.READ, args("/t/bin"))
        s.req(Op.WRITE, b"/t/empty\0")
        s.req(Op.READ, args("/t/empty"))
        s.req(Op.WRITE, b"/t/big\0" + b"x" * 2048)
        s.req(Op.READ, args("/t/big"))
        s.req(Op.MKDIR, args("/t/d"))
        s.req(Op.MKDIR, args("/t/d"))                       # exists: still OK
        s.req(Op.MKDIR, args("/t/a/b"))                     # a leaf with a value: OK
        s.req(Op.READ, args("/t/a/b"))                      # and the value is kept
        s.req(Op.MKDIR, args("/t/deep/er/still"))
        s.req(Op.DIRECTORY, args("/t"))
        s.req(Op.DIRECTORY, args("/t/a/b"))                 # a leaf has no children
        s.req(Op.DIRECTORY, args("/t/nope"))
        s.req(Op.READ, args("/t/nope"))
        s.req(Op.READ, args("/t/nope/deeper"))
        s.req(Op.RM, args("/t/nope"))                       # parent exists: OK
        s.req(Op.RM, args("/t/nope/deeper"))                # parent missing: ENOENT
        s.req(Op.RM, args("/t/deep"))                       # recursive
        s.req(Op.DIRECTORY, args("/t"))
        s.req(Op.GET_PERMS, args("/t/a/b"))
        s.req(Op.GET_PERMS, args("/t/nope"))
        s.req(Op.RM, args("/t"))
        s.req(Op.READ, args("/t/a/b"))
    same(*pair, script)


def test_relative_paths_of_dom0(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WRITE, b"rel/x\0v")                         # /local/domain/0/rel/x
        s.req(Op.READ, args("/local/domain/0/rel/x"))
        s.req(Op.READ, args("rel/x"))
        s.req(Op.DIRECTORY, args("rel"))
        s.req(Op.RM, args("rel"))
        s.req(Op.READ, args("rel/x"))
    same(*pair, script)


BAD_PATHS = [b"/t//x", b"/t/x/", b"/t/sp ace", b"/t/dot.x", b"/t/tilde~", b"/t/\xc3\xa9",
             b"", b"/t/" + b"x" * 3069]


@pytest.mark.parametrize("op", [Op.READ, Op.WRITE, Op.MKDIR, Op.RM, Op.DIRECTORY,
                                Op.GET_PERMS, Op.SET_PERMS, Op.WATCH])
def test_bad_paths_are_einval(pair: tuple[Daemon, Daemon], op: Op) -> None:
    tail = {Op.WRITE: b"v", Op.SET_PERMS: b"n0\0", Op.WATCH: b"tok\0"}.get(op, b"")
    # oxenstored takes a WATCH on a 3072-byte path; Hyperwall holds watch paths to the
    # rules of node paths (test_long_watch_path_deliberately_differs).
    paths = BAD_PATHS if op != Op.WATCH else BAD_PATHS[:-1]

    def script(s: Session) -> None:
        for path in paths:
            s.req(op, path + b"\0" + tail)
    log = same(*pair, script)
    assert {entry[2] for entry in log} == {b"EINVAL\0"}


def test_path_length_limits(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WRITE, b"/" + b"x" * 2047 + b"\0v")     # 2048 bytes
        s.req(Op.READ, b"/" + b"x" * 2047 + b"\0")
        s.req(Op.WRITE, b"/t/" + b"x" * 3069 + b"\0v")   # 3072: too long for either
        s.req(Op.WRITE, b"r" * 2047 + b"\0v")            # relative
        s.req(Op.READ, b"r" * 2047 + b"\0")
    same(*pair, script)


def test_relative_path_of_2048_bytes(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WRITE, b"r" * 2048 + b"\0v")
    same(*pair, script)


def test_long_absolute_node_paths_deliberately_differ(pair: tuple[Daemon, Daemon]) -> None:
    """oxenstored refuses to create a node whose path is over 2048 bytes, though it takes
    watch paths up to 3071; Hyperwall allows node paths up to Xen's documented 3072 (less
    the NUL), the same limit as for watches."""
    hw, ox = pair
    path = b"/" + b"x" * 2048
    assert RawConn(ox.socket).request(Op.WRITE, path + b"\0v").payload == b"EINVAL\0"
    assert RawConn(hw.socket).request(Op.WRITE, path + b"\0v").payload == b"OK\0"


def test_long_watch_path_deliberately_differs(pair: tuple[Daemon, Daemon]) -> None:
    hw, ox = pair
    for path in BAD_PATHS[-1:]:
        assert RawConn(ox.socket).request(Op.WATCH, path + b"\0tok\0").payload == b"OK\0"
        assert RawConn(hw.socket).request(Op.WATCH, path + b"\0tok\0").payload == b"EINVAL\0"


def test_missing_nul_and_missing_arguments(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.READ, b"/t")                            # no NUL terminator
        s.req(Op.WRITE, b"/t/x")                         # no value separator
        s.req(Op.SET_PERMS, args("/t"))                  # no entries
        s.req(Op.WATCH, args("/t"))                      # no token
        s.req(Op.UNWATCH, args("/t"))
        # An empty argument, not an empty payload: oxenstored holds back its answer to a
        # frame of length 0 until more bytes arrive, which would only test the harness.
        s.req(Op.IS_DOMAIN_INTRODUCED, b"\0")
    same(*pair, script)


def test_at_sign_inside_a_path(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WRITE, b"/t/a@b\0v")
        s.req(Op.READ, args("/t/a@b"))
    same(*pair, script)


# ---- permissions -----------------------------------------------------------------------

@pytest.mark.parametrize("perms", [["n0"], ["r0"], ["w0"], ["b0"], ["n0", "r5", "w6", "b7"],
                                   ["b7", "n0"], ["r5"], ["n0", "r5", "r5"]])
def test_set_and_get_perms_round_trip(pair: tuple[Daemon, Daemon], perms: list[str]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WRITE, b"/t/p\0v")
        s.req(Op.SET_PERMS, args("/t/p", *perms))
        s.req(Op.GET_PERMS, args("/t/p"))
        s.req(Op.WRITE, b"/t/p/child\0v")                # children inherit
        s.req(Op.GET_PERMS, args("/t/p/child"))
    same(*pair, script)


def test_bad_perms(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WRITE, b"/t/p\0v")
        for bad in (["q0"], ["r"], ["rx"], ["n0", "zz"], [""]):
            s.req(Op.SET_PERMS, args("/t/p", *bad))
        s.req(Op.SET_PERMS, args("/t/missing", "n0"))
        s.req(Op.GET_PERMS, args("/t/p"))                # unchanged by the failures
    same(*pair, script)


# ---- unknown operations ------------------------------------------------------------------

@pytest.mark.parametrize("op", [Op.RESTRICT, 23, 99, 128, 65535, Op.WATCH_EVENT, Op.ERROR])
def test_unknown_and_server_only_operations(pair: tuple[Daemon, Daemon], op: int) -> None:
    def script(s: Session) -> None:
        s.req(op, args("/t"))
        s.req(Op.WRITE, b"/t/alive\0yes")                # the connection survives
    same(*pair, script)


def test_control_resume_set_target_and_reset_watches(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.CONTROL, b"\0")
        s.req(Op.RESUME, args("5"))                      # not introduced
        s.req(Op.SET_TARGET, args("5", "6"))
        s.req(Op.RESET_WATCHES, b"\0")
    same(*pair, script)


# ---- domains -----------------------------------------------------------------------------

def test_domain_queries(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        for domid in ("0", "5", "100"):
            s.req(Op.GET_DOMAIN_PATH, args(domid))
            s.req(Op.IS_DOMAIN_INTRODUCED, args(domid))
        s.req(Op.IS_DOMAIN_INTRODUCED, args("x"))
        s.req(Op.RELEASE, args("5"))                     # never introduced
        s.req(Op.RELEASE, args("x"))
        s.req(Op.INTRODUCE, args("x", "0", "0"))
        s.req(Op.INTRODUCE, args("5"))                   # too few arguments
        s.req(Op.INTRODUCE, b"\0")
    same(*pair, script)


def test_get_domain_path_of_a_non_number_deliberately_differs(
        pair: tuple[Daemon, Daemon]) -> None:
    """oxenstored parses the domid leniently ("abc" and "" are dom0, "-1" is dom1) and
    takes reserved ids (65535 is DOMID_INVALID); Hyperwall answers EINVAL, as it does for
    every other operation taking a domid."""
    hw, ox = pair
    for untrusted, ox_says in ((b"abc", b"/local/domain/0\0"), (b"-1", b"/local/domain/1\0"),
                               (b"", b"/local/domain/0\0"),
                               (b"65535", b"/local/domain/65535\0")):
        assert RawConn(ox.socket).request(Op.GET_DOMAIN_PATH, untrusted + b"\0").payload \
            == ox_says
        assert RawConn(hw.socket).request(Op.GET_DOMAIN_PATH, untrusted + b"\0").payload \
            == b"EINVAL\0"


def test_release_of_dom0_deliberately_differs(pair: tuple[Daemon, Daemon]) -> None:
    """Both answer EINVAL, but oxenstored then removes the nodes dom0 owns (all of them);
    Hyperwall leaves the tree alone."""
    hw, ox = pair
    for daemon, survives in ((hw, True), (ox, False)):
        c = RawConn(daemon.socket)
        c.request(Op.WRITE, b"/t/x\0v")
        assert c.request(Op.RELEASE, b"0\0").payload == b"EINVAL\0"
        assert (c.request(Op.READ, b"/t/x\0").payload == b"v") is survives


def test_introduce_is_hyperwall_only(hw_xenstored: Daemon) -> None:
    """oxenstored here has no hypervisor to map a guest's ring: INTRODUCE ends the
    connection, so a valid INTRODUCE has no oracle; this is Hyperwall's behaviour."""
    c = RawConn(hw_xenstored.socket)
    assert c.request(Op.INTRODUCE, args("5", "0", "0")).payload == b"OK\0"
    assert c.request(Op.IS_DOMAIN_INTRODUCED, args("5")).payload == b"T\0"
    assert c.request(Op.INTRODUCE, args("5", "0", "0")).payload == b"OK\0"   # idempotent
    assert (hw_xenstored.rundir / "domain" / "5" / "socket").exists()
    assert c.request(Op.RELEASE, args("5")).payload == b"OK\0"
    assert c.request(Op.RELEASE, args("5")).payload == b"EINVAL\0"
    assert c.request(Op.IS_DOMAIN_INTRODUCED, args("5")).payload == b"F\0"


def test_directory_part_is_hyperwall_only(pair: tuple[Daemon, Daemon]) -> None:
    """oxenstored 4.17 lacks DIRECTORY_PART (ENOSYS); Hyperwall implements it as Xen's C
    xenstored does: `generation\\0child\\0...`, an empty string ending the last part."""
    hw, ox = pair
    assert RawConn(ox.socket).request(Op.DIRECTORY_PART, args("/", "0")).payload \
        == b"ENOSYS\0"
    c = RawConn(hw.socket)
    c.request(Op.WRITE, b"/t/aa\0")
    c.request(Op.WRITE, b"/t/bb\0")
    gen, rest = c.request(Op.DIRECTORY_PART, args("/t", "0")).payload.split(b"\0", 1)
    assert gen.isdigit() and rest == b"aa\0bb\0\0"
    assert c.request(Op.DIRECTORY_PART, args("/t", "3")).payload == gen + b"\0bb\0\0"
    assert c.request(Op.DIRECTORY_PART, args("/t", "99")).payload == b"EINVAL\0"
    assert c.request(Op.DIRECTORY_PART, args("/none", "0")).payload == b"ENOENT\0"


def test_removing_the_root_deliberately_differs(pair: tuple[Daemon, Daemon]) -> None:
    """oxenstored empties the whole store on RM of `/`; Hyperwall refuses (EINVAL), as Xen's
    C xenstored does, since nothing good can come of it."""
    hw, ox = pair
    for daemon, reply in ((hw, b"EINVAL\0"), (ox, b"OK\0")):
        c = RawConn(daemon.socket)
        c.request(Op.WRITE, b"/t/x\0v")
        assert c.request(Op.RM, b"/\0").payload == reply


# ---- transactions ------------------------------------------------------------------------

def test_transaction_lifecycle(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WRITE, b"/t/x\0old")
        s.req(Op.TRANSACTION_START, b"\0")               # T1
        s.req(Op.WRITE, b"/t/x\0new", tx=1)
        s.req(Op.WRITE, b"/t/y\0made", tx=1)
        s.req(Op.READ, args("/t/x"), tx=1)               # sees its own write
        s.req(Op.READ, args("/t/x"))                     # outside: not yet
        s.req(Op.READ, args("/t/y"))
        s.req(Op.DIRECTORY, args("/t"), tx=1)
        s.req(Op.TRANSACTION_END, b"T\0", tx=1)
        s.req(Op.READ, args("/t/x"))
        s.req(Op.TRANSACTION_END, b"T\0", tx=1)          # ended twice
        s.req(Op.READ, args("/t/x"), tx=1)               # ended: unknown now
        s.req(Op.TRANSACTION_START, b"\0")               # T2
        s.req(Op.RM, args("/t/y"), tx=2)
        s.req(Op.TRANSACTION_END, b"F\0", tx=2)          # abort
        s.req(Op.READ, args("/t/y"))
        s.req(Op.TRANSACTION_END, b"T\0")                # no transaction at all
        s.req(Op.READ, args("/t/x"), tx=999)             # never started
        s.req(Op.TRANSACTION_START, b"\0")               # T3
        s.req(Op.TRANSACTION_END, b"X\0", tx=3)          # neither T nor F
        s.req(Op.TRANSACTION_END, b"F\0", tx=3)
    same(*pair, script)


def test_transaction_conflict_gives_eagain(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WRITE, b"/t/c\0" + b"0")
        s.req(Op.TRANSACTION_START, b"\0")
        s.req(Op.READ, args("/t/c"), tx=1)
        other = RawConn(s.daemon.socket)
        try:
            other.request(Op.WRITE, b"/t/c\0" + b"1")
        finally:
            other.close()
        s.req(Op.WRITE, b"/t/c\0" + b"2", tx=1)
        s.req(Op.TRANSACTION_END, b"T\0", tx=1)          # EAGAIN: someone else wrote
        s.req(Op.READ, args("/t/c"))
        s.req(Op.TRANSACTION_START, b"\0")               # disjoint: no conflict
        s.req(Op.WRITE, b"/t/mine\0" + b"1", tx=2)
        s.req(Op.TRANSACTION_END, b"T\0", tx=2)
    log = same(*pair, script)
    assert ("ERROR", 1, b"EAGAIN\0") in log


# ---- watches -----------------------------------------------------------------------------

def test_watch_firing_and_event_order(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WATCH, args("/t", "tok"))               # fires once at once
        s.req(Op.WATCH, args("/t", "tok"))               # duplicate
        s.req(Op.WATCH, args("/t/a", "other"))
        s.req(Op.WRITE, b"/t/a\0" + b"1")                # both watches
        s.req(Op.WRITE, b"/t/b/c\0" + b"1")
        s.req(Op.MKDIR, args("/t/d"))
        s.req(Op.MKDIR, args("/t/d"))                    # nothing changes
        s.req(Op.SET_PERMS, args("/t/a", "n0", "r3"))
        s.req(Op.RM, args("/t/b"))
        s.req(Op.RM, args("/t"))                         # an ancestor of /t/a too
        s.req(Op.UNWATCH, args("/t", "nope"))
        s.req(Op.UNWATCH, args("/t", "tok"))
        s.req(Op.WRITE, b"/t/after\0" + b"1")            # only /t/a's watch left; not it
    same(*pair, script)


def test_watch_events_of_a_transaction_come_at_commit(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WATCH, args("/t", "w"))
        s.req(Op.TRANSACTION_START, b"\0")
        s.req(Op.WRITE, b"/t/x\0" + b"1", tx=1)
        s.req(Op.WRITE, b"/t/y\0" + b"1", tx=1)
        s.req(Op.READ, args("/t/x"))                     # events would have arrived by now
        s.req(Op.TRANSACTION_END, b"T\0", tx=1)
        s.req(Op.TRANSACTION_START, b"\0")
        s.req(Op.WRITE, b"/t/z\0" + b"1", tx=2)
        s.req(Op.TRANSACTION_END, b"F\0", tx=2)          # aborted: no event
    same(*pair, script)


def test_special_watches_and_reset(pair: tuple[Daemon, Daemon]) -> None:
    def script(s: Session) -> None:
        s.req(Op.WATCH, args("@introduceDomain", "i"))
        s.req(Op.WATCH, args("@releaseDomain", "r"))
        s.req(Op.WATCH, args("/t", "t"))
        s.req(Op.RESET_WATCHES, b"\0")                   # drops them all
        s.req(Op.WRITE, b"/t/x\0" + b"1")
        s.req(Op.UNWATCH, args("/t", "t"))               # gone already
        s.req(Op.WATCH, args("/t", "t"))                 # and can be set again
    same(*pair, script)


# ---- malformed frames --------------------------------------------------------------------

def serves(daemon: Daemon) -> bool:
    c = RawConn(daemon.socket)
    try:
        return c.request(Op.READ, b"/\0").op == Op.READ
    finally:
        c.close()


@pytest.mark.parametrize("frame", [
    pytest.param(struct.pack("=IIII", Op.READ, 1, 0, 4097) + b"x" * 4097, id="len>4096"),
    pytest.param(struct.pack("=IIII", Op.READ, 1, 0, 0xFFFFFFFF), id="len=2^32-1"),
])
def test_oversized_frames_deliberately_differ(pair: tuple[Daemon, Daemon],
                                              frame: bytes) -> None:
    """A length over 4096 is a fatal protocol error: Hyperwall closes that connection at
    once. oxenstored here neither answers nor closes (the connection just hangs), so this
    asserts Hyperwall's behaviour, and only that both go on serving everyone else."""
    hw, ox = pair
    c = RawConn(hw.socket)
    c.send_raw(frame)
    assert c.is_closed_by_peer()
    c.close()
    stuck = RawConn(ox.socket)
    stuck.send_raw(frame)
    assert serves(hw) and serves(ox)
    stuck.close()


@pytest.mark.parametrize("data", [
    pytest.param(struct.pack("=IIII", Op.READ, 1, 0, 10) + b"/t", id="short-payload"),
    pytest.param(b"\x02\x00\x00", id="short-header"),
])
def test_short_frame_then_close_leaves_the_daemon_serving(pair: tuple[Daemon, Daemon],
                                                          data: bytes) -> None:
    for daemon in pair:
        c = RawConn(daemon.socket)
        c.send_raw(data)
        c.close()
        assert serves(daemon)


def test_garbage_frames(pair: tuple[Daemon, Daemon]) -> None:
    """Well-framed garbage is answered like any unknown request: both daemons agree."""
    def script(s: Session) -> None:
        s.req(0x41414141, b"AAAA")
        s.req(Op.READ, b"\xff\xfe\0")
        s.req(Op.WRITE, b"\0\0\0")
        s.req(Op.READ, b"\0")
    same(*pair, script)


def test_pipelined_requests_keep_their_order(pair: tuple[Daemon, Daemon]) -> None:
    """Many requests in one send: replies come back in order, each echoing its req_id."""
    bodies = [b"/t/%d\0v" % i for i in range(1, 51)]
    burst = b"".join(struct.pack("=IIII", Op.WRITE, i, 0, len(b)) + b
                     for i, b in enumerate(bodies, 1))
    for daemon in pair:
        c = RawConn(daemon.socket)
        c.send_raw(burst)
        assert [c.next_frame().req_id for _ in range(50)] == list(range(1, 51))
        c.close()
