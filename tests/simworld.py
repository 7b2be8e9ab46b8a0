"""A namespace playing sys-sec with the simulated world plugged into it, for tests; and the
in-namespace scripts they run there (names all start with `hwnet`)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from dom0.sim.embedded import Platform
from dom0.sim.guest_scripts import SYS_SEC_FILES
from dom0.sim.net import SimNet
from domains.runner import run_sync

# Connect to HOST:443 with SNI NAME, verifying against CA_FILE; print the names the
# certificate is for, or FAILED and why.
TLS_NAMES = """
import socket, ssl, sys
host, sni, ca = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=ca)
try:
    with ctx.wrap_socket(socket.create_connection((host, 443), timeout=3),
                         server_hostname=sni) as s:
        print(",".join(v for k, v in s.getpeercert()["subjectAltName"] if k == "DNS"))
except Exception as e:
    print("FAILED", type(e).__name__, e)
"""

# dom0's corporate-network probe (a connected UDP socket, as glibc's resolver uses):
# NAME ADDRESS RESOLVER; prints True or False.
PROBE = """
import asyncio, sys
from tests.corp_network import on_corporate_network, parse
check = parse({"kind": "dns", "name": sys.argv[1], "address": sys.argv[2],
               "resolver": sys.argv[3]}, "test")
print(asyncio.run(on_corporate_network(check, timeout=1)))
"""


def tag() -> str:
    return str(os.getpid() % 100000)


def py(netns: str, script: str, *args: str, timeout: float = 20) -> str:
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script, *args],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@contextmanager
def sys_sec_namespace(name: str) -> Iterator[str]:
    run_sync(["ip", "netns", "add", name])
    try:
        run_sync(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        run_sync(["ip", "netns", "delete", name], check=False)


@contextmanager
def world(prefix: str) -> Iterator[tuple[SimNet, str]]:
    """(the world, sys-sec's namespace), removed afterwards whatever happens."""
    with sys_sec_namespace(f"{prefix}sec") as sys_sec:
        net = SimNet(prefix, wg_iface=f"{prefix}c")
        with net.plug(sys_sec):
            yield net, sys_sec


def engine_settings() -> str:
    """syssec.toml's engine_set for HYPERWALL_TEST_HTTP_PARSER (libhtp or python), so the
    suites that use this world run against either HTTP parser (README "HTTP parser")."""
    parser = os.environ.get("HYPERWALL_TEST_HTTP_PARSER")
    return f'engine_set = ["app-layer.protocols.http.parser={parser}"]\n' if parser else ""


@contextmanager
def embedded_world(prefix: str, zone: dict[str, str], first_domid: int,
                   config: dict[str, str] | None = None) -> Iterator[tuple[Platform, SimNet]]:
    """The embedded platform (dom0d, the standard domains or `config`'s, sys-sec with
    SYS_SEC_FILES and the world's VPN) up, with the simulated world answering `zone` on its
    uplink; all removed afterwards whatever happens."""
    net = SimNet(prefix, zone=zone, wg_iface=f"{prefix}c")
    files = {**SYS_SEC_FILES,
             "syssec.toml": SYS_SEC_FILES["syssec.toml"] + engine_settings()
             + net.vpn_settings()}
    platform = Platform(config, first_domid=first_domid, sys_sec_files=files)
    try:
        platform.start()
        up = subprocess.run([sys.executable, "-m", "dom0.cli", "--json", "up"],
                            env=platform.env(), capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr + platform.log_text()
        net.plug(f"hw-{platform.domid('sys-sec')}")
        yield platform, net
    finally:
        net.close()
        asyncio.run(platform.close())
