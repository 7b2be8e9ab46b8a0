"""How fast domains come up: dom0's toolstack, the ns backend, xenstored and the agents, real.

Measures, with sys-sec running:
- one guest at a time: from the start call (create included) to both ends of its vif
  Connected, and its destroy;
- N guests started at once (default 20): each one's latency, and that none failed;
- memory per domain: the domain cgroup's memory.current, averaged over the N, and over
  all the domains held;
- holding many domains at once (default 100), started in batches.

Targets (issue 15): one domain p50 <= 100 ms and p95 <= 150 ms; 20 at once without an
error; 100 held at once at <= 20 MiB each.
Needs root. Prints a table; --json prints the same as JSON; results go to
bench/results/domains.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dom0.backends._ns_cgroup import DomainCgroup  # noqa: E402
from dom0.backends.ns import NsBackend  # noqa: E402
from dom0.config import DomainSpec  # noqa: E402
from dom0.dom0d import ensure_xenstored  # noqa: E402
from dom0.toolstack import Toolstack  # noqa: E402

RESULTS = REPO / "bench" / "results" / "domains.json"
FIRST_DOMID = 30000
ONE_P50_MS, ONE_P95_MS, HELD_MIB = 100, 150, 20


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def progress(text: str) -> None:
    print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


def mean_memory_mib(ts: Toolstack, names: list[str]) -> float | None:
    memory = [m for g in names if g in ts.domains
              and (m := cgroup_memory(ts.domains[g].domid)) is not None]
    return statistics.mean(memory) / 2**20 if memory else None


def cgroup_memory(domid: int) -> int | None:
    for d in DomainCgroup(domid).dirs():
        for name in ("memory.current", "memory.usage_in_bytes"):
            if (d / name).exists():
                return int((d / name).read_text())
    return None


async def bench(args: argparse.Namespace, work: Path) -> dict:
    guests = [f"g{i:03d}" for i in range(max(args.hold, args.together))]
    specs = {"sys-sec": DomainSpec(name="sys-sec", kind="sys-sec", memory_mb=256)}
    specs |= {g: DomainSpec(name=g, kind="disposable", memory_mb=64, policy="internet")
              for g in guests}
    store, xs_rundir = await ensure_xenstored(work / "xenstored", work / "state")
    ts = Toolstack(specs, store, {"ns": NsBackend(work / "ns")}, xs_rundir,
                   first_domid=FIRST_DOMID)
    out: dict = {}
    try:
        await ts.start("sys-sec")
        one, destroy = [], []
        for i in range(args.rounds):
            progress(f"one at a time: {i + 1}/{args.rounds}")
            t0 = time.perf_counter()
            await ts.start(guests[0])
            one.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await ts.destroy(guests[0])
            destroy.append(time.perf_counter() - t0)
        out["one"] = {"p50_ms": pct(one, 50) * 1e3, "p95_ms": pct(one, 95) * 1e3,
                      "rounds": len(one)}
        out["destroy"] = {"p50_ms": pct(destroy, 50) * 1e3, "p95_ms": pct(destroy, 95) * 1e3}

        progress(f"{args.together} at once")

        async def timed(name: str) -> float:
            t0 = time.perf_counter()
            await ts.start(name)
            return time.perf_counter() - t0
        t0 = time.perf_counter()
        results = await asyncio.gather(*(timed(g) for g in guests[:args.together]),
                                       return_exceptions=True)
        wall = time.perf_counter() - t0
        ok = [r for r in results if isinstance(r, float)]
        errors = [repr(r) for r in results if not isinstance(r, float)]
        out["together"] = {"n": args.together, "errors": errors, "wall_s": wall,
                           "p50_ms": pct(ok, 50) * 1e3 if ok else None,
                           "p95_ms": pct(ok, 95) * 1e3 if ok else None}
        out["memory_per_domain_mib"] = mean_memory_mib(ts, guests[:args.together])

        held_errors: list[str] = []
        for start in range(args.together, args.hold, args.batch):
            batch = guests[start:min(args.hold, start + args.batch)]
            progress(f"holding: {start}/{args.hold} running")
            done = await asyncio.gather(*(ts.start(g) for g in batch), return_exceptions=True)
            held_errors += [repr(r) for r in done if isinstance(r, BaseException)]
        running = sum(1 for g in guests if g in ts.domains)
        out["held"] = {"wanted": args.hold, "running": running, "errors": held_errors[:5],
                       "memory_per_domain_mib": mean_memory_mib(ts, guests[:args.hold])}
        progress("tearing down")
    finally:
        for name in [n for n in ts.domains if n != "sys-sec"]:
            await ts.destroy(name)
        if "sys-sec" in ts.domains:
            await ts.destroy("sys-sec")
        await store.close()
        pidfile = work / "xenstored" / "xenstored.pid"
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        progress("")
    return out


def table(r: dict) -> str:
    one, together, held = r["one"], r["together"], r["held"]
    held_mib = held["memory_per_domain_mib"]
    rows = [
        ("one domain: start to vif Connected, p50", f"{one['p50_ms']:.0f} ms",
         f"<= {ONE_P50_MS} ms", one["p50_ms"] <= ONE_P50_MS),
        ("one domain: start to vif Connected, p95", f"{one['p95_ms']:.0f} ms",
         f"<= {ONE_P95_MS} ms", one["p95_ms"] <= ONE_P95_MS),
        ("destroy, p50", f"{r['destroy']['p50_ms']:.0f} ms", "", None),
        (f"{together['n']} at once: p50 / p95",
         f"{together['p50_ms'] or 0:.0f} / {together['p95_ms'] or 0:.0f} ms", "", None),
        (f"{together['n']} at once: errors", str(len(together["errors"])), "0",
         not together["errors"]),
        (f"{together['n']} at once: wall", f"{together['wall_s']:.2f} s", "", None),
        (f"memory per domain (cgroup), {together['n']} at once",
         f"{r['memory_per_domain_mib'] or 0:.1f} MiB", "", None),
        ("domains held at once", f"{held['running']}/{held['wanted']}",
         str(held["wanted"]), held["running"] == held["wanted"]),
        (f"memory per domain (cgroup), {held['wanted']} held", f"{held_mib or 0:.1f} MiB",
         f"<= {HELD_MIB} MiB", held_mib is not None and held_mib <= HELD_MIB),
    ]
    w = max(len(row[0]) for row in rows)
    lines = [f"{'measure':<{w}}  {'result':>14}  {'target':>9}  ok"]
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"{name:<{w}}  {value:>14}  {target:>9}  {mark}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20, help="one-at-a-time starts to time")
    p.add_argument("--together", type=int, default=20, help="guests started at once")
    p.add_argument("--hold", type=int, default=100, help="guests held running at once")
    p.add_argument("--batch", type=int, default=20, help="starts in flight while holding")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/domains.py needs root (namespaces, cgroups, mounts)")
    work = Path(tempfile.mkdtemp(prefix="hwb-", dir="/tmp"))
    try:
        result = asyncio.run(bench(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
