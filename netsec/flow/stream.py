"""TCP reassembly of one direction of a connection.

Sequence numbers are read relative to the next expected byte, modulo 2**32 (so a stream
wraps around the sequence space without effect). A segment wholly below the next expected
byte is a retransmission and is ignored; one that overlaps it contributes only its new tail.
Segments beyond the next expected byte are buffered (up to `max_ooo_bytes` and
`MAX_OOO_SEGMENTS`; beyond that they are dropped, as if lost, and
"stream.reassembly_ooo_limit_reached" is raised) until the hole is filled.

Overlap policy, Suricata's default "bsd"-like: data already reassembled is never replaced,
and among buffered out-of-order segments the one starting lowest wins (same start: the first
received, a longer later one adding only its tail). So a retransmission carrying different
bytes cannot rewrite what was inspected; where the overlapping bytes differ from those kept
(compared within the last `context_len` reassembled bytes, and among buffered segments)
"stream.reassembly_overlap_different_data" is raised, as Suricata does.

Data past `depth` bytes (0 = unlimited) is dropped, `past_depth` set and
"stream.reassembly_depth_reached" raised once.

Anomalies are appended to the `events` list the caller passes (the packet's `events`).
"""
from __future__ import annotations

_HALF = 1 << 31
_MASK = 0xFFFFFFFF
MAX_OOO_SEGMENTS = 1024   # buffered segments per direction (bounds the work per segment)
OVERLAP = "stream.reassembly_overlap_different_data"
OOO_LIMIT = "stream.reassembly_ooo_limit_reached"
DEPTH = "stream.reassembly_depth_reached"


class Stream:
    __slots__ = ("base", "next", "ooo", "ooo_bytes", "depth", "past_depth", "max_ooo",
                 "context", "context_len", "_window")

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
        self._window = b""             # context before the last add's bytes, then those

    def add(self, seq: int, data: bytes, events: list[str] | None = None) -> bytes:
        """Feed one segment; the bytes that became in-order (possibly none)."""
        if self.past_depth:
            return b""
        nxt = self.next
        diff = (seq - self.base - nxt) & _MASK
        if diff >= _HALF:
            diff -= 1 << 32
        rel = nxt + diff
        end = rel + len(data)
        if rel < nxt and events is not None and self._differs(rel, data):
            events.append(OVERLAP)
        if end <= nxt:
            return b""                 # retransmission (or keep-alive)
        if rel > nxt:
            old = self.ooo.get(rel)
            if old is not None:
                if events is not None and not (old.startswith(data) or data.startswith(old)):
                    events.append(OVERLAP)
                # The first received keeps its bytes, but a longer one's tail is new data:
                # the guest's stack keeps it, so dropping it would leave a hole the sender
                # never fills and the rest of the stream uninspected.
                tail = data[len(old):]
                if tail and self.ooo_bytes + len(tail) <= self.max_ooo:
                    self.ooo[rel] = old + tail
                    self.ooo_bytes += len(tail)
                elif tail and events is not None:
                    events.append(OOO_LIMIT)
            elif self.ooo_bytes + len(data) <= self.max_ooo and len(self.ooo) < MAX_OOO_SEGMENTS:
                self.ooo[rel] = data
                self.ooo_bytes += len(data)
            elif events is not None:
                events.append(OOO_LIMIT)
            return b""
        out = data[nxt - rel:] if rel < nxt else data
        nxt = end
        if self.ooo:
            first = self.next          # stream offset of out[0]
            parts = [out]
            while True:
                ready = [r for r in self.ooo if r <= nxt]
                if not ready:
                    break
                for r in sorted(ready):
                    seg = self.ooo.pop(r)
                    self.ooo_bytes -= len(seg)
                    if r < nxt and events is not None:
                        hi = min(nxt, r + len(seg))
                        if seg[:hi - r] != b"".join(parts)[r - first:hi - first]:
                            events.append(OVERLAP)
                    if r + len(seg) > nxt:
                        parts.append(seg[nxt - r:])
                        nxt = r + len(seg)
            out = b"".join(parts)
        if self.depth and nxt >= self.depth:
            out = out[:len(out) - (nxt - self.depth)]
            nxt = self.depth
            self.past_depth = True
            self.ooo.clear()
            if events is not None:
                events.append(DEPTH)
        self.next = nxt
        buf = self.context + out if self.context else out
        self.context = buf[-self.context_len:] if self.context_len else b""
        self._window = buf
        return out

    def window(self) -> bytes:
        """The bytes the last `add` returned, preceded by up to `context_len` earlier ones
        (so a pattern split across segments is seen whole)."""
        return self._window

    def _differs(self, rel: int, data: bytes) -> bool:
        """Do `data`'s bytes at stream offset `rel` differ from those already reassembled
        (as far as the kept context reaches)?"""
        ctx = self.context
        start = self.next - len(ctx)      # stream offset of ctx[0]
        lo, hi = max(rel, start), min(rel + len(data), self.next)
        if lo >= hi:
            return False
        return data[lo - rel:hi - rel] != ctx[lo - start:hi - start]
