"""sys-sec's file scanners: files/s and MB/s through clamd, YARA and both, one run.

    .venv/bin/python bench/av.py [--quick] [--json bench/results/av.json]

The scanners are the ones sys-sec runs (domains/syssec/antivirus.py): a real clamd started
with sys-sec's generated clamd.conf on the test database of tests/clamd_lab.py (EICAR's
body signature, a custom hash), spoken to by INSTREAM; YARA compiled from the lab's rule;
and the two combined as sys-sec combines them (YARA first, then clamd). Each scans benign
files of 4 KiB, 64 KiB and 1 MiB from one thread, one after another, for the duration;
the 1 MiB scans' own times give the latency (median, p99). Before a scanner is timed it
has to find its own test signature: a scanner that finds nothing would be fast too.

The in-flight rows (root only): a guest downloads a 1 MiB file over HTTP through
hyperwall-ipsd inline on NFQUEUE (tests/filehold_lab.py's namespaces), once with ipsd
scanning files (--clamd-socket on the same clamd, --yara-dir) and once on the same wall with
no scanner; each download is timed in the guest from its request to the response's last
byte, and the added delay is the difference of the medians: how much longer the packet that
completes the file is held while the scanners answer. A positive control first: with
scanning on, the EICAR file never arrives whole. Without root the rows say so.

No targets in issue 16: the figures are printed as INFO. Progress goes to stderr; clamd is
stopped on the way out, Ctrl-C included.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
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
from tests.clamd_lab import EICAR, YARA_MARKER, Clamd, running_clamd, write_yara  # noqa: E402
from tests.filehold_lab import PORT, PY, SERVER, inflight_wall  # noqa: E402

RESULTS = REPO / "bench" / "results" / "av.json"
SIZES = {"4 KiB": 4 << 10, "64 KiB": 64 << 10, "1 MiB": 1 << 20}
LATENCY_SIZE = "1 MiB"
INFLIGHT_SIZE = 1 << 20
# Run in the guest: each download timed from the request to the last byte, and its length.
TIMED_GET = r"""
import json, socket, sys, time
host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
out = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=10)
    t0 = time.perf_counter()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got, last = 0, t0
    try:
        while chunk := s.recv(1 << 16):
            got, last = got + len(chunk), time.perf_counter()
    except OSError:
        pass            # reset: what arrived is what counts
    s.close()
    out.append([last - t0, got])
print(json.dumps(out))
"""


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


def downloads(w: Any, path: str, n: int) -> list[tuple[float, int]]:
    r = w.net.run(w.ns["client"], PY, "-c", TIMED_GET, SERVER, str(PORT), path, str(n),
                  timeout=600)
    return [(t, got) for t, got in json.loads(r.stdout)]


def inflight(clamd: Clamd, yara_dir: Path, tmp: Path, n: int) -> dict[str, Any]:
    """The 1 MiB download through the wall with scanning and without, timed in the guest."""
    www = tmp / "www"
    www.mkdir()
    (www / "big.bin").write_bytes(benign(INFLIGHT_SIZE, 99))
    (www / "eicar.com").write_bytes(EICAR)
    whole = INFLIGHT_SIZE + len(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                                b"Connection: close\r\n\r\n" % INFLIGHT_SIZE)
    out: dict[str, Any] = {"size": INFLIGHT_SIZE, "downloads": n}
    setups = {"scanning": ["--clamd-socket", str(clamd.socket), "--yara-dir", str(yara_dir),
                           "--scan-timeout", "10"],
              "no scanning": [],
              # files reassembled and hashed as with scanning, nothing asked: what of the
              # added delay is the engine's tracking, what the wait for the verdict
              "tracking only": ["--set", "file-store.enabled=yes"]}
    for name, flags in setups.items():
        progress(f"in flight: {n} downloads of 1 MiB, {name}")
        d = tmp / name.replace(" ", "-")
        with inflight_wall(d, www, flags, prefix="hwavb") as w:
            if "--clamd-socket" in flags:
                (_, got), = downloads(w, "/plain/eicar.com", 1)
                if got >= len(EICAR):
                    raise SystemExit("bench/av.py: the EICAR file arrived whole with scanning "
                                     "on; the in-flight hold is not in force")
            times = downloads(w, "/plain/big.bin", 1 + n)[1:]   # the first warms up
        short = [got for _, got in times if got != whole]
        if short:
            raise SystemExit(f"bench/av.py: {name}: a 1 MiB download was cut ({short[0]} of "
                             f"{whole} bytes)")
        secs = [t for t, _ in times]
        eve = d / "log" / "eve.json"
        records = [json.loads(line) for line in eve.read_text().splitlines()] \
            if eve.exists() else []
        tracked = sum(1 for e in records if e.get("event_type") == "fileinfo"
                      and e["fileinfo"].get("size") == INFLIGHT_SIZE)
        out[name] = {"files_tracked": tracked, "median_ms": round(statistics.median(secs) * 1e3, 1),
                     "p99_ms": round(statistics.quantiles(secs, n=100)[98] * 1e3, 1)
                     if len(secs) > 1 else round(secs[0] * 1e3, 1)}
    out["added_ms"] = round(out["scanning"]["median_ms"] - out["no scanning"]["median_ms"], 1)
    out["verdict_wait_ms"] = round(out["scanning"]["median_ms"]
                                   - out["tracking only"]["median_ms"], 1)
    return out


def bench(seconds: float, tmp: Path, downloads_n: int) -> dict[str, dict[str, Any]]:
    yara_dir = write_yara(tmp / "yara")
    yara = YaraScanner.from_dir(yara_dir)
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
        if os.geteuid() == 0:
            results["inflight"] = inflight(clamd, yara_dir, tmp, downloads_n)
        else:
            results["inflight"] = {"skipped": "needs root (namespaces, NFQUEUE)"}
    return results


def table(r: dict[str, dict[str, Any]]) -> str:
    head = f"{'scanner':<13}" + "".join(f"{label + ' files/s':>16}{'MB/s':>8}"
                                        for label in SIZES)
    head += f"{'1 MiB med ms':>14}{'p99 ms':>8}"
    lines = [head, "-" * len(head)]
    for name, by_size in r.items():
        if name == "inflight":
            continue
        cells = "".join(f"{m['files_s']:>16}{m['mb_s']:>8}" for m in by_size.values())
        lat = by_size[LATENCY_SIZE]
        lines.append(f"{name:<13}{cells}{lat['median_ms']:>14}{lat['p99_ms']:>8}")
    lines.append("")
    f = r["inflight"]
    if "skipped" in f:
        lines.append(f"in flight: {f['skipped']}")
    else:
        lines.append(f"a 1 MiB HTTP download through ipsd inline, request to last byte in the "
                     f"guest ({f['downloads']} each):")
        for name in ("no scanning", "tracking only", "scanning"):
            lines.append(f"  {name:<13} median {f[name]['median_ms']:>7} ms   "
                         f"p99 {f[name]['p99_ms']:>7} ms   fileinfo records of the 1 MiB "
                         f"file: {f[name]['files_tracked']}")
        lines.append(f"  added delay before the file's last packet is released: "
                     f"{f['added_ms']} ms (median), of which waiting for the verdict "
                     f"{f['verdict_wait_ms']} ms (scanning against tracking only)")
    lines.append("one scanning thread; clamd by INSTREAM on its Unix socket, YARA in process")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="0.5 s per scanner and size")
    ap.add_argument("--seconds", type=float, help="per scanner and size (default 3)")
    ap.add_argument("--downloads", type=int, help="1 MiB downloads timed each way "
                    "(default 20; --quick 5)")
    ap.add_argument("--json", type=Path, default=RESULTS, help=f"default {RESULTS}")
    args = ap.parse_args()
    seconds = args.seconds or (0.5 if args.quick else 3.0)
    downloads_n = args.downloads or (5 if args.quick else 20)
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="hwav-") as tmp:
        try:
            results = bench(seconds, Path(tmp), downloads_n)
        except KeyboardInterrupt:
            progress("interrupted: clamd is stopped")
            return 130
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "date": started.isoformat(timespec="seconds"), "seconds": seconds, "threads": 1,
        "scanners": {k: v for k, v in results.items() if k != "inflight"},
        "inflight": results["inflight"]}, indent=2) + "\n")
    progress(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
