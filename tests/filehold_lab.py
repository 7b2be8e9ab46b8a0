"""The in-flight scanning wall, for tests and the benchmark: client -- sys-sec -- server
namespaces, the forward path queued to NFQUEUE 0 (fail closed), hyperwall-ipsd inline in
sys-sec with whatever scanner flags it is given (none: the same wall, no scanning), and
tests/file_http.py serving a folder on the far side. Every process and namespace it starts
is gone on the way out."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.integration.test_ipsd_inline import FIREWALL, _start
from tests.netlab import Lab, inline_wall, lab, stop_all

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
CLIENT, SERVER, PORT = "10.137.0.2", "198.51.100.1", 8080


@dataclass
class Net:
    net: Lab
    ns: dict[str, str]


@contextmanager
def inflight_wall(d: Path, www: Path, scanner_args: list[str],
                  prefix: str = "hwfh") -> Iterator[Net]:
    """The wall with ipsd's logs and rules under `d`, serving `www`; `scanner_args` are
    ipsd's (--clamd-socket, --yara-dir, --scan-timeout ...)."""
    (d / "rules").mkdir(parents=True, exist_ok=True)
    (d / "rules" / "local.rules").write_text(
        'alert http any any -> any any (msg:"control"; http.uri; content:"/never"; sid:1;)\n')
    (d / "domains.json").write_text(json.dumps({CLIENT: "family"}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with lab(prefix) as net:
        ns = inline_wall(net, FIREWALL, (CLIENT,), SERVER)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs.append(_start(["ip", "netns", "exec", ns["server"], PY,
                                 str(REPO / "tests/file_http.py"), "serve", SERVER, str(PORT),
                                 str(www)], env))
            procs.append(_start(["ip", "netns", "exec", ns["sys"], PY, "-m",
                                 "domains.syssec.ipsd", "--queue", "0", "-S", str(d / "rules"),
                                 "-l", str(d / "log"), "--domains", str(d / "domains.json"),
                                 *scanner_args], env))
            yield Net(net, ns)
        finally:
            stop_all(procs)
