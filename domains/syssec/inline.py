"""The inline shell: packets from an NFQUEUE to a verdict function and back, in batches.

It reads every packet the kernel has ready (up to `batch`) before answering, then sends all
the answers in one datagram: drops and mark-setting accepts one by one, and every plain
accept with a single batch verdict. The verdict function is the engine's, its verdicts
`netsec.engine.Verdict`: ACCEPT is NF_ACCEPT, DROP and REJECT are NF_DROP (the reject's
answers are the caller's to send), BYPASS is NF_ACCEPT with the bypass mark set, which the
firewall saves on the connection so the rest of the flow skips the queue. This module only
moves packets. A verdict function may also answer None: the packet is held (a file
waiting for its scanner's verdict, domains/syssec/filehold.py) and answered later by its id
(`current_id` while it is decided) through `answer_later`; while any packet is held, accepts
go one by one, since a batch verdict would also accept the held ones below it. While
nothing reads the queue the kernel drops its packets (the firewall
queues without --queue-bypass), so a dead engine fails closed.
"""
from __future__ import annotations

import errno
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from domains.syssec import nfqueue as nfq
from netsec.engine import Verdict

SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33   # Linux; the socket module does not name it


Decide = Callable[[bytes], Verdict | None]   # None: held, answered by answer_later


@dataclass
class Stats:
    received: int = 0
    accepted: int = 0
    dropped: int = 0
    bypassed: int = 0
    batches: int = 0
    overflows: int = 0
    held: int = 0


class InlineQueue:
    def __init__(self, queue: int, decide: Decide, *, bypass_mark: int = 0x1,
                 maxlen: int = 8192, batch: int = 128, gso: bool = True,
                 rcvbuf: int = 8 << 20) -> None:
        self.queue = queue
        self.decide = decide
        self.bypass_mark = bypass_mark
        self.maxlen = maxlen
        self.batch = batch
        self.gso = gso
        self.rcvbuf = rcvbuf
        self.stats = Stats()
        self.sock: socket.socket | None = None
        self._buf = bytearray(256 * 1024)
        self.current_id = 0          # the packet being decided (a hold answers it later)
        self.held: set[int] = set()  # packets decided None, not answered yet

    def open(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nfq.NETLINK_NETFILTER)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        # Report overflow as lost packets, not as a socket error that stops the loop.
        sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        sock.bind((0, 0))
        self.sock = sock
        for msg in nfq.bind_messages(self.queue, maxlen=self.maxlen, gso=self.gso, seq=1):
            sock.send(msg)
            self._expect_ack(nfq.parse(sock.recv(65536)))

    def _expect_ack(self, messages: list[nfq.QueuedPacket | nfq.Ack]) -> None:
        for m in messages:
            if isinstance(m, nfq.Ack) and m.error:
                what = {errno.EBUSY: "another program holds it",
                        errno.EPERM: "needs CAP_NET_ADMIN"}.get(m.error, errno.errorcode.get(
                            m.error, str(m.error)))
                raise OSError(m.error, f"cannot bind NFQUEUE {self.queue}: {what}")

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.send(nfq.unbind_message(self.queue, seq=99))
            except OSError:
                pass
            self.sock.close()
            self.sock = None

    def serve(self, stop: threading.Event | None = None, poll: float = 0.2) -> None:
        """Answer packets until `stop` is set (checked every `poll` seconds when idle)."""
        while stop is None or not stop.is_set():
            self.serve_once(poll)

    def serve_once(self, timeout: float) -> int:
        """Wait up to `timeout` for packets and answer what is ready; returns how many."""
        assert self.sock is not None, "open() first"
        try:
            ready, _, _ = select.select([self.sock.fileno()], [], [], timeout)
        except InterruptedError:
            return 0
        return self.service() if ready else 0

    def service(self) -> int:
        """Read what is ready (at least one datagram), answer it; returns packets handled."""
        assert self.sock is not None
        packets: list[nfq.QueuedPacket] = []
        flags = 0
        while len(packets) < self.batch:
            try:
                n = self.sock.recv_into(self._buf, 0, flags)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.stats.overflows += 1
                    continue
                raise
            flags = socket.MSG_DONTWAIT
            for m in nfq.parse(memoryview(self._buf)[:n]):
                if isinstance(m, nfq.QueuedPacket):
                    packets.append(m)
        if packets:
            self._answer(packets)
        return len(packets)

    def _answer(self, packets: list[nfq.QueuedPacket]) -> None:
        out: list[bytes] = []
        accepted: list[int] = []
        stats = self.stats
        for p in packets:
            self.current_id = p.packet_id
            try:
                verdict = self.decide(p.payload)
            except Exception:
                # A packet the engine cannot judge is not let through.
                verdict = Verdict.DROP
            if verdict is None:
                self.held.add(p.packet_id)
                stats.held += 1
            elif verdict is Verdict.ACCEPT:
                accepted.append(p.packet_id)
                stats.accepted += 1
            elif verdict is Verdict.BYPASS:
                out.append(nfq.verdict_message(self.queue, p.packet_id, nfq.NF_ACCEPT,
                                               mark=p.mark | self.bypass_mark))
                stats.bypassed += 1
            else:   # DROP, REJECT
                out.append(nfq.verdict_message(self.queue, p.packet_id, nfq.NF_DROP))
                stats.dropped += 1
        if accepted and self.held:
            out.extend(nfq.verdict_message(self.queue, i, nfq.NF_ACCEPT) for i in accepted)
        elif accepted:
            # Covers every accepted packet up to the last one; the others have their own
            # verdicts already (sent in this same datagram, ahead of the batch).
            out.append(nfq.batch_verdict_message(self.queue, max(accepted), nfq.NF_ACCEPT))
        stats.received += len(packets)
        stats.batches += 1
        assert self.sock is not None
        if out:   # a batch of held packets only has nothing to say yet
            self.sock.send(b"".join(out))

    def answer_later(self, answers: list[tuple[int, Verdict]]) -> None:
        """Verdicts for held packets, by id, in the order given (a flow's, in order)."""
        out = []
        stats = self.stats
        for packet_id, verdict in answers:
            if packet_id not in self.held:
                continue
            self.held.discard(packet_id)
            if verdict in (Verdict.ACCEPT, Verdict.BYPASS):
                out.append(nfq.verdict_message(self.queue, packet_id, nfq.NF_ACCEPT))
                stats.accepted += 1
            else:
                out.append(nfq.verdict_message(self.queue, packet_id, nfq.NF_DROP))
                stats.dropped += 1
        if out:
            assert self.sock is not None
            self.sock.send(b"".join(out))
