"""IP fragment reassembly for IPv4 and IPv6.

Overlap policy ("bsd", Suricata's default): bytes are laid down in order of fragment offset,
ties in arrival order, and a byte already laid down is never replaced — so where fragments
overlap, the one starting lowest wins, and between fragments at the same offset the first
received wins. A fragment overlapping one already held raises `ipv4.frag_overlap` /
`ipv6.frag_overlap` on its own packet (as Suricata's DefragInsertFrag), so the anomaly is
seen even when the datagram never completes.

A datagram is tracked until complete or until `timeout` seconds of capture time pass since
its first fragment (Suricata's default 60 s); at most `max_datagrams` are tracked, the oldest
evicted first, and a fragment that would take a datagram past 65535 bytes (its IP header
counted: `limit` is what is left for the fragmentable part) is ignored with
`frag_pkt_too_large`, as Suricata does; the datagram's other fragments still reassemble.
"""
from __future__ import annotations

MAX_DATAGRAM = 65535
MAX_FRAGMENTS = 256
# (IP version, source and destination address bytes, IP id, IPv4 protocol or 0 for IPv6)
FragKey = tuple[int, bytes, bytes, int, int]


class _Datagram:
    __slots__ = ("first_ts", "frags", "total")

    def __init__(self, ts: float) -> None:
        self.first_ts = ts
        self.frags: list[tuple[int, int, bytes]] = []  # (offset, arrival, data)
        self.total = -1                                   # known once the last fragment came


class Defragmenter:
    """Collects fragments keyed by (version, src, dst, id, proto); sans-IO, time from packets."""

    def __init__(self, timeout: float = 60.0, max_datagrams: int = 65535) -> None:
        self.timeout = timeout
        self.max_datagrams = max_datagrams
        self._datagrams: dict[FragKey, _Datagram] = {}

    def add(self, key: FragKey, ts: float, offset: int, more: bool, data: bytes,
            events: list[str], prefix: str, limit: int = MAX_DATAGRAM) -> bytes | None:
        """Add one fragment; the reassembled L4 payload when the datagram is complete."""
        self._expire(ts)
        end = offset + len(data)
        if end > limit:
            # ignored, as Suricata's DefragInsertFrag: the datagram's other fragments stand
            events.append(prefix + ".frag_pkt_too_large")
            return None
        dg = self._datagrams.get(key)
        if dg is None:
            if len(self._datagrams) >= self.max_datagrams:
                del self._datagrams[next(iter(self._datagrams))]
            dg = self._datagrams[key] = _Datagram(ts)
        if len(dg.frags) >= MAX_FRAGMENTS:
            events.append(prefix + ".frag_ignored")
            return None
        if any(o < end and offset < o + len(d) for o, _, d in dg.frags):
            events.append(prefix + ".frag_overlap")
        dg.frags.append((offset, len(dg.frags), data))
        if not more:
            dg.total = end
        if dg.total < 0:
            return None
        frags = sorted(dg.frags)
        covered = 0
        for off, _, chunk in frags:
            if off > covered:
                return None  # a hole remains
            covered = max(covered, off + len(chunk))
        if covered < dg.total:
            return None
        del self._datagrams[key]
        out = bytearray(dg.total)
        filled = 0
        for off, _, chunk in frags:
            end = min(off + len(chunk), dg.total)
            if end > filled:
                start = max(off, filled)
                out[start:end] = chunk[start - off:end - off]
                filled = end
        return bytes(out)

    def _expire(self, now: float) -> None:
        while self._datagrams:
            key, dg = next(iter(self._datagrams.items()))
            if now - dg.first_ts < self.timeout:
                return
            del self._datagrams[key]

    def __len__(self) -> int:
        return len(self._datagrams)
