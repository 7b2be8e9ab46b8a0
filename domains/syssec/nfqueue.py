"""The nfnetlink_queue wire protocol, sans-IO: config and verdict messages out, packets in.

Message layout (linux/netfilter/nfnetlink_queue.h): a netlink header (host order:
u32 len, u16 type, u16 flags, u32 seq, u32 pid), an nfgenmsg (u8 family, u8 version,
be16 queue number), then attributes (u16 len, u16 type, value padded to 4 bytes). Values
inside nfqueue attributes are big-endian.

Only what the inline IPS needs: bind a queue with full-packet copy, flags (GSO, fail-open
left off so the kernel drops what we cannot take), per-packet verdicts that may set the
packet mark, and batch verdicts (one message accepts every pending packet up to an id).
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
NLMSG_DONE = 3

NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_FAIL_OPEN = 1
NFQA_CFG_F_CONNTRACK = 2
NFQA_CFG_F_GSO = 4

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_MARK = 3
NFQA_TIMESTAMP = 4
NFQA_IFINDEX_INDEV = 5
NFQA_IFINDEX_OUTDEV = 6
NFQA_PAYLOAD = 10
NFQA_CAP_LEN = 13

NF_DROP = 0
NF_ACCEPT = 1

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")
_NLATTR = struct.Struct("=HH")
_PKT_HDR = struct.Struct("!IHB")


class NfqueueError(ValueError):
    """A malformed message from the kernel, or an error the kernel answered."""


def _attr(kind: int, value: bytes) -> bytes:
    length = _NLATTR.size + len(value)
    return _NLATTR.pack(length, kind) + value + b"\0" * (-length % 4)


def _message(msg: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, queue) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def bind_messages(queue: int, *, maxlen: int, gso: bool, seq: int) -> list[bytes]:
    """Bind `queue`, copy whole packets, set its length and flags; each asks for an ack."""
    flags = NFQA_CFG_F_GSO if gso else 0
    mask = NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN
    req = NLM_F_REQUEST | NLM_F_ACK
    return [
        _message(NFQNL_MSG_CONFIG, queue,
                 _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)), seq, req),
        _message(NFQNL_MSG_CONFIG, queue,
                 _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0xFFFF, NFQNL_COPY_PACKET)),
                 seq + 1, req),
        _message(NFQNL_MSG_CONFIG, queue,
                 _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen)), seq + 2, req),
        _message(NFQNL_MSG_CONFIG, queue,
                 _attr(NFQA_CFG_FLAGS, struct.pack("!I", flags))
                 + _attr(NFQA_CFG_MASK, struct.pack("!I", mask)), seq + 3, req),
    ]


def unbind_message(queue: int, seq: int) -> bytes:
    return _message(NFQNL_MSG_CONFIG, queue,
                    _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, 0)), seq)


def verdict_message(queue: int, packet_id: int, verdict: int, mark: int | None = None) -> bytes:
    attrs = _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
    if mark is not None:
        attrs += _attr(NFQA_MARK, struct.pack("!I", mark))
    return _message(NFQNL_MSG_VERDICT, queue, attrs, 0)


def batch_verdict_message(queue: int, up_to_id: int, verdict: int) -> bytes:
    """One verdict for every packet of `queue` still pending with an id <= `up_to_id`."""
    return _message(NFQNL_MSG_VERDICT_BATCH, queue,
                    _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, up_to_id)), 0)


@dataclass(slots=True)
class QueuedPacket:
    queue: int
    packet_id: int
    hw_protocol: int
    hook: int
    payload: bytes          # the IP packet, from its IP header on
    mark: int = 0
    indev: int = 0
    outdev: int = 0
    truncated: bool = False


@dataclass(slots=True)
class Ack:
    seq: int
    error: int              # 0 for success, else a positive errno


def parse(untrusted: bytes | memoryview) -> list[QueuedPacket | Ack]:
    """Every message in one datagram from the kernel."""
    data = memoryview(untrusted)
    out: list[QueuedPacket | Ack] = []
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size or off + length > len(data):
            raise NfqueueError(f"netlink message at {off}: length {length} overruns "
                               f"the {len(data)}-byte datagram")
        body = data[off + _NLMSGHDR.size: off + length]
        if kind == NLMSG_ERROR:
            if len(body) < 4:
                raise NfqueueError(f"netlink error message at {off} is truncated")
            out.append(Ack(seq, -struct.unpack_from("=i", body)[0]))
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            out.append(_parse_packet(body, off))
        elif kind != NLMSG_DONE:
            raise NfqueueError(f"netlink message at {off}: unexpected type {kind:#x}")
        off += (length + 3) & ~3
    return out


def _parse_packet(body: memoryview, where: int) -> QueuedPacket:
    if len(body) < _NFGENMSG.size:
        raise NfqueueError(f"packet message at {where}: no nfgenmsg")
    queue = _NFGENMSG.unpack_from(body)[2]
    pkt = QueuedPacket(queue, -1, 0, 0, b"")
    off = _NFGENMSG.size
    while off + _NLATTR.size <= len(body):
        alen, kind = _NLATTR.unpack_from(body, off)
        if alen < _NLATTR.size or off + alen > len(body):
            raise NfqueueError(f"packet message at {where}: attribute {kind} of length "
                               f"{alen} overruns the message")
        value = body[off + _NLATTR.size: off + alen]
        kind &= 0x3FFF   # strip NLA_F_NESTED / NLA_F_NET_BYTEORDER
        if kind == NFQA_PACKET_HDR and len(value) >= _PKT_HDR.size:
            pkt.packet_id, pkt.hw_protocol, pkt.hook = _PKT_HDR.unpack_from(value)
        elif kind == NFQA_PAYLOAD:
            pkt.payload = bytes(value)
        elif kind == NFQA_MARK and len(value) >= 4:
            pkt.mark = struct.unpack_from("!I", value)[0]
        elif kind == NFQA_IFINDEX_INDEV and len(value) >= 4:
            pkt.indev = struct.unpack_from("!I", value)[0]
        elif kind == NFQA_IFINDEX_OUTDEV and len(value) >= 4:
            pkt.outdev = struct.unpack_from("!I", value)[0]
        elif kind == NFQA_CAP_LEN:
            pkt.truncated = True
        off += (alen + 3) & ~3
    if pkt.packet_id < 0:
        raise NfqueueError(f"packet message at {where}: no packet header")
    return pkt
