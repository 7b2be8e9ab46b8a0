"""Throwaway network namespaces for tests: made with iproute2, always removed afterwards."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


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
