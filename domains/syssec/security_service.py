"""`hyperwall.netsec.v1.SecurityService`: sys-sec's alerts, EVE records and engine on a
Unix socket that only the owner reaches (dom0 sees it through the path the integrator binds;
no guest has a path to it).

    python -m domains.syssec.security_service -l LOGDIR [--socket /run/hyperwall/security.sock]
        [--ipsd-socket PATH ...] [--ipsd-pidfile PATH ...]

It runs beside the engine, not inside it: alerts stay readable and `--follow` streams stay
open while the supervisor restarts a crashed hyperwall-ipsd, and the datapath's one thread
does not share its interpreter with gRPC's. It reads what the engine writes (LOGDIR's
eve.json and the resolver's dns.json; records already name their domain), asks the engine
for live counters through ipsd's --socket, and reloads it with SIGHUP through its pidfile.
With several workers (one --ipsd-socket and --ipsd-pidfile each, in the same order) it is
one view of them all: counters summed (domains.syssec.ipsd_pool.merge_stats) and a reload
that reaches every worker.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import grp
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from domains.syssec.ipsd_pool import merge_stats
from netsec import evelog
from netsec.report import parse_since
from proto.gen.hyperwall.netsec.v1 import security_pb2 as pb
from proto.gen.hyperwall.netsec.v1 import security_pb2_grpc as pb_grpc

log = logging.getLogger("hyperwall.security")
DEFAULT_SOCKET = Path("/run/hyperwall/security.sock")
OWNER_GROUP = "hyperwall"
RELOAD_TIMEOUT = 60.0     # a large rule set takes seconds to parse
RELOAD_POLL = 0.05
LISTS_STATUS = "lists.status"    # in LOGDIR: the controller's status line of its block lists


def to_alert(record: dict) -> pb.Alert:
    return pb.Alert(**evelog.alert_fields(record), eve_json=json.dumps(record))


def stats_message(counters: dict[str, Any]) -> pb.Stats:
    q = counters.get("queue") or {}
    return pb.Stats(
        engine="running", pid=counters.get("pid", 0), uptime=counters.get("uptime", 0.0),
        rules_loaded=counters.get("rules_loaded", 0), reloads=counters.get("reloads", 0),
        reload_failures=counters.get("reload_failures", 0),
        packets=counters.get("packets", 0), bytes=counters.get("bytes", 0),
        alerts=counters.get("alerts", 0), drops=counters.get("drops", 0),
        accepted=q.get("accepted", 0),
        bypassed=counters.get("bypassed_depth", 0) + counters.get("bypassed_clean", 0),
        bypassed_depth=counters.get("bypassed_depth", 0),
        bypassed_clean=counters.get("bypassed_clean", 0),
        queue_received=q.get("received", 0), queue_batches=q.get("batches", 0),
        queue_overflows=q.get("overflows", 0), flows_active=counters.get("flows_active", 0),
        stats_json=json.dumps(counters))


class SecurityServicer(pb_grpc.SecurityServiceServicer):
    """`ipsd_sockets` and `ipsd_pidfiles`: each worker's, in the same order (either may be
    empty: no counters, or no reload)."""

    def __init__(self, log_dir: Path, ipsd_sockets: Sequence[Path] = (),
                 ipsd_pidfiles: Sequence[Path] = ()) -> None:
        if ipsd_sockets and ipsd_pidfiles and len(ipsd_sockets) != len(ipsd_pidfiles):
            raise ValueError(f"{len(ipsd_sockets)} ipsd sockets but {len(ipsd_pidfiles)} "
                             "pidfiles: give one of each per worker")
        self.log_dir = log_dir
        self.ipsd_sockets = list(ipsd_sockets)
        self.ipsd_pidfiles = list(ipsd_pidfiles)

    async def StreamAlerts(self, request: pb.StreamAlertsRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Alert]:
        try:
            since = parse_since(request.since, dt.datetime.now(dt.UTC)) if request.since \
                else None
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"since: {e}")
        domain = request.domain or None
        drops = request.include_drops
        # Start following before reading the past, so nothing falls between the two.
        new = evelog.Follower(self.log_dir) if request.follow else None
        for record in evelog.timeline(r for r in evelog.read_events(self.log_dir)
                                      if evelog.is_alert(r, domain, since, drops)):
            yield to_alert(record)
        if new is not None:
            async for record in new.records():
                if evelog.is_alert(record, domain, None, drops):
                    yield to_alert(record)

    async def StreamEvents(self, request: pb.StreamEventsRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.EveRecord]:
        for record in evelog.read_events(self.log_dir):
            if evelog.concerns(record, request.domain or None):
                yield pb.EveRecord(eve_json=json.dumps(record))

    async def _counters(self) -> tuple[dict[str, Any], list[str]]:
        """The workers' counters merged, and what each silent worker said (OSError when
        none answers)."""
        if not self.ipsd_sockets:
            raise OSError("this SecurityService was started without --ipsd-socket")
        # Imported here: domains.syssec.ipsd brings the whole engine, a third of sys-sec's start-up
        # for a client of its counters' socket.
        from domains.syssec.ipsd import read_stats
        got, silent = [], []
        for path in self.ipsd_sockets:
            try:
                got.append(await asyncio.to_thread(read_stats, path))
            except OSError as e:
                silent.append(f"{path}: {e}")
        if not got:
            raise OSError("; ".join(silent))
        return merge_stats(got), silent

    async def GetStats(self, request: pb.GetStatsRequest,
                       context: grpc.aio.ServicerContext) -> pb.Stats:
        """The engine's counters, and the controller's status line of its block lists
        (LOGDIR/LISTS_STATUS) in `stats_json` as `lists`, and in `message` when it warns
        that sys-sec blocks less than it did."""
        try:
            lists: str | None = (self.log_dir / LISTS_STATUS).read_text().strip()
        except OSError:
            lists = None
        try:
            counters, silent = await self._counters()
            stats = stats_message({**counters, **({"lists": lists} if lists else {})})
            if silent:   # fail closed: the silent workers' share of the flows is cut off
                stats.engine = "degraded"
                stats.message = f"{len(silent)} of {len(self.ipsd_sockets)} workers do " \
                                f"not answer (their flows are held): {'; '.join(silent)}"
        except OSError as e:
            stats = pb.Stats(engine="down", message=f"the engine does not answer: {e}")
        if lists and lists.startswith("WARNING"):
            stats.message = "; ".join(filter(None, (lists, stats.message)))
        return stats

    async def Reload(self, request: pb.ReloadRequest,
                     context: grpc.aio.ServicerContext) -> pb.ReloadReply:
        outcome = await self._reload()
        if isinstance(outcome, pb.ReloadReply):
            return outcome
        await context.abort(*outcome)
        raise AssertionError("abort returned")

    async def _reload(self) -> pb.ReloadReply | tuple[grpc.StatusCode, str]:
        pids = [live_pid(p) for p in self.ipsd_pidfiles]
        if not any(pids):
            where = ", ".join(map(str, self.ipsd_pidfiles)) or "no --ipsd-pidfile"
            return grpc.StatusCode.UNAVAILABLE, (
                f"the engine is not running (no live pid in {where}); it loads "
                "the rules when it starts")
        counters: list[Callable[[], dict[str, Any]] | None] = [None] * len(pids)
        if self.ipsd_sockets:
            from domains.syssec.ipsd import read_stats  # the engine's module: see _counters
            counters = [functools.partial(read_stats, s) for s in self.ipsd_sockets]
        try:
            rules, message = await asyncio.to_thread(reload_workers, pids, counters)
        except ReloadError as e:
            return e.code, e.message
        return pb.ReloadReply(pid=next(p for p in pids if p), rules_loaded=rules,
                              message=message)


def live_pid(pidfile: Path) -> int | None:
    """The pid in an engine's pidfile if that process is alive, else None."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


class ReloadError(Exception):
    """The engine did not take new rules; `code` is what a gRPC caller is answered."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def reload_engine(pid: int, counters: Callable[[], dict[str, Any]] | None,
                  timeout: float = RELOAD_TIMEOUT) -> tuple[int, str]:
    """SIGHUP the engine at `pid` and learn from its counters (`counters()`, OSError when it
    does not answer) whether it took the rules: (rules in force, what to say), or
    ReloadError when it refused them, exited or did not say within `timeout`. Without
    counters the signal is all that can be vouched for."""
    unavailable = grpc.StatusCode.UNAVAILABLE
    before = None
    if counters is not None:
        with contextlib.suppress(OSError):
            before = counters()
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ReloadError(unavailable, f"the engine ({pid}) just exited") from None
    if before is None or counters is None:
        return 0, "reload signalled"
    done = before["reloads"] + before["reload_failures"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(RELOAD_POLL)   # the engine gives no event; its counters tell
        try:
            now = counters()
        except OSError:
            break
        if now["pid"] != pid:
            break
        if now["reload_failures"] > before["reload_failures"]:
            raise ReloadError(grpc.StatusCode.FAILED_PRECONDITION,
                              f"the engine refused the new rules (none loaded); it keeps its "
                              f"{now['rules_loaded']} running rules")
        if now["reloads"] + now["reload_failures"] > done:
            return now["rules_loaded"], f"{now['rules_loaded']} rules in force"
    raise ReloadError(unavailable, f"the engine ({pid}) did not confirm the reload")


def reload_workers(pids: Sequence[int | None],
                   counters: Sequence[Callable[[], dict[str, Any]] | None]) -> tuple[int, str]:
    """reload_engine for each worker (None: that worker is down and loads the rules when
    its supervisor restarts it), one after the other: a worker parsing rules holds its
    queue's packets meanwhile, so a rolling reload holds only one worker's share of the
    flows at a time (held, not dropped: the queue keeps them). (the fewest rules any worker
    has in force, what to say); ReloadError from the first worker that did not take them,
    or when every worker is down."""
    if not any(pids):
        raise ReloadError(grpc.StatusCode.UNAVAILABLE, "no engine worker is running")
    said, rules = [], []
    for n, (pid, count) in enumerate(zip(pids, counters, strict=True)):
        if pid is None:
            said.append(f"worker {n} is restarting (it loads the rules as it starts)")
            continue
        try:
            got, message = reload_engine(pid, count)
        except ReloadError as e:
            raise ReloadError(e.code, e.message if len(pids) == 1
                              else f"worker {n}: {e.message}") from None
        rules.append(got)
        said.append(message if len(pids) == 1 else f"worker {n}: {message}")
    return min(rules), "; ".join(said)


def _restrict(path: Path) -> None:
    """Owners only: root, and the `hyperwall` group where it exists (as the control API)."""
    try:
        gid = grp.getgrnam(OWNER_GROUP).gr_gid
    except KeyError:
        os.chmod(path, 0o600)
        return
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)


async def serve(log_dir: Path, socket_path: Path, *, ipsd_sockets: Sequence[Path] = (),
                ipsd_pidfiles: Sequence[Path] = ()) -> grpc.aio.Server:
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    server = grpc.aio.server()
    pb_grpc.add_SecurityServiceServicer_to_server(
        SecurityServicer(log_dir, ipsd_sockets, ipsd_pidfiles), server)
    if server.add_insecure_port(f"unix:{socket_path}") == 0:
        raise OSError(f"cannot listen on {socket_path}")
    await server.start()
    _restrict(socket_path)
    log.info("SecurityService on %s", socket_path)
    return server


async def amain(args: argparse.Namespace) -> int:
    server = await serve(args.logdir, args.socket, ipsd_sockets=args.ipsd_socket,
                         ipsd_pidfiles=args.ipsd_pidfile)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(1.0)
    args.socket.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    from domains.logsetup import setup_logging
    p = argparse.ArgumentParser(prog="python -m domains.syssec.security_service",
                                description=__doc__.splitlines()[0])
    p.add_argument("-l", dest="logdir", type=Path, required=True,
                   help="sys-sec's log folder (eve.json, dns.json)")
    p.add_argument("--socket", type=Path, default=DEFAULT_SOCKET,
                   help=f"where to serve (default {DEFAULT_SOCKET})")
    p.add_argument("--ipsd-socket", type=Path, action="append", default=[],
                   help="hyperwall-ipsd's --socket (GetStats); one per worker")
    p.add_argument("--ipsd-pidfile", type=Path, action="append", default=[],
                   help="hyperwall-ipsd's --pidfile (Reload); one per worker, in the same "
                   "order")
    args = p.parse_args(argv)
    if args.ipsd_socket and args.ipsd_pidfile and \
            len(args.ipsd_socket) != len(args.ipsd_pidfile):
        p.error("give one --ipsd-socket and one --ipsd-pidfile per worker")
    setup_logging("security")
    raise SystemExit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
