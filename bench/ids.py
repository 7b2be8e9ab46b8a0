"""IDS throughput: packets/s and Mbit/s through the whole engine on a mixed pcap.

    .venv/bin/python bench/ids.py [--quick] [--json bench/results/ids.json]

Cases: no rules, 1,000 ET Open rules (every Nth rule that loads, deterministic), all of
ET Open; each with the Hyperscan and the pure-Python prefilter, side by side. Every case
runs in a child process so its peak RSS (ru_maxrss) is its own. Measured per case: rule
load-and-compile time, then one pass over the pcap (read, decode, flow, detect). Packets/s
is per core: the pass's CPU time (the engine is one thread), so a machine busy with other
work slows the wall clock (reported too) but not the figure.
Targets (printed, not asserted): >= 100,000 packets/s with 1,000 rules on one core;
ET Open loaded and compiled in <= 15 s.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

ET_OPEN = Path(os.environ.get("HYPERWALL_SHARED", REPO.parent / "shared")) / "data" / "et-open"
TARGET_PPS, TARGET_LOAD_S = 100_000, 15.0
RULE_SETS = ("none", "1000", "et-open")


def et_rule_files() -> list[Path]:
    return sorted(ET_OPEN.glob("*.rules"))


def sample(rules: list, n: int) -> list:
    step = max(1, len(rules) // n)
    return rules[::step][:n]


def run_case(pcap: Path, ruleset: str, backend: str) -> dict:
    """One case in this process; prints nothing but its result."""
    import netsec.engine as engine_module
    from netsec.engine import Engine, EngineConfig
    from netsec.flow import FlowConfig, FlowTable
    from netsec.pcap import read_packets
    from netsec.rules import load_rules

    t0 = time.perf_counter()
    rules: list = []
    if ruleset != "none":
        rules = load_rules(et_rule_files(), None, ET_OPEN / "classification.config").rules
        if ruleset == "1000":
            rules = sample(rules, 1000)
    engine = Engine(rules, FlowTable(FlowConfig(checksums=False)),
                    EngineConfig(prefilter=backend))
    settle = getattr(engine_module, "settle_heap", None)   # as the programs do, where the
    if settle:                                             # tree has it (not the base)
        settle()
    load_s = time.perf_counter() - t0
    t1, c1 = time.perf_counter(), time.process_time()
    nbytes = 0
    process = engine.process
    for pkt in read_packets(pcap):
        nbytes += len(pkt.raw)
        process(pkt)
        engine.take_events()
    run_s, cpu_s = time.perf_counter() - t1, time.process_time() - c1
    pkts = engine.counters.pkts
    return {"rules": ruleset, "backend": engine.detector.backend, "rule_count": len(rules),
            "load_s": round(load_s, 3), "run_s": round(run_s, 3), "cpu_s": round(cpu_s, 3),
            "packets": pkts, "pps": round(pkts / cpu_s), "wall_pps": round(pkts / run_s),
            "mbit_s": round(nbytes * 8 / cpu_s / 1e6, 1),
            "alerts": engine.counters.alerts,
            "tree": str(Path(sys.modules["netsec"].__file__ or "").parents[1]),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def child(pcap: Path, ruleset: str, backend: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--case", ruleset, backend, str(pcap)],
        capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"rules": ruleset, "backend": backend, "error": out.stderr.strip()[-400:]}
    return json.loads(out.stdout)


def table(results: list[dict]) -> str:
    head = f"{'rules':<9}{'backend':<11}{'#rules':>7}{'load s':>8}{'pkt/s':>10}" \
           f"{'Mbit/s':>8}{'alerts':>8}{'RSS MB':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['rules']:<9}{r['backend']:<11} ERROR {r['error'][-120:]}")
            continue
        lines.append(f"{r['rules']:<9}{r['backend']:<11}{r['rule_count']:>7}{r['load_s']:>8}"
                     f"{r['pps']:>10}{r['mbit_s']:>8}{r['alerts']:>8}{r['max_rss_mb']:>8}")
    return "\n".join(lines)


def verdicts(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        if "error" in r:
            continue
        if r["rules"] == "1000":
            ok = r["pps"] >= TARGET_PPS
            out.append(f"{'PASS' if ok else 'FAIL'} {r['backend']}: {r['pps']} pkt/s with "
                       f"1,000 rules (target >= {TARGET_PPS})")
        if r["rules"] == "et-open":
            ok = r["load_s"] <= TARGET_LOAD_S
            out.append(f"{'PASS' if ok else 'FAIL'} {r['backend']}: ET Open loaded and "
                       f"compiled in {r['load_s']} s (target <= {TARGET_LOAD_S} s)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20k packets instead of 200k")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "ids.json")
    ap.add_argument("--case", nargs=3, metavar=("RULES", "BACKEND", "PCAP"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--tree", type=Path, help=argparse.SUPPRESS)   # whose netsec a case runs
    args = ap.parse_args()
    if args.tree:
        sys.path.insert(0, str(args.tree.resolve()))
    if args.case:
        print(json.dumps(run_case(Path(args.case[2]), args.case[0], args.case[1])))
        return 0
    from ids_pcap import mixed_pcap

    from netsec.detect.prefilter import hyperscan

    pcap = mixed_pcap(20_000 if args.quick else 200_000)
    backends = (["hyperscan"] if hyperscan else []) + ["python"]
    rulesets = RULE_SETS if ET_OPEN.is_dir() else ("none",)
    results = []
    for ruleset in rulesets:
        for backend in backends:
            print(f"running {ruleset} rules with the {backend} prefilter ...", file=sys.stderr)
            results.append(child(pcap, ruleset, backend))
    print(table(results))
    for line in verdicts(results):
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"pcap": str(pcap), "results": results}, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
