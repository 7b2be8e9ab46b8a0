"""`threshold` and `detection_filter`: whether a full rule match becomes an alert.

Semantics follow Suricata's ThresholdHandlePacket (detect-engine-threshold.c): one
counter and window start per (rule, tracker); a match outside the window restarts the
window with a count of 1.

- limit N:      the first N matches of each window alert;
- threshold N:  every Nth match within a window alerts (the count then restarts);
- both N:       the Nth match of a window alerts, once per window;
- detection_filter N: every match after the first N of a window alerts.

Trackers: by_src, by_dst, by_both (the pair), by_rule (one counter), by_flow.
"""
from __future__ import annotations

from typing import Any

from netsec.inspection import Inspection


def tracker_key(track: str, ins: Inspection) -> Any:
    pkt = ins.packet
    if track == "by_src":
        return pkt.src
    if track == "by_dst":
        return pkt.dst
    if track == "by_both":
        return (pkt.src, pkt.dst)
    if track == "by_flow":
        return ins.flow.flow_id if ins.flow is not None else (pkt.src, pkt.dst)
    return None  # by_rule: one counter for the rule


class Thresholds:
    """Counters for every thresholded rule; `allow` is called once per full match."""

    def __init__(self) -> None:
        # (rule key, kind, tracker) -> [window start, count]
        self._state: dict[tuple[Any, str, Any], list[float]] = {}

    def allow(self, rule_key: Any, kind: str, track: str, count: int, seconds: float,
              ins: Inspection) -> bool:
        now = ins.packet.ts
        key = (rule_key, kind, tracker_key(track, ins))
        entry = self._state.get(key)
        if entry is None or now - entry[0] > seconds:
            self._state[key] = [now, 1]
            if kind == "limit":
                return True
            if kind == "detection_filter":
                return count < 1
            return count <= 1  # threshold / both with count 1 alert on the first match
        entry[1] += 1
        n = entry[1]
        if kind == "limit":
            return n <= count
        if kind == "threshold":
            if n >= count:
                entry[1] = 0
                return True
            return False
        if kind == "both":
            return n == count
        return n > count  # detection_filter
