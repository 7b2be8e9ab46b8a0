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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proto.gen.hyperwall.control.v1 import control_pb2_grpc as pb_grpc

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


@dataclass
class Session:
    """What a command works with: the API stub and how to print."""

    stub: pb_grpc.ControlServiceStub
    json: bool

    def emit(self, human: str, machine: Any) -> None:
        print(json.dumps(machine) if self.json else human, flush=True)


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
