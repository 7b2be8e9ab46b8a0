"""The two HTTP parsers side by side in one run: libhtp (netsec.app.htp, through cffi) and
the Python one (netsec.app.http), on the evasion corpus of tests/http_evasion.py.

    .venv/bin/python bench/http_parsers.py [--repeat N] [--json bench/results/http_parsers.json]

Part 1, agreement: every shape fed byte-identically to both parsers, whole, one byte per
feed and in random splits, each compared with libhtp fed whole (the reference: libhtp's
semantics as Suricata runs it). Part 2, throughput: the whole corpus through each parser,
per segmenting, in MB/s of HTTP bytes and transactions/s (best of N runs, after a warm-up
that also builds the binding). Part 3, in the flow table: the corpus as TCP connections
(handshake, segments of up to 64 bytes, FINs), packets/s through FlowTable.process with
each parser, which is what the engine pays. The figures decide
`app-layer.protocols.http.parser`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from netsec.app import htp  # noqa: E402
from netsec.decode import decode  # noqa: E402
from netsec.flow import FlowConfig, FlowTable  # noqa: E402
from tests.http_evasion import PARSERS, SHAPES, diff, feed, run, segmentings  # noqa: E402
from tests.unit.test_flow_table import Session  # noqa: E402

SEGMENTINGS = ("whole", "1-byte", "random")


def agreement() -> list[dict]:
    rows = []
    for shape in SHAPES:
        ref = run(shape, "libhtp", "whole")
        row: dict = {"shape": shape.name}
        for parser in PARSERS:
            for seg in SEGMENTINGS:
                row[f"{parser}/{seg}"] = diff(ref, run(shape, parser, seg))
        rows.append(row)
    return rows


def throughput(repeat: int) -> list[dict]:
    size = sum(len(s.client) + len(s.server) for s in SHAPES)
    out = []
    for seg in SEGMENTINGS:
        split = segmentings()[seg]
        for name, make in PARSERS.items():
            best = float("inf")
            txs = 0
            for _ in range(repeat + 1):   # the first run warms up
                t0 = time.perf_counter()
                txs = sum(1 for s in SHAPES for o in feed(make(), s, split)
                          if not isinstance(o, tuple) and o.record is not None)
                best = min(best, time.perf_counter() - t0)
            out.append({"segmenting": seg, "parser": name, "bytes": size, "seconds": best,
                        "mb_per_s": size / best / 1e6, "tx_per_s": txs / best})
    return out


def connections() -> list[bytes]:
    """Every shape as one TCP connection's frames, one after the other on the same ports
    (a closed flow's 5-tuple is taken by the next SYN, as in Suricata)."""
    split = segmentings()["random"]
    frames: list[bytes] = []
    for shape in SHAPES:
        s = Session(None)   # type: ignore[arg-type]   # used for its packets only
        steps = [(True, "S", b""), (False, "SA", b""), (True, "A", b"")]
        steps += [(True, "PA", seg) for seg in split(shape.client)]
        steps += [(False, "PA", seg) for seg in split(shape.server)]
        steps += [(False, "FA", b""), (True, "FA", b"")]
        frames += [s.packet(to_server, flags, data).raw for to_server, flags, data in steps]
    return frames


def flow_table(repeat: int) -> list[dict]:
    frames = connections()
    out = []
    for name in PARSERS:
        best = float("inf")
        for _ in range(repeat + 1):
            pkts = [decode(1, 100.0 + i * 1e-3, i, f) for i, f in enumerate(frames)]
            table = FlowTable(FlowConfig(http_parser=name))
            t0 = time.perf_counter()
            for pkt in pkts:
                table.process(pkt)  # type: ignore[arg-type]
            table.flush()
            best = min(best, time.perf_counter() - t0)
        out.append({"parser": name, "packets": len(frames), "seconds": best,
                    "pps": len(frames) / best})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=REPO / "bench/results/http_parsers.json")
    args = ap.parse_args()
    print(f"{htp.version()} against the Python parser; reference: libhtp fed whole")
    rows = agreement()
    print(f"\n{'shape':36} " + " ".join(f"{p + '/' + s:>15}" for p in PARSERS
                                         for s in SEGMENTINGS))
    for r in rows:
        print(f"{r['shape']:36} " + " ".join(
            f"{'same' if not r[f'{p}/{s}'] else 'DIFFERS':>15}"
            for p in PARSERS for s in SEGMENTINGS))
    for r in rows:
        for key in (k for k in r if k != "shape"):
            for d in r[key][:2]:
                print(f"  {r['shape']} [{key}]: {d}")
    same = {k: sum(not r[k] for r in rows) for k in rows[0] if k != "shape"}
    print("\nagreeing with libhtp (whole): " +
          ", ".join(f"{k} {v}/{len(rows)}" for k, v in same.items()))
    perf = throughput(args.repeat)
    print(f"\n{'segmenting':10} {'parser':8} {'MB/s':>8} {'tx/s':>9}")
    for p in perf:
        print(f"{p['segmenting']:10} {p['parser']:8} {p['mb_per_s']:8.2f} {p['tx_per_s']:9.0f}")
    flows = flow_table(args.repeat)
    print(f"\nflow table, {flows[0]['packets']} packets: " +
          ", ".join(f"{f['parser']} {f['pps']:,.0f} packets/s" for f in flows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"libhtp": htp.version(), "agreement": rows,
                                     "agreeing": same, "throughput": perf,
                                     "flow_table": flows}, indent=1) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
