"""Property-based tests: the codec and the server core never crash and keep their invariants."""
from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dom0.xenstore import perms as P
from dom0.xenstore.wire import ERRNO_NAMES, PAYLOAD_MAX, Frame, FrameDecoder, Op, ProtocolError
from dom0.xenstored.server import Quotas, Server
from tests.xenstore_core import Client


@given(st.lists(st.binary(max_size=64), max_size=20))
def test_decoder_survives_any_bytes(chunks: list[bytes]) -> None:
    d = FrameDecoder()
    try:
        for chunk in chunks:
            for f in d.feed(chunk):
                assert len(f.payload) <= PAYLOAD_MAX
    except ProtocolError:
        pass
    assert d.pending <= 16 + PAYLOAD_MAX


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 2**32 - 1),
                          st.binary(max_size=200)), max_size=10),
       st.integers(1, 7))
def test_frames_round_trip_whatever_the_split(frames: list[tuple[int, int, bytes]],
                                              step: int) -> None:
    data = b"".join(Frame(op, rid, 0, p).encode() for op, rid, p in frames)
    d = FrameDecoder()
    out = []
    for i in range(0, len(data), step):
        out += d.feed(data[i:i + step])
    assert [(f.op, f.req_id, f.payload) for f in out] == frames


def test_oversized_frame_is_a_protocol_error() -> None:
    try:
        FrameDecoder().feed(struct.pack("=IIII", 2, 1, 0, PAYLOAD_MAX + 1))
    except ProtocolError as e:
        assert "4097" in str(e)
    else:
        raise AssertionError("no error")


PATHS = st.sampled_from(["/a", "/a/b", "/a/b/c", "/x", "data/d", "data", "/local/domain/1/q",
                         "/local/domain/2", "@releaseDomain", "/a//b", "bad path", ""])
OPS = st.sampled_from([Op.READ, Op.WRITE, Op.MKDIR, Op.RM, Op.DIRECTORY, Op.GET_PERMS,
                       Op.SET_PERMS, Op.WATCH, Op.UNWATCH, Op.TRANSACTION_START,
                       Op.TRANSACTION_END, Op.DIRECTORY_PART, Op.RESET_WATCHES, Op.INTRODUCE,
                       Op.RELEASE, Op.SET_TARGET, 99])
STEP = st.tuples(st.integers(0, 2), OPS, PATHS, st.binary(max_size=8),
                 st.sampled_from(["n0", "r1", "b2", "w1", "x", "n1", "r99999"]),
                 st.integers(0, 3))


def check_invariants(srv: Server) -> None:
    counts: dict[int, int] = {}
    for path, node in srv.tree.walk():
        assert node.perms and all(0 <= a <= 3 for _, a in node.perms)
        if path != "/":
            counts[node.perms[0][0]] = counts.get(node.perms[0][0], 0) + 1
    for owner, n in counts.items():
        assert srv.tree.owned(owner) == n, (owner, n, srv.tree.counts)
    for domid in (1, 2):
        if domid in srv.domains:
            assert srv.tree.owned(domid) <= 30
    for c in srv.conns.values():
        assert len(c.watches) <= 100 and all(isinstance(k[1], bytes) for k in c.watches)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, max_size=60))
def test_random_sequences_from_several_domains(steps: list) -> None:  # type: ignore[type-arg]
    srv = Server(Quotas(nodes=30, watches=4, transactions=2))
    dom0 = Client(srv)
    for domid in (1, 2):
        dom0.ok(Op.INTRODUCE, str(domid), "1", "1")
        dom0.write(f"/local/domain/{domid}")
        dom0.set_perms(f"/local/domain/{domid}", f"n{domid}")
    clients = [dom0, Client(srv, 1), Client(srv, 2)]
    txs: list[int] = [0, 0, 0]
    for who, op, path, value, perm, tx_pick in steps:
        c = clients[who]
        if c.conn.id not in srv.conns:
            continue   # its domain was released
        tx = txs[who] if tx_pick == 1 else 0
        if op == Op.WRITE:
            payload = path.encode() + b"\0" + value
        elif op in (Op.WATCH, Op.UNWATCH):
            payload = path.encode() + b"\0tok\0"
        elif op == Op.SET_PERMS:
            payload = path.encode() + b"\0" + perm.encode() + b"\0"
        elif op == Op.DIRECTORY_PART:
            payload = path.encode() + b"\0" + str(len(value)).encode() + b"\0"
        elif op in (Op.INTRODUCE, Op.RELEASE, Op.SET_TARGET):
            payload = b"2\0" + (b"1\0" if op == Op.SET_TARGET else b"1\0" + b"1\0")
        elif op == Op.TRANSACTION_END:
            payload = b"T\0" if value[:1] != b"F" else b"F\0"
            tx = txs[who]
        elif op == Op.TRANSACTION_START:
            payload = b"\0"
            tx = 0
        else:
            payload = path.encode() + b"\0"
        f = c.raw(op, payload, tx)
        if f.op == Op.ERROR:
            assert f.payload[:-1].decode() in ERRNO_NAMES, f.payload
        if op == Op.TRANSACTION_START and f.op != Op.ERROR:
            txs[who] = int(f.payload[:-1])
        check_invariants(srv)
    # Whatever happened, every connection can still be served.
    for c in clients:
        if c.conn.id in srv.conns:
            assert c.raw(Op.GET_DOMAIN_PATH, b"0\0").op == Op.GET_DOMAIN_PATH


@given(st.lists(st.binary(min_size=1, max_size=6), min_size=1, max_size=4))
def test_perms_parser_only_raises_perms_errors(entries: list[bytes]) -> None:
    try:
        parsed = P.parse(entries)
        assert P.parse(P.format_perms(parsed)[:-1].split(b"\0")) == parsed
    except P.PermsError:
        pass
