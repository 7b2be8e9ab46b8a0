"""Datapath: a guest's traffic to a server in the simulated internet, four ways, one run.

    sudo .venv/bin/python bench/datapath.py [--quick] [--json bench/results/datapath.json]

Set-ups, each built afresh in its own namespaces (tests/syssec_lab.py: guest -- sys-sec --
far side, the server at 203.0.113.10, allowed.example's address in the simulated world):
  (d) the same three namespaces with forwarding on and no iptables rule at all (the server
      routes the guest's range back): the physical limit on this machine;
  (a) sys-sec's controller with its firewall and NAT in force and no engine (--no-engine);
  (b) the engine inline on NFQUEUE (hyperwall-ipsd under the controller) with 1,000 ET Open
      rules and stream bypass (a flow past the reassembly depth goes back to the kernel);
  (c) the same engine and rules without bypass (`engine_set = ["stream.bypass=no"]`): every
      packet of every flow goes through the engine.
The 1,000 rules are bench/ids.py's: every Nth rule of ET Open that loads.

Measured in each: bulk TCP with iperf3 from the guest (up) and to it (-R, down); short
connections per second (threads in the guest each connecting, reading the server's one
byte, closing, for the duration); request/response latency p50/p99 (64-byte ping-pong over
one connection, TCP_NODELAY). For (b) and (c) the engine's own cost is read around each
measurement: packets it took off the queue and its CPU time (/proc), so a figure below its
target says whether the engine's per-packet CPU bounds it.

Workers (issue 15 item 3): (c) again with 1 and with 2 ipsd workers, bulk only, one iperf3
stream per address pair at once. The firewall's --queue-balance hashes the address pair, so
one pair would keep one worker busy whatever the count: the far side gets PAIR_ADDRESSES
more addresses, each is probed with one TCP connection to learn which worker's queue it
hashes to (the hash seed is random per rule set), and one address per worker is used (the
same number of streams, 2, in both rows).

Targets (printed with PASS/FAIL): (b) bulk >= 0.9 of (a) each way; latency added by (b) over
(a) <= 200 us p50; (c) >= 1 Gbit/s each way with 1,000 rules; (c) with 2 workers >= 1.7x
(c) with 1, each way. (a) and (b) are also given as
shares of (d). Needs root; every namespace and process it starts is removed on the way
out, Ctrl-C included. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import ids  # noqa: E402

from dom0.sim.net import UPLINK_IP  # noqa: E402
from domains.syssec.ipsd import read_stats  # noqa: E402
from tests.conftest import Daemon, wait_for_socket  # noqa: E402
from tests.netlab import lab  # noqa: E402
from tests.simworld import py  # noqa: E402
from tests.syssec_lab import build_namespaces, ip, sys_sec  # noqa: E402

RESULTS = REPO / "bench" / "results" / "datapath.json"
SERVER = "203.0.113.10"
GUEST = {"guest": (12, "internet")}
IPERF_PORT, CONN_PORT, ECHO_PORT = 5201, 5301, 5302
CONN_THREADS, PING_SIZE, PING_WARMUP = 4, 64, 50
BULK_SHARE, ADDED_P50_US, NO_BYPASS_GBIT, WORKER_SCALING = 0.9, 200.0, 1.0, 1.7
# The far side's extra addresses for the workers rows; with 6, all hash to one queue of two
# once in 32 set-ups (then the bench says so).
PAIR_ADDRESSES = tuple(f"203.0.113.{n}" for n in range(11, 17))
PROBE_PORT = 5400
WORKER_ROWS = (1, 2)
SETUPS = {
    "d": "(d) plain chain, no iptables",
    "a": "(a) sys-sec NAT, no engine",
    "b": "(b) engine, bypass, 1,000 ET",
    "c": "(c) engine, no bypass, 1,000 ET",
}

# The far side's servers: CONN_PORT answers each connection with one byte and closes it;
# ECHO_PORT echoes whatever comes, one thread per connection. Prints "ready".
SERVE = r"""
import socket, sys, threading
addr, conn_port, echo_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def listener(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(4096)
    return s
def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with c:
        while data := c.recv(65536):
            c.sendall(data)
def echoes(s):
    while True:
        threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
one_byte, echoing = listener(conn_port), listener(echo_port)
threading.Thread(target=echoes, args=(echoing,), daemon=True).start()
print("ready", flush=True)
while True:
    c = one_byte.accept()[0]
    try:
        c.sendall(b"x")
    except OSError:
        pass
    c.close()
"""

# HOST PORT SECONDS THREADS: connections completed (one byte read, then closed) and failed.
CONNS = r"""
import json, socket, sys, threading, time
host, port, seconds, threads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
done, failed = [0] * threads, [0] * threads
def work(i, end):
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                ok = s.recv(1) == b"x"
        except OSError:
            ok = False
        if ok:
            done[i] += 1
        else:
            failed[i] += 1
t0 = time.monotonic()
workers = [threading.Thread(target=work, args=(i, t0 + seconds)) for i in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps({"connections": sum(done), "failed": sum(failed),
                  "seconds": time.monotonic() - t0}))
"""

# HOST PORT COUNT SIZE WARMUP: round-trip times of SIZE-byte messages over one connection.
PINGPONG = r"""
import json, socket, sys, time
host, port, count, size, warmup = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6])
s = socket.create_connection((host, port), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg, rtts = b"p" * size, []
for i in range(warmup + count):
    t = time.perf_counter_ns()
    s.sendall(msg)
    got = 0
    while got < size:
        chunk = s.recv(size - got)
        if not chunk:
            sys.exit("the echo server closed the connection")
        got += len(chunk)
    if i >= warmup:
        rtts.append(time.perf_counter_ns() - t)
rtts.sort()
at = lambda p: rtts[min(len(rtts) - 1, round(p / 100 * (len(rtts) - 1)))] / 1e3
print(json.dumps({"samples": len(rtts), "p50_us": at(50), "p99_us": at(99)}))
"""


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def serving(ns: str, argv: list[str], ready: str, timeout: float = 15.0) -> Iterator[None]:
    """`argv` running in `ns` once it printed a line containing `ready`; stopped after."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    drain: threading.Thread | None = None
    try:
        assert proc.stdout is not None
        fd, deadline, seen = proc.stdout.fileno(), time.monotonic() + timeout, b""
        while ready.encode() not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError(f"{argv[0]} in {ns}: not {ready!r} after {timeout} s: "
                                   f"{seen.decode(errors='replace')}")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"{argv[0]} in {ns} exited: {seen.decode(errors='replace')}")
            seen += chunk
        # What it prints from now on is not wanted, but a full pipe would stall it.
        drain = threading.Thread(target=lambda: all(iter(lambda: os.read(fd, 65536), b"")),
                                 daemon=True)
        drain.start()
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        if drain is not None:
            drain.join(timeout=5)    # at the end of the output, before the pipe is closed
        if proc.stdout is not None:
            proc.stdout.close()


class EngineCost:
    """The engine's packets off the queue and CPU seconds, read from its stats socket and
    /proc, to difference around one measurement."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        stats = read_stats(socket_path)
        self.pid, self.rules = int(stats["pid"]), int(stats["rules_loaded"])

    def read(self) -> tuple[int, float, float]:
        queued = int(read_stats(self.socket_path)["queue"]["received"])
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return queued, cpu, time.monotonic()

    def around(self, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        p0, c0, t0 = self.read()
        out = measure()
        p1, c1, t1 = self.read()
        packets, cpu = p1 - p0, c1 - c0
        out["engine"] = {"packets": packets, "cpu_s": round(cpu, 3),
                         "core_share": round(cpu / (t1 - t0), 2),
                         "us_per_packet": round(cpu / packets * 1e6, 1) if packets else None}
        return out


def iperf(ns: str, seconds: float, reverse: bool, host: str = SERVER,
          port: int = IPERF_PORT) -> dict[str, Any]:
    done = subprocess.run(["ip", "netns", "exec", ns, "iperf3", "-c", host,
                           "-p", str(port), "-t", str(seconds), "-J",
                           *(["-R"] if reverse else [])],
                          capture_output=True, text=True, timeout=seconds + 30)
    report = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "error" in report:
        raise RuntimeError(f"iperf3 {'-R ' if reverse else ''}in {ns}: "
                           f"{report.get('error') or done.stderr.strip()}")
    end = report["end"]
    return {"gbit_s": round(end["sum_received"]["bits_per_second"] / 1e9, 3),
            "retransmits": end["sum_sent"].get("retransmits")}


def measure(label: str, guest: str, server: str, args: argparse.Namespace,
            engine: EngineCost | None) -> dict[str, Any]:
    """Every metric from `guest` to the server in `server`'s namespace."""
    def timed(name: str, run: Callable[[], dict[str, Any]], show: Callable[[dict], str]
              ) -> dict[str, Any]:
        got = engine.around(run) if engine else run()
        cost = got.get("engine")
        note = (f"  [ipsd: {cost['packets']} packets, {cost['us_per_packet']} us CPU each, "
                f"{cost['core_share']:.0%} of a core]" if cost else "")
        progress(f"{label}: {name}: {show(got)}{note}")
        return got

    out: dict[str, Any] = {}
    with serving(server, ["iperf3", "-s", "-p", str(IPERF_PORT), "--forceflush"],
                 "Server listening"), \
            serving(server, [sys.executable, "-c", SERVE, SERVER, str(CONN_PORT),
                             str(ECHO_PORT)], "ready"):
        for key, reverse in (("up", False), ("down", True)):
            out[key] = timed(f"bulk {key}", functools.partial(iperf, guest, args.seconds,
                                                             reverse),
                             lambda g: f"{g['gbit_s']:.2f} Gbit/s")
        out["conns"] = timed("short connections", lambda: json.loads(py(
            guest, CONNS, SERVER, str(CONN_PORT), str(args.seconds), str(CONN_THREADS),
            timeout=args.seconds + 60)), lambda g: f"{g['connections'] / g['seconds']:.0f}/s "
            f"({g['failed']} failed)")
        out["conns"]["per_s"] = round(out["conns"]["connections"] / out["conns"]["seconds"])
        out["latency"] = timed("request/response", lambda: json.loads(py(
            guest, PINGPONG, SERVER, str(ECHO_PORT), str(args.samples), str(PING_SIZE),
            str(PING_WARMUP), timeout=120)),
            lambda g: f"p50 {g['p50_us']:.0f} us, p99 {g['p99_us']:.0f} us")
    if engine is not None:
        out["rules_loaded"] = engine.rules
    return out


def plain_chain(args: argparse.Namespace) -> dict[str, Any]:
    with lab("hwdpd") as net:
        ns = build_namespaces(net, GUEST, (SERVER,))
        for domid, _ in GUEST.values():   # no NAT here: the server routes the guest back
            net.run(ns["inet"], "ip", "route", "add", f"{ip(domid)}/32", "via", UPLINK_IP)
        return measure(SETUPS["d"], ns["guest"], ns["inet"], args, None)


async def through_sys_sec(key: str, xenstored: Daemon, tmp: Path, args: argparse.Namespace,
                          rules: str) -> dict[str, Any]:
    work = tmp / key
    engine = key in "bc"
    if engine:
        (work / "sec" / "rules").mkdir(parents=True)
        (work / "sec" / "rules" / "et-1000.rules").write_text(rules)
    settings = 'engine_set = ["stream.bypass=no"]\n' if key == "c" else ""
    async with sys_sec(xenstored, work, GUEST, engine=engine, far=(SERVER,),
                       settings=settings, prefix=f"hwdp{key}", workers=1) as s:
        cost = None
        if engine:
            sock = s.state / "run" / "ipsd.sock.0"
            try:    # "running" is said once it is started, its socket comes with its rules
                wait_for_socket(sock, None, timeout=60)
            except TimeoutError as e:
                raise RuntimeError(f"{SETUPS[key]}: {e}\n{s.controller_log()[-3000:]}") from None
            cost = EngineCost(sock)
        return measure(SETUPS[key], s.ns["guest"], s.ns["inet"], args, cost)


# Accepts and closes every TCP connection on PORT, any address (the workers rows' probe).
ACCEPT = r"""
import socket, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=64)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""
CONNECT = r"""
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
"""


def queue_received(sockets: list[Path]) -> list[int]:
    return [int(read_stats(sock)["queue"]["received"]) for sock in sockets]


def worker_of(guest: str, addr: str, sockets: list[Path]) -> int | None:
    """The worker whose queue `addr`'s pair with the guest hashes to: the only one whose
    counter moves for a connection to it (None if none or several did, e.g. the stats
    record of another flow)."""
    before = queue_received(sockets)
    py(guest, CONNECT, addr, str(PROBE_PORT))
    moved = [w for w, (a, b) in enumerate(zip(before, queue_received(sockets), strict=True))
             if b > a]
    return moved[0] if len(moved) == 1 else None


def pick_pairs(guest: str, sockets: list[Path]) -> list[str]:
    """One far address per worker (two in all: the rows compare like with like)."""
    if len(sockets) == 1:
        return list(PAIR_ADDRESSES[:2])
    chosen: dict[int, str] = {}
    for addr in PAIR_ADDRESSES:
        w = worker_of(guest, addr, sockets)
        if w is not None:
            chosen.setdefault(w, addr)
        if len(chosen) == len(sockets):
            return [chosen[w] for w in sorted(chosen)]
    raise RuntimeError(f"{len(PAIR_ADDRESSES)} addresses reached only workers "
                       f"{sorted(chosen)} of {len(sockets)}: run the bench again")


def parallel_bulk(guest: str, server: str, pairs: list[str], seconds: float,
                  sockets: list[Path]) -> dict[str, Any]:
    """Bulk up and down, one iperf3 stream per pair at once; each worker's packets."""
    out: dict[str, Any] = {"pairs": pairs}
    with ExitStack() as servers:
        for i in range(len(pairs)):
            servers.enter_context(serving(server, ["iperf3", "-s", "-p", str(IPERF_PORT + i),
                                                   "--forceflush"], "Server listening"))
        for key, reverse in (("up", False), ("down", True)):
            before = queue_received(sockets)
            got: list[dict[str, Any]] = [{} for _ in pairs]

            def run(i: int, reverse: bool = reverse, got: list[dict[str, Any]] = got) -> None:
                got[i] = iperf(guest, seconds, reverse, pairs[i], IPERF_PORT + i)
            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pairs))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if not all(got):
                raise RuntimeError(f"workers rows: an iperf3 stream {key} failed")
            after = queue_received(sockets)
            out[key] = {"gbit_s": round(sum(g["gbit_s"] for g in got), 3),
                        "streams": [g["gbit_s"] for g in got],
                        "worker_packets": [b - a for a, b in zip(before, after, strict=True)]}
    return out


async def workers_row(workers: int, xenstored: Daemon, tmp: Path, args: argparse.Namespace,
                      rules: str) -> dict[str, Any]:
    """(c) with `workers` ipsd workers: bulk over two address pairs at once."""
    work = tmp / f"w{workers}"
    (work / "sec" / "rules").mkdir(parents=True)
    (work / "sec" / "rules" / "et-1000.rules").write_text(rules)
    async with sys_sec(xenstored, work, GUEST, engine=True, far=(SERVER, *PAIR_ADDRESSES),
                       settings='engine_set = ["stream.bypass=no"]\n',
                       prefix=f"hwdpw{workers}", workers=workers) as s:
        sockets = [s.state / "run" / f"ipsd.sock.{q}" for q in range(workers)]
        for sock in sockets:
            try:
                wait_for_socket(sock, None, timeout=120)
            except TimeoutError as e:
                raise RuntimeError(f"{workers} workers: {e}\n{s.controller_log()[-3000:]}"
                                   ) from None
        with serving(s.ns["inet"], [sys.executable, "-c", ACCEPT, str(PROBE_PORT)], "ready"):
            pairs = pick_pairs(s.ns["guest"], sockets)
        got = parallel_bulk(s.ns["guest"], s.ns["inet"], pairs, args.seconds, sockets)
        got["rules_loaded"] = int(read_stats(sockets[0])["rules_loaded"])
    for key in ("up", "down"):
        progress(f"(c) {workers} worker(s): bulk {key} {got[key]['gbit_s']:.2f} Gbit/s over "
                 f"{', '.join(pairs)} (packets per worker {got[key]['worker_packets']})")
    return got


def thousand_rules() -> str:
    """bench/ids.py's 1,000 ET Open rules, as a rules file."""
    from netsec.rules import load_rules

    if not ids.ET_OPEN.is_dir():
        raise SystemExit(f"bench/datapath.py: no ET Open at {ids.ET_OPEN} "
                         "(set HYPERWALL_SHARED to the folder holding data/et-open)")
    loaded = load_rules(ids.et_rule_files(), None, ids.ET_OPEN / "classification.config")
    return "".join(r.text.strip() + "\n" for r in ids.sample(loaded.rules, 1000))


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    progress("sampling 1,000 ET Open rules ...")
    rules = thousand_rules()
    results: dict[str, Any] = {"d": plain_chain(args)}
    xenstored = Daemon([sys.executable, "-m", "dom0.xenstored.daemon", "--rundir",
                        str(tmp / "xs"), "--state-dir", str(tmp / "xs-state")], tmp / "xs")
    xenstored.start()
    try:
        for key in "abc":
            results[key] = await through_sys_sec(key, xenstored, tmp, args, rules)
        results["workers"] = {str(n): await workers_row(n, xenstored, tmp, args, rules)
                              for n in WORKER_ROWS}
    finally:
        xenstored.kill()
    return results


def verdicts(r: dict[str, Any]) -> list[str]:
    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"
    out = []
    for way in ("up", "down"):
        a, b, c, d = (r[k][way]["gbit_s"] for k in "abcd")
        out.append(f"{mark(b >= BULK_SHARE * a)} (b) bulk {way} {b:.2f} Gbit/s = {b / a:.2f} "
                   f"of (a) {a:.2f} (target >= {BULK_SHARE})")
        out.append(f"INFO (a) bulk {way} = {a / d:.2f} of (d) {d:.2f} Gbit/s; (b) = {b / d:.2f}")
        out.append(f"{mark(c >= NO_BYPASS_GBIT)} (c) bulk {way} {c:.2f} Gbit/s with "
                   f"{r['c']['rules_loaded']} rules (target >= {NO_BYPASS_GBIT} Gbit/s)")
    added = r["b"]["latency"]["p50_us"] - r["a"]["latency"]["p50_us"]
    out.append(f"{mark(added <= ADDED_P50_US)} latency added by (b) over (a): {added:.0f} us "
               f"p50 (target <= {ADDED_P50_US:.0f} us)")
    one, two = (r["workers"][str(n)] for n in WORKER_ROWS)
    for way in ("up", "down"):
        x = two[way]["gbit_s"] / one[way]["gbit_s"] if one[way]["gbit_s"] else 0.0
        out.append(f"{mark(x >= WORKER_SCALING)} (c) bulk {way} with 2 workers "
                   f"{two[way]['gbit_s']:.2f} Gbit/s = {x:.2f}x 1 worker "
                   f"{one[way]['gbit_s']:.2f} (target >= {WORKER_SCALING}x)")
    return out


def table(r: dict[str, Any]) -> str:
    head = (f"{'set-up':<33}{'workers':>8}{'up Gbit/s':>11}{'down Gbit/s':>13}"
            f"{'conn/s':>8}{'p50 us':>8}{'p99 us':>8}")
    lines = [head, "-" * len(head)]
    for key in "dabc":
        m = r[key]
        lines.append(f"{SETUPS[key]:<33}{'1' if key in 'bc' else '-':>8}"
                     f"{m['up']['gbit_s']:>11.2f}{m['down']['gbit_s']:>13.2f}"
                     f"{m['conns']['per_s']:>8}{m['latency']['p50_us']:>8.0f}"
                     f"{m['latency']['p99_us']:>8.0f}")
    for n in WORKER_ROWS:   # bulk only: 2 address pairs at once
        m = r["workers"][str(n)]
        lines.append(f"{'(c) no bypass, 2 pairs at once':<33}{n:>8}{m['up']['gbit_s']:>11.2f}"
                     f"{m['down']['gbit_s']:>13.2f}{'-':>8}{'-':>8}{'-':>8}")
    lines.append("")
    lines.append("engine CPU per packet (us) and share of a core, per measurement:")
    for key in "bc":
        cells = [f"{name} {r[key][name]['engine']['us_per_packet']} us "
                 f"{r[key][name]['engine']['core_share']:.0%}"
                 for name in ("up", "down", "conns", "latency")]
        lines.append(f"  {SETUPS[key]:<33}" + ", ".join(cells))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 s per run and 500 round trips (under a minute)")
    ap.add_argument("--seconds", type=float, help="per iperf3 and connections run (default 5)")
    ap.add_argument("--samples", type=int, help="round trips timed (default 5,000)")
    ap.add_argument("--json", type=Path, default=RESULTS, help=f"default {RESULTS}")
    args = ap.parse_args()
    args.seconds = args.seconds or (1.0 if args.quick else 5.0)
    args.samples = args.samples or (500 if args.quick else 5000)
    if os.geteuid() != 0:
        sys.exit("bench/datapath.py needs root (namespaces, veth, iptables, NFQUEUE)")

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt
    # Ctrl-C and SIGTERM raise where the bench is, mostly in blocking calls: asyncio's own
    # Ctrl-C only cancels at the next await, after the measurement running then.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    with tempfile.TemporaryDirectory(prefix="hwdp-") as tmp:
        started = dt.datetime.now(dt.UTC)
        try:
            results = asyncio.run(bench(args, Path(tmp)))
        except KeyboardInterrupt:
            progress("interrupted: every namespace and process it started is gone")
            return 130
    checks = verdicts(results)
    print(table(results))
    print()
    print("\n".join(checks))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "date": started.isoformat(timespec="seconds"), "seconds": args.seconds,
        "samples": args.samples, "conn_threads": CONN_THREADS,
        "setups": {k: {"name": SETUPS[k], **results[k]} for k in "dabc"},
        "workers": results["workers"],
        "verdicts": checks}, indent=2) + "\n")
    progress(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
