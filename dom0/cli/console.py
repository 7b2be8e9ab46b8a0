"""`hyperwall console`: a one-time login link to the web console, for the calling user.

The console (hyperwall-console, as root) hands links out on its own Unix socket, where the
kernel tells it who connected (SO_PEERCRED); this command only asks and prints. Where a
desktop is there (DISPLAY or WAYLAND_DISPLAY) it also opens the link in the browser.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import webbrowser
from pathlib import Path

from dom0.cli import EXIT_OK, Session, arg, command

DEFAULT_CONSOLE_SOCKET = Path("/run/hyperwall/console.sock")
_TIMEOUT = 10.0


def console_socket(given: Path | None = None) -> Path:
    if given is not None:
        return given
    return Path(os.environ.get("HYPERWALL_CONSOLE_SOCKET", str(DEFAULT_CONSOLE_SOCKET)))


def request_link(path: Path) -> dict[str, str]:
    """The console's answer on `path`: {"url", "user"} or {"error"}; OSError when nothing
    listens there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(_TIMEOUT)
        s.connect(str(path))
        with s.makefile("rb") as f:
            answer: dict[str, str] = json.loads(f.readline())
    return answer


@command("console", "print (and open, on a desktop) a one-time link to the web console",
         arg("--console-socket", type=Path, default=None, metavar="PATH",
             help="hyperwall-console's link socket (default: $HYPERWALL_CONSOLE_SOCKET or "
             f"{DEFAULT_CONSOLE_SOCKET})"),
         arg("--no-open", action="store_true", help="only print the link"))
def _console(s: Session, args: argparse.Namespace) -> int:
    path = console_socket(args.console_socket)
    try:
        answer = request_link(path)
    except (OSError, ValueError) as e:
        return s.fail("UNAVAILABLE", f"cannot reach hyperwall-console at {path} ({e}): start "
                      "it as root (`hyperwall-console`)")
    if "error" in answer:
        return s.fail("RESOURCE_EXHAUSTED", answer["error"])
    s.emit(f"{answer['url']}\n(logs in {answer['user']} once, within two minutes)", answer)
    if not args.no_open and not s.json and (os.environ.get("DISPLAY")
                                            or os.environ.get("WAYLAND_DISPLAY")):
        webbrowser.open(answer["url"])
    return EXIT_OK
