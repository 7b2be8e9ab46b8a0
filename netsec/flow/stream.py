"""TCP reassembly of one direction of a connection.

Sequence numbers are read relative to the next expected byte, modulo 2**32 (so a stream
wraps around the sequence space without effect). A segment wholly below the next expected
byte is a retransmission and is ignored; one that overlaps it contributes only its new tail.
Segments beyond the next expected byte are buffered (up to `max_ooo_bytes` and
`MAX_OOO_SEGMENTS`; beyond that they are dropped, as if lost) until the hole is filled.

Overlap policy, Suricata's default "bsd"-like: data already reassembled is never replaced,
and among buffered out-of-order segments the one starting lowest wins (same start: the first
received). So a retransmission carrying different bytes cannot rewrite what was inspected.

Data past `depth` bytes (0 = unlimited) is dropped and `past_depth` set.
"""
from __future__ import annotations

_HALF = 1 << 31
_MASK = 0xFFFFFFFF
MAX_OOO_SEGMENTS = 1024   # buffered segments per direction (bounds the work per segment)


class Stream:
    __slots__ = ("base", "next", "ooo", "ooo_bytes", "depth", "past_depth", "max_ooo",
                 "context", "context_len")

    def __init__(self, base_seq: int, depth: int, context_len: int, max_ooo: int) -> None:
        self.base = base_seq & _MASK   # sequence number of stream offset 0
        self.next = 0                  # stream offset of the next expected byte
        self.ooo: dict[int, bytes] = {}  # stream offset -> out-of-order segment
        self.ooo_bytes = 0
        self.depth = depth
        self.past_depth = False
        self.max_ooo = max_ooo
        self.context = b""             # the last `context_len` reassembled bytes
        self.context_len = context_len

    def add(self, seq: int, data: bytes) -> bytes:
        """Feed one segment; the bytes that became in-order (possibly none)."""
        if self.past_depth:
            return b""
        nxt = self.next
        diff = (seq - self.base - nxt) & _MASK
        if diff >= _HALF:
            diff -= 1 << 32
        rel = nxt + diff
        end = rel + len(data)
        if end <= nxt:
            return b""                 # retransmission (or keep-alive)
        if rel > nxt:
            if (rel not in self.ooo and self.ooo_bytes + len(data) <= self.max_ooo
                    and len(self.ooo) < MAX_OOO_SEGMENTS):
                self.ooo[rel] = data
                self.ooo_bytes += len(data)
            return b""
        out = data[nxt - rel:] if rel < nxt else data
        nxt = end
        if self.ooo:
            parts = [out]
            while True:
                ready = [r for r in self.ooo if r <= nxt]
                if not ready:
                    break
                for r in sorted(ready):
                    seg = self.ooo.pop(r)
                    self.ooo_bytes -= len(seg)
                    if r + len(seg) > nxt:
                        parts.append(seg[nxt - r:])
                        nxt = r + len(seg)
            out = b"".join(parts)
        if self.depth and nxt >= self.depth:
            out = out[:len(out) - (nxt - self.depth)]
            nxt = self.depth
            self.past_depth = True
            self.ooo.clear()
        self.next = nxt
        return out

    def window(self, new: bytes) -> bytes:
        """`new` preceded by up to `context_len` earlier bytes; remembers the new tail."""
        buf = self.context + new if self.context else new
        self.context = buf[-self.context_len:] if self.context_len else b""
        return buf
