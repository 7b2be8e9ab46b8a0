"""The nfnetlink_queue codec: messages we send, packets we parse, and malformed input."""
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domains.syssec import nfqueue as nfq


def packet_message(queue: int, packet_id: int, payload: bytes, mark: int | None = None) -> bytes:
    attrs = nfq._attr(nfq.NFQA_PACKET_HDR, struct.pack("!IHB", packet_id, 0x0800, 2))
    if mark is not None:
        attrs += nfq._attr(nfq.NFQA_MARK, struct.pack("!I", mark))
    attrs += nfq._attr(nfq.NFQA_PAYLOAD, payload)
    return nfq._message(nfq.NFQNL_MSG_PACKET, queue, attrs, 0)


def test_parse_packets_in_one_datagram() -> None:
    data = packet_message(3, 7, b"\x45abc", mark=0x10) + packet_message(3, 8, b"\x45xy")
    p1, p2 = nfq.parse(data)
    assert isinstance(p1, nfq.QueuedPacket) and isinstance(p2, nfq.QueuedPacket)
    assert (p1.queue, p1.packet_id, p1.payload, p1.mark, p1.hook) == (3, 7, b"\x45abc", 0x10, 2)
    assert (p2.packet_id, p2.payload, p2.mark) == (8, b"\x45xy", 0)


def test_parse_ack_and_error() -> None:
    ok = struct.pack("=IHHII", 36, nfq.NLMSG_ERROR, 0, 5, 0) + struct.pack("=i", 0) + bytes(16)
    busy = struct.pack("=IHHII", 36, nfq.NLMSG_ERROR, 0, 6, 0) + struct.pack("=i", -16) + bytes(16)
    assert nfq.parse(ok + busy) == [nfq.Ack(5, 0), nfq.Ack(6, 16)]


def test_verdict_messages() -> None:
    msg = nfq.verdict_message(3, 9, nfq.NF_ACCEPT, mark=1)
    length, kind, flags, _, _ = struct.unpack_from("=IHHII", msg)
    assert length == len(msg) and kind == (3 << 8) | nfq.NFQNL_MSG_VERDICT
    assert struct.unpack_from("!BBH", msg, 16)[2] == 3
    assert struct.pack("!II", nfq.NF_ACCEPT, 9) in msg and struct.pack("!I", 1) in msg
    batch = nfq.batch_verdict_message(3, 42, nfq.NF_ACCEPT)
    assert struct.unpack_from("=IHHII", batch)[1] == (3 << 8) | nfq.NFQNL_MSG_VERDICT_BATCH
    assert batch.endswith(struct.pack("!II", nfq.NF_ACCEPT, 42))


def test_bind_messages_ask_for_acks_and_keep_fail_open_off() -> None:
    msgs = nfq.bind_messages(0, maxlen=1024, gso=True, seq=1)
    assert [struct.unpack_from("=IHHII", m)[3] for m in msgs] == [1, 2, 3, 4]
    assert all(struct.unpack_from("=IHHII", m)[2] & nfq.NLM_F_ACK for m in msgs)
    flags_msg = msgs[3]
    assert struct.pack("!I", nfq.NFQA_CFG_F_GSO) in flags_msg  # flags: GSO only, no fail-open


@pytest.mark.parametrize("data,where", [
    (struct.pack("=IHHII", 400, 0x300, 0, 0, 0), "overruns"),
    (struct.pack("=IHHII", 20, 0x300, 0, 0, 0) + bytes(4), "no packet header"),
    (struct.pack("=IHHII", 16, 0x999, 0, 0, 0), "unexpected type"),
    (struct.pack("=IHHII", 24, 0x300, 0, 0, 0) + bytes(4) + struct.pack("=HH", 200, 1),
     "overruns the message"),
])
def test_malformed_messages_are_named(data: bytes, where: str) -> None:
    with pytest.raises(nfq.NfqueueError, match=where):
        nfq.parse(data)


@given(st.binary(max_size=512))
def test_fuzz_parse_raises_only_nfqueue_errors(data: bytes) -> None:
    try:
        nfq.parse(data)
    except nfq.NfqueueError:
        pass
