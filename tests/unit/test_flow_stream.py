"""TCP reassembly of one direction: order, retransmissions, overlaps (bsd), depth, wrap."""
from __future__ import annotations

from netsec.flow.stream import Stream


def _stream(base: int = 1000, depth: int = 0, context: int = 8) -> Stream:
    return Stream(base, depth, context, 1 << 20)


def test_in_order_segments() -> None:
    s = _stream()
    assert s.add(1000, b"abc") == b"abc"
    assert s.add(1003, b"def") == b"def"
    assert s.next == 6


def test_out_of_order_is_buffered_until_the_hole_fills() -> None:
    s = _stream()
    assert s.add(1006, b"ghi") == b""
    assert s.add(1003, b"def") == b""
    assert s.add(1000, b"abc") == b"abcdefghi"


def test_retransmission_is_ignored_and_cannot_rewrite() -> None:
    s = _stream()
    s.add(1000, b"hello")
    assert s.add(1000, b"HELLO") == b""
    # a partial overlap keeps the original bytes and contributes only its new tail
    assert s.add(1003, b"XXworld") == b"world"


def test_out_of_order_overlap_lowest_start_wins() -> None:
    s = _stream()
    assert s.add(1005, b"11111") == b""    # covers 5-10
    assert s.add(1005, b"22222") == b""    # same start: the first received stays
    assert s.add(1003, b"3333") == b""     # starts lower: wins on 5-7
    assert s.add(1000, b"abc") == b"abc3333111"


def test_a_longer_segment_at_a_buffered_start_adds_its_tail() -> None:
    # [(16,24), (16,40), (0,16)]: the receiver's stack keeps 24-40 from the second one and
    # acknowledges up to 40, so the sender never resends it; losing it here would leave
    # the engine waiting at 24 while the guest reads on.
    s = _stream(base=0)
    events: list[str] = []
    assert s.add(16, b"A" * 8, events) == b""
    assert s.add(16, b"B" * 24, events) == b""
    assert s.add(0, b"h" * 16, events) == b"h" * 16 + b"A" * 8 + b"B" * 16
    assert s.next == 40 and s.ooo_bytes == 0
    assert events == ["stream.reassembly_overlap_different_data"]
    assert s.add(40, b"next") == b"next"


def test_sequence_wraparound() -> None:
    s = _stream(base=0xFFFFFFFE)
    assert s.add(0xFFFFFFFE, b"ab") == b"ab"
    assert s.add(0, b"cd") == b"cd"
    assert s.add(0xFFFFFFFF, b"bc") == b""   # old data across the wrap: retransmitted
    assert s.add(4, b"ef") == b""                   # a hole at 2
    assert s.add(2, b"XY") == b"XYef"


def test_depth_stops_reassembly() -> None:
    s = _stream(depth=5)
    assert s.add(1000, b"abc") == b"abc"
    assert s.add(1003, b"defg") == b"de"
    assert s.past_depth
    assert s.add(1007, b"h") == b""


def test_window_keeps_context_for_split_content() -> None:
    s = _stream(context=4)
    s.add(1000, b"xxxxEVI")
    assert s.window() == b"xxxxEVI"
    s.add(1007, b"L!")
    assert s.window() == b"xEVIL!"


def test_out_of_order_buffer_is_bounded() -> None:
    from netsec.flow.stream import MAX_OOO_SEGMENTS
    s = _stream()
    for i in range(MAX_OOO_SEGMENTS + 10):
        s.add(1002 + 2 * i, b"x")
    assert len(s.ooo) == MAX_OOO_SEGMENTS
