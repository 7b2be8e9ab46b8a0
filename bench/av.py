"""sys-sec's file scanners: files/s and MB/s through clamd, YARA and both, one run.

    .venv/bin/python bench/av.py [--quick] [--json bench/results/av.json]

The scanners are the ones sys-sec runs (domains/syssec/antivirus.py): a real clamd started
with sys-sec's generated clamd.conf on the test database of tests/clamd_lab.py (EICAR's
body signature, a custom hash), spoken to by INSTREAM; YARA compiled from the lab's rule;
and the two combined as sys-sec combines them (YARA first, then clamd). Each scans benign
files of 4 KiB, 64 KiB and 1 MiB from one thread, one after another, for the duration;
the 1 MiB scans' own times give the latency (median, p99). Before a scanner is timed it
has to find its own test signature: a scanner that finds nothing would be fast too.

The in-flight row (the added delay before a 1 MB file's last packet is released, beside the
same download with no scanning) needs sys-sec's in-flight verdict hold
(domains/syssec/filehold.py), which is not in this tree yet: the row says so.

No targets in issue 16: the figures are printed as INFO. Progress goes to stderr; clamd is
stopped on the way out, Ctrl-C included.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from datapath import progress  # noqa: E402

from domains.syssec.antivirus import CombinedScanner, YaraScanner  # noqa: E402
from netsec.filescan import FileScanner, Outcome  # noqa: E402
from tests.clamd_lab import EICAR, YARA_MARKER, running_clamd, write_yara  # noqa: E402

RESULTS = REPO / "bench" / "results" / "av.json"
SIZES = {"4 KiB": 4 << 10, "64 KiB": 64 << 10, "1 MiB": 1 << 20}
LATENCY_SIZE = "1 MiB"
HOLD = "pending: needs the in-flight hold (domains/syssec/filehold.py)"


def benign(size: int, seed: int) -> bytes:
    """Incompressible bytes: no scanner gets to skip them as padding."""
    return random.Random(seed).randbytes(size)


def positive_control(name: str, scanner: FileScanner, infected: list[bytes]) -> None:
    for sample in infected:
        r = scanner.scan(sample, "control")
        if r.outcome is not Outcome.INFECTED:
            raise SystemExit(f"bench/av.py: {name} did not find its test signature "
                             f"({r.outcome.value} {r.error}); nothing to measure")


def measure(scanner: FileScanner, size: int, seconds: float) -> dict[str, Any]:
    # a few different files, so no cache keyed on content answers for the scanner
    files = [benign(size, seed) for seed in range(8)]
    times: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end or len(times) < 5:
        data = files[len(times) % len(files)]
        t0 = time.perf_counter()
        r = scanner.scan(data, "bench.bin")
        times.append(time.perf_counter() - t0)
        if r.outcome is not Outcome.CLEAN:
            raise SystemExit(f"bench/av.py: a benign {size}-byte file was "
                             f"{r.outcome.value} {r.error}")
    total = sum(times)
    return {"files": len(times), "files_s": round(len(times) / total, 1),
            "mb_s": round(len(times) * size / total / 1e6, 1),
            "median_ms": round(statistics.median(times) * 1e3, 2),
            "p99_ms": round(statistics.quantiles(times, n=100)[98] * 1e3, 2)}


def bench(seconds: float, tmp: Path) -> dict[str, dict[str, Any]]:
    yara = YaraScanner.from_dir(write_yara(tmp / "yara"))
    marked = b"." * 100 + YARA_MARKER
    # the lab prints clamd's log as it stops it; the table is stdout's
    with contextlib.redirect_stdout(sys.stderr), running_clamd(tmp / "clamd") as clamd:
        clam = clamd.scanner()
        scanners: dict[str, tuple[FileScanner, list[bytes]]] = {
            "clamav": (clam, [EICAR]),
            "yara": (yara, [marked]),
            "yara+clamav": (CombinedScanner([yara, clam]), [EICAR, marked]),
        }
        results: dict[str, dict[str, Any]] = {}
        for name, (scanner, infected) in scanners.items():
            positive_control(name, scanner, infected)
            results[name] = {}
            for label, size in SIZES.items():
                progress(f"{name}: {label} files for {seconds:g} s")
                results[name][label] = measure(scanner, size, seconds)
    return results


def table(r: dict[str, dict[str, Any]]) -> str:
    head = f"{'scanner':<13}" + "".join(f"{label + ' files/s':>16}{'MB/s':>8}"
                                        for label in SIZES)
    head += f"{'1 MiB med ms':>14}{'p99 ms':>8}"
    lines = [head, "-" * len(head)]
    for name, by_size in r.items():
        cells = "".join(f"{m['files_s']:>16}{m['mb_s']:>8}" for m in by_size.values())
        lat = by_size[LATENCY_SIZE]
        lines.append(f"{name:<13}{cells}{lat['median_ms']:>14}{lat['p99_ms']:>8}")
    lines.append("")
    lines.append(f"added delay before a 1 MB file's last packet is released: {HOLD}")
    lines.append("one scanning thread; clamd by INSTREAM on its Unix socket, YARA in process")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="0.5 s per scanner and size")
    ap.add_argument("--seconds", type=float, help="per scanner and size (default 3)")
    ap.add_argument("--json", type=Path, default=RESULTS, help=f"default {RESULTS}")
    args = ap.parse_args()
    seconds = args.seconds or (0.5 if args.quick else 3.0)
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="hwav-") as tmp:
        try:
            results = bench(seconds, Path(tmp))
        except KeyboardInterrupt:
            progress("interrupted: clamd is stopped")
            return 130
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "date": started.isoformat(timespec="seconds"), "seconds": seconds, "threads": 1,
        "scanners": results, "inflight_hold": HOLD}, indent=2) + "\n")
    progress(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
