"""`hyperwall`: the command line over dom0d's control API.

The package is the registry: each subcommand is one small function that registers itself
in COMMANDS with `@command`, in the module of its subject (`main`: domains and the program,
`provider`, `security`); adding one (e.g. `alerts`, `report`) is one more function. The
command modules import this package only, and `main` imports them, so nothing imports in a
circle.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from proto.gen.hyperwall.control.v1 import control_pb2_grpc as pb_grpc

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


@dataclass
class Session:
    """What a command works with: the API stub (and its channel to dom0d, which serves
    sys-sec's SecurityService too) and how to print."""

    stub: pb_grpc.ControlServiceStub
    json: bool
    channel: grpc.Channel

    def emit(self, human: str, machine: Any) -> None:
        print(json.dumps(machine) if self.json else human, flush=True)

    def fail(self, code: str, message: str, exit_code: int = EXIT_ERROR) -> int:
        return fail(self.json, code, message, exit_code)


def fail(as_json: bool, code: str, message: str, exit_code: int = EXIT_ERROR) -> int:
    """Say why a command failed, in one line, and return its exit code: the error object
    on stdout with --json, else `hyperwall: ...` on stderr."""
    if as_json:
        print(json.dumps({"error": {"code": code, "message": message}}), flush=True)
    else:
        denied = "permission denied: " if code == "PERMISSION_DENIED" else ""
        print(f"hyperwall: {denied}{message}", file=sys.stderr, flush=True)
    return exit_code


Arg = tuple[tuple[str, ...], dict[str, Any]]


def arg(*flags: str, **options: Any) -> Arg:
    return flags, options


Run = Callable[[Session, argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    help: str
    run: Run
    args: tuple[Arg, ...]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, *args: Arg) -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        COMMANDS[name] = Command(help, run, args)
        return run
    return register
