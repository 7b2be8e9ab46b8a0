"""`hyperwall`: the program (parser, run, main) and the commands on domains.

Every command prints for a person by default and one JSON document (or one per line for
`events`) with `--json`, errors included as {"error": {"code": ..., "message": ...}}.
Exit codes: 0 ok, 1 error, 2 usage; `exec` exits with the command's own code.
"""
from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
from collections.abc import Iterable
from typing import Any

import grpc

from dom0.api import DEFAULT_SOCKET
from dom0.api.convert import domain_from_pb, event_from_pb
from dom0.cli import COMMANDS, EXIT_OK, Session, arg, command, fail
from dom0.cli import EXIT_ERROR as EXIT_ERROR  # the program's codes, for its callers
from dom0.model import DomainEvent, DomainInfo, DomainState
from proto.gen.hyperwall.control.v1 import control_pb2 as pb
from proto.gen.hyperwall.control.v1 import control_pb2_grpc as pb_grpc

NAME = arg("name", metavar="NAME", help="the domain's name (see `hyperwall list`)")
TIMEOUT = arg("--timeout", type=float, metavar="SECONDS", default=None,
              help="how long to wait (default: dom0d's)")


# -- rendering ------------------------------------------------------------------------------

def domain_json(info: DomainInfo) -> dict[str, Any]:
    return {"name": info.name, "domid": info.domid, "uuid": info.uuid, "kind": info.kind,
            "backend": info.backend, "memory_mb": info.memory_mb, "vcpus": info.vcpus,
            "policy": info.policy, "state": info.state.value, "cpu_time": info.cpu_time,
            "users": list(info.users)}


def domain_table(infos: Iterable[DomainInfo]) -> str:
    """Like `xl list`, plus the network policy; a domain that is not running shows `-`."""
    rows = [("Name", "ID", "Mem", "VCPUs", "State", "Time(s)", "Policy")]
    for info in infos:
        live = info.state not in (DomainState.DEFINED, DomainState.CREATED)
        rows.append((info.name, "-" if info.domid is None else str(info.domid),
                     str(info.memory_mb), str(info.vcpus), info.state.xl_flags,
                     f"{info.cpu_time:.1f}" if live else "-", info.policy))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{r[0]:<{width}} {r[1]:>5} {r[2]:>6} {r[3]:>5} {r[4]:>6} {r[5]:>9}  {r[6]}"
                     for r in rows)


def event_json(event: DomainEvent) -> dict[str, Any]:
    return {"kind": event.kind.value, "domain": event.domain, "domid": event.domid,
            "detail": event.detail, "timestamp": event.timestamp}


def event_line(event: DomainEvent) -> str:
    when = datetime.datetime.fromtimestamp(event.timestamp, datetime.UTC)
    domid = f" (id {event.domid})" if event.domid is not None else ""
    detail = f": {event.detail}" if event.detail else ""
    return f"{when:%Y-%m-%dT%H:%M:%S}Z {event.kind.value:<13} {event.domain}{domid}{detail}"


def _done(s: Session, action: str, name: str) -> int:
    s.emit(f"{action} {name}", {"name": name, "done": action})
    return EXIT_OK


def _domain(s: Session, action: str, msg: pb.Domain) -> int:
    info = domain_from_pb(msg)
    domid = f" (id {info.domid})" if info.domid is not None else ""
    s.emit(f"{action} {info.name}{domid}", domain_json(info))
    return EXIT_OK


# -- commands -------------------------------------------------------------------------------

@command("list", "the domains you may see, like `xl list`")
def _list(s: Session, args: argparse.Namespace) -> int:
    infos = [domain_from_pb(d) for d in s.stub.List(pb.ListRequest()).domains]
    s.emit(domain_table(infos), [domain_json(i) for i in infos])
    return EXIT_OK


@command("get", "one domain's full record", NAME)
def _get(s: Session, args: argparse.Namespace) -> int:
    info = domain_from_pb(s.stub.Get(pb.GetRequest(name=args.name)).domain)
    fields = domain_json(info)
    s.emit("\n".join(f"{k + ':':<10} {v if v is not None else '-'}" for k, v in fields.items()),
           fields)
    return EXIT_OK


@command("create", "make a domain's resources without starting it", NAME)
def _create(s: Session, args: argparse.Namespace) -> int:
    return _domain(s, "created", s.stub.Create(pb.CreateRequest(name=args.name)).domain)


@command("start", "start a domain (creating it first if needed)", NAME)
def _start(s: Session, args: argparse.Namespace) -> int:
    return _domain(s, "started", s.stub.Start(pb.StartRequest(name=args.name)).domain)


@command("shutdown", "shut a domain down cleanly (forced after the timeout)", NAME, TIMEOUT,
         arg("--reboot", action="store_true", help="start it again afterwards"))
def _shutdown(s: Session, args: argparse.Namespace) -> int:
    request = pb.ShutdownRequest(name=args.name, reboot=args.reboot)
    if args.timeout is not None:
        request.timeout_seconds = args.timeout
    s.stub.Shutdown(request)
    return _done(s, "rebooted" if args.reboot else "shut down", args.name)


@command("destroy", "stop a domain at once and release its resources", NAME)
def _destroy(s: Session, args: argparse.Namespace) -> int:
    s.stub.Destroy(pb.DestroyRequest(name=args.name))
    return _done(s, "destroyed", args.name)


@command("pause", "freeze a running domain", NAME)
def _pause(s: Session, args: argparse.Namespace) -> int:
    s.stub.Pause(pb.PauseRequest(name=args.name))
    return _done(s, "paused", args.name)


@command("unpause", "let a paused domain run again", NAME)
def _unpause(s: Session, args: argparse.Namespace) -> int:
    s.stub.Unpause(pb.UnpauseRequest(name=args.name))
    return _done(s, "unpaused", args.name)


@command("exec", "run a command in a domain: hyperwall exec NAME -- CMD [ARG...]", NAME, TIMEOUT,
         arg("--stdin", action="store_true", help="send this program's standard input to it"),
         arg("argv", nargs="+", metavar="CMD", help="the command and its arguments"))
def _exec(s: Session, args: argparse.Namespace) -> int:
    request = pb.ExecRequest(name=args.name, argv=args.argv)
    if args.timeout is not None:
        request.timeout_seconds = args.timeout
    if args.stdin:
        request.stdin = sys.stdin.buffer.read()
    reply = s.stub.Exec(request)
    # A command killed by a signal exits the way a shell reports it: 128 + the signal.
    code = reply.exit_code if reply.exit_code >= 0 else 128 - reply.exit_code
    if s.json:
        s.emit("", {"exit_code": reply.exit_code,
                    "stdout": reply.stdout.decode(errors="replace"),
                    "stderr": reply.stderr.decode(errors="replace")})
    else:
        sys.stdout.buffer.write(reply.stdout)
        sys.stdout.buffer.flush()
        sys.stderr.buffer.write(reply.stderr)
        sys.stderr.buffer.flush()
    return code


@command("events", "follow domain events, one per line, until Ctrl-C")
def _events(s: Session, args: argparse.Namespace) -> int:
    stream = s.stub.Events(pb.EventsRequest())
    try:
        for msg in stream:
            event = event_from_pb(msg)
            s.emit(event_line(event), event_json(event))
    except KeyboardInterrupt:
        stream.cancel()
    return EXIT_OK


@command("up", "bring the platform up: sys-sec, then every domain in the config dir")
def _up(s: Session, args: argparse.Namespace) -> int:
    infos = [domain_from_pb(d) for d in s.stub.Up(pb.UpRequest()).domains]
    s.emit(domain_table(infos), [domain_json(i) for i in infos])
    return EXIT_OK


@command("down", "shut every running domain down, sys-sec last")
def _down(s: Session, args: argparse.Namespace) -> int:
    s.stub.Down(pb.DownRequest())
    s.emit("the platform is down", {"done": "down"})
    return EXIT_OK


# -- the program ----------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hyperwall", description="Drive Hyperwall's domains.")
    top.add_argument("--socket", default=os.environ.get("HYPERWALL_SOCKET", str(DEFAULT_SOCKET)),
                     help="dom0d's control socket (default: $HYPERWALL_SOCKET or "
                     f"{DEFAULT_SOCKET})")
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a `--json` given before the subcommand from being reset after it.
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    top.add_argument("--json", action="store_true", help="machine-readable output")
    subs = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        sub = subs.add_parser(name, help=cmd.help, description=cmd.help, parents=[common])
        for flags, options in cmd.args:
            sub.add_argument(*flags, **options)
    return top


def error_message(err: grpc.RpcError, socket: str) -> tuple[str, str]:
    """(status code name, what to tell the person) for a failed call."""
    code: grpc.StatusCode = err.code()
    details = err.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return code.name, (
            f"cannot reach hyperwall-dom0d at {socket}: it is not running or listens "
            "elsewhere. Start it as root (`hyperwall-dom0d`, then `hyperwall up` brings the "
            "platform up), or point --socket / HYPERWALL_SOCKET at its socket")
    if code == grpc.StatusCode.INTERNAL:
        return code.name, f"dom0d failed ({details}); its log has the details"
    return code.name, details


def main() -> int:
    """The console script: a whole process, which may change process-wide signal handling."""
    # Output may go to a pipe that closes early (`hyperwall events | head`): die quietly.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return run(sys.argv[1:])


def run(argv: list[str]) -> int:
    """Parse `argv`, run the command, return the exit code (2 for usage: SystemExit)."""
    args = parser().parse_args(argv)
    with grpc.insecure_channel(f"unix:{args.socket}") as channel:
        session = Session(pb_grpc.ControlServiceStub(channel), args.json, channel)
        try:
            return COMMANDS[args.command].run(session, args)
        except grpc.RpcError as err:
            return fail(args.json, *error_message(err, args.socket))
        except KeyboardInterrupt:
            return 128 + signal.SIGINT
        except OSError as e:
            # A file or device of this machine, not dom0d: name it and say what it said.
            where = f"{e.filename}: " if e.filename else ""
            return fail(args.json, "UNAVAILABLE", f"{where}{e.strerror or e}")
        except Exception as e:
            # No traceback reaches a person; the one line says what failed, for a report.
            return fail(args.json, "INTERNAL", f"{args.command} failed: "
                        f"{type(e).__name__}: {e} (a bug in hyperwall)")


# The commands of the other modules register into COMMANDS when imported; imported after
# this module's own, so that `hyperwall --help` lists the domain commands first.
from dom0.cli import atrest, console, provider, security  # noqa: E402,F401
