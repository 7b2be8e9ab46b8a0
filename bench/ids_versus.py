"""bench/ids.py's cases on two revisions side by side: packets/s here against a base.

    .venv/bin/python bench/ids_versus.py --base 4a76aad [--quick] [--rounds 3]
        [--rules none 1000 et-open] [--backend hyperscan python] [--json FILE]

The base revision is checked out with `git worktree` into a temporary folder, beside a
link to this checkout's ../shared, so both trees read the same ET Open. Both run the same
pcap, each case in a child process running this checkout's bench/ids.py (one harness, so
only the engine differs) on that tree's code, alternating between
the trees round after round, and the best round of each is kept: load on the machine that
comes and goes hits both trees alike, which a before run and an after run hours apart
would not. The base runs with this checkout's interpreter and libraries.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from ids import RULE_SETS  # noqa: E402


def case(tree: Path, pcap: Path, ruleset: str, backend: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ids.py"), "--case", ruleset, backend, str(pcap),
         "--tree", str(tree)], capture_output=True, text=True, check=False, cwd=tree)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {ruleset}/{backend} failed:\n{out.stderr.strip()[-800:]}")
    return json.loads(out.stdout)


def best(runs: list[dict]) -> dict:
    return max(runs, key=lambda r: r["pps"])


def table(rows: list[dict], base: str) -> str:
    head = (f"{'rules':<9}{'backend':<11}{base + ' pkt/s':>16}{'now pkt/s':>11}{'now/base':>10}"
            f"{'base load s':>13}{'now load s':>12}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['rules']:<9}{r['backend']:<11}{r['base']['pps']:>16}"
                     f"{r['now']['pps']:>11}{r['ratio']:>10.2f}{r['base']['load_s']:>13}"
                     f"{r['now']['load_s']:>12}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="the git revision to compare against")
    ap.add_argument("--quick", action="store_true", help="20k packets instead of 200k")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rules", nargs="+", choices=RULE_SETS, default=list(RULE_SETS))
    ap.add_argument("--backend", nargs="+", choices=("hyperscan", "python"),
                    default=["hyperscan", "python"])
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "ids_versus.json")
    args = ap.parse_args()
    from ids_pcap import mixed_pcap

    pcap = mixed_pcap(20_000 if args.quick else 200_000)
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.base],
                         capture_output=True, text=True, check=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hw-bench-") as tmp:
        (Path(tmp) / "shared").symlink_to((REPO.parent / "shared").resolve())
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach",
                        str(base_tree), rev], check=True)
        try:
            for ruleset in args.rules:
                for backend in args.backend:
                    runs: dict[str, list[dict]] = {"base": [], "now": []}
                    for n in range(args.rounds):
                        for name, tree in (("base", base_tree), ("now", REPO)):
                            print(f"{ruleset}/{backend}: round {n + 1}/{args.rounds}, {name}",
                                  file=sys.stderr)
                            runs[name].append(case(tree, pcap, ruleset, backend))
                    b, now = best(runs["base"]), best(runs["now"])
                    rows.append({"rules": ruleset, "backend": backend, "base": b, "now": now,
                                 "ratio": round(now["pps"] / b["pps"], 3), "runs": runs})
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(base_tree)], check=False)
    print(table(rows, rev))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"base": rev, "pcap": str(pcap), "rows": rows},
                                    indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
