"""Throwaway network namespaces for tests: made with iproute2, always removed afterwards."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

# sys-sec's two sides in the inline wall: the guest's vif and the uplink.
GUEST_GATEWAY, UPLINK_ADDRESS = "10.137.0.1", "198.51.100.254"


class Lab:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.namespaces: list[str] = []

    def ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", full], check=True)
        self.namespaces.append(full)
        self.run(full, "ip", "link", "set", "lo", "up")
        return full

    def link(self, a: str, a_if: str, b: str, b_if: str) -> None:
        tmp_a, tmp_b = f"t{os.getpid() % 10000}a{len(self.namespaces)}", \
            f"t{os.getpid() % 10000}b{len(self.namespaces)}"
        subprocess.run(["ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b],
                       check=True)
        for tmp, ns, name in ((tmp_a, a, a_if), (tmp_b, b, b_if)):
            subprocess.run(["ip", "link", "set", tmp, "netns", ns], check=True)
            self.run(ns, "ip", "link", "set", tmp, "name", name)
            self.run(ns, "ip", "link", "set", name, "up")

    def run(self, ns: str, *argv: str, check: bool = True, input: bytes | None = None,
            timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], check=check, input=input,
                              capture_output=True, timeout=timeout)

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@contextmanager
def lab(prefix: str) -> Iterator[Lab]:
    lab = Lab(f"{prefix}{os.getpid() % 100000}")
    try:
        yield lab
    finally:
        lab.close()


def inline_wall(net: Lab, firewall: bytes, clients: Iterable[str],
                server: str) -> dict[str, str]:
    """client -- sys -- server namespaces (keys "client", "sys", "server"): the client
    holds `clients` on eth0, sys-sec forwards between vif2 and up0 under `firewall`
    (iptables-restore input), the server holds `server`."""
    ns = {"client": net.ns("c"), "sys": net.ns("s"), "server": net.ns("w")}
    net.link(ns["client"], "eth0", ns["sys"], "vif2")
    net.link(ns["sys"], "up0", ns["server"], "eth0")
    for addr in clients:
        net.run(ns["client"], "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
    net.run(ns["client"], "ip", "route", "add", "default", "via", GUEST_GATEWAY)
    net.run(ns["sys"], "ip", "addr", "add", f"{GUEST_GATEWAY}/24", "dev", "vif2")
    net.run(ns["sys"], "ip", "addr", "add", f"{UPLINK_ADDRESS}/24", "dev", "up0")
    net.run(ns["server"], "ip", "addr", "add", f"{server}/24", "dev", "eth0")
    net.run(ns["server"], "ip", "route", "add", "default", "via", UPLINK_ADDRESS)
    net.run(ns["sys"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
    net.run(ns["sys"], "iptables-restore", input=firewall)
    return ns


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop what a test started, last first: SIGTERM, then SIGKILL after 10 s."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
