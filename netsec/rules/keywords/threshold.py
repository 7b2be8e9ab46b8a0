"""threshold and detection_filter, parsed into a ThresholdSpec the engine applies."""
from __future__ import annotations

from netsec.rules.errors import RuleError
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder, ThresholdSpec

_URL = DOCS + "thresholding.html"
TRACKS = {"by_src", "by_dst", "by_rule", "by_both", "by_flow"}


def parse_spec(value: str | None, keyword: str, want_type: bool) -> ThresholdSpec:
    fields: dict[str, str] = {}
    for part in (value or "").split(","):
        key, _, val = part.strip().partition(" ")
        if key in fields or key not in ("type", "track", "count", "seconds"):
            raise RuleError(f"{keyword}: bad or repeated field {part.strip()!r}")
        fields[key] = val.strip()
    need = {"track", "count", "seconds"} | ({"type"} if want_type else set())
    if set(fields) != need:
        raise RuleError(f"{keyword}: want {', '.join(sorted(need))}")
    kind = fields.get("type", "detection_filter")
    if want_type and kind not in ("limit", "threshold", "both"):
        raise RuleError(f"{keyword}: type must be limit, threshold or both, got {kind!r}")
    if fields["track"] not in TRACKS:
        raise RuleError(f"{keyword}: bad track {fields['track']!r}")
    if not fields["count"].isdigit() or not fields["seconds"].isdigit():
        raise RuleError(f"{keyword}: count and seconds must be integers")
    return ThresholdSpec(kind, fields["track"], int(fields["count"]), int(fields["seconds"]))


def setup_threshold(b: Builder, value: str | None) -> None:
    if b.rule.threshold is not None:
        raise RuleError("threshold: given twice")
    b.rule.threshold = parse_spec(value, "threshold", True)


def setup_detection_filter(b: Builder, value: str | None) -> None:
    if b.rule.detection_filter is not None:
        raise RuleError("detection_filter: given twice")
    b.rule.detection_filter = parse_spec(value, "detection_filter", False)


KEYWORDS = (
    Keyword("threshold", setup_threshold, "limit or require repeated alerts",
            _URL + "#threshold"),
    Keyword("detection_filter", setup_detection_filter, "alert only past a rate",
            _URL + "#detection-filter"),
)
