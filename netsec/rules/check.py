"""The `--check-rules` report: per file loaded/skipped/disabled, totals, top skip reasons.

`format_text` prints a table (and, with `verbose`, every skipped rule with file:line and
reason); `format_json` gives the same as one JSON document.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from typing import Any

from netsec.rules.loader import RuleSet

# Reasons without their per-rule detail ("pcre: Python cannot compile /x/: ..." -> "pcre: ...")
_DETAIL = re.compile(r"^([^:]+):\s*([A-Za-z][A-Za-z ,'_-]*[A-Za-z]).*$", re.S)


def reason_kind(reason: str) -> str:
    m = _DETAIL.match(reason)
    return f"{m.group(1)}: {m.group(2)}" if m else reason


def summary(rs: RuleSet, top: int = 10) -> dict[str, Any]:
    loaded, skipped, disabled = rs.loaded, len(rs.skipped), rs.disabled
    total = loaded + skipped
    return {
        "files": [{"file": f.file, "loaded": f.loaded, "skipped": len(f.skipped),
                   "disabled": f.disabled} for f in rs.report],
        "total": {"loaded": loaded, "skipped": skipped, "disabled": disabled,
                  "loaded_share": round(loaded / total, 4) if total else 1.0,
                  "parse_seconds": round(rs.parse_seconds, 3)},
        "top_reasons": [{"reason": r, "rules": n} for r, n in
                        Counter(reason_kind(s.reason) for s in rs.skipped).most_common(top)],
        "skipped": [{"sid": s.sid, "file": s.file, "line": s.line, "reason": s.reason}
                    for s in rs.skipped],
    }


def format_json(rs: RuleSet, top: int = 10) -> str:
    return json.dumps(summary(rs, top), indent=2)


def format_text(rs: RuleSet, top: int = 10, verbose: bool = False) -> str:
    s = summary(rs, top)
    names = [os.path.basename(f["file"]) for f in s["files"]]
    width = max([len(n) for n in names] + [len("TOTAL")])
    lines = [f"{'FILE':<{width}}  {'LOADED':>7}  {'SKIPPED':>7}  {'DISABLED':>8}"]
    for name, f in zip(names, s["files"], strict=True):
        lines.append(f"{name:<{width}}  {f['loaded']:>7}  {f['skipped']:>7}  {f['disabled']:>8}")
    t = s["total"]
    lines.append(f"{'TOTAL':<{width}}  {t['loaded']:>7}  {t['skipped']:>7}  {t['disabled']:>8}")
    lines.append(f"loaded {t['loaded_share']:.2%} of enabled rules in {t['parse_seconds']:.2f} s")
    if s["top_reasons"]:
        lines.append("top reasons for skipping:")
        lines.extend(f"  {r['rules']:>6}  {r['reason']}" for r in s["top_reasons"])
    if verbose:
        lines.extend(f"{k['file']}:{k['line']}: sid {k['sid']}: {k['reason']}"
                     for k in s["skipped"])
    return "\n".join(lines)
