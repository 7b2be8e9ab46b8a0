"""WireGuard without a kernel module: one wireguard-go process per interface, configured by `wg`.

The sans-IO parts say what to tell `wg` (`config_text`) and read what it answers
(`latest_handshakes`); `WireGuardGo` runs the userspace daemon, used alike by sys-sec's
tunnel (`domains.syssec.vpn`) and the simulated corporate network's server (`dom0.sim.net`).

wireguard-go keeps its control socket in /var/run/wireguard/<iface>.sock, a folder that is
the same in every network namespace: two interfaces of one name, even in different
namespaces, would fight over it, so `start` refuses a name whose socket still answers.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from domains.runner import CommandError, full_argv, run_sync

SOCKET_DIR = Path("/var/run/wireguard")
# wireguard-go prints this (at LOG_LEVEL=verbose) once its control socket accepts `wg`.
READY_LINE = b"UAPI listener started"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
MAX_IFNAME = 15


class WireGuardConfigError(ValueError):
    """A key, peer, interface name or `wg` answer that is malformed; says which."""


class WireGuardError(OSError):
    """wireguard-go would not start; names the interface and what it said."""


def check_key(key: str, what: str) -> str:
    try:
        if len(base64.b64decode(key, validate=True)) == 32:
            return key
    except (binascii.Error, ValueError):
        pass
    raise WireGuardConfigError(f"{what} is not a WireGuard key (32 bytes, base64)")


def check_iface(iface: str) -> str:
    if not 0 < len(iface) <= MAX_IFNAME or not all(c.isalnum() or c in "-_." for c in iface):
        raise WireGuardConfigError(f"{iface!r} is not an interface name (1-{MAX_IFNAME} of "
                             "letters, digits, '-', '_', '.')")
    return iface


@dataclass(frozen=True)
class Peer:
    public_key: str
    allowed_ips: tuple[str, ...]
    endpoint: str | None = None      # host:port; None for a peer that calls us
    keepalive: int | None = None     # seconds; also starts the handshake at once


def config_text(private_key: str, peers: Sequence[Peer], listen_port: int | None = None) -> str:
    """`wg setconf` input (wg(8)'s CONFIGURATION FILE FORMAT) for one interface."""
    check_key(private_key, "the private key")
    lines = ["[Interface]", f"PrivateKey = {private_key}"]
    if listen_port is not None:
        if not 0 < listen_port < 65536:
            raise WireGuardConfigError(f"listen port {listen_port} is out of range")
        lines.append(f"ListenPort = {listen_port}")
    for peer in peers:
        check_key(peer.public_key, "a peer's public key")
        for net in peer.allowed_ips:
            try:
                ipaddress.ip_network(net)
            except ValueError as e:
                raise WireGuardConfigError(f"peer {peer.public_key}: allowed IP {e}") from None
        lines += ["", "[Peer]", f"PublicKey = {peer.public_key}",
                  f"AllowedIPs = {', '.join(peer.allowed_ips)}"]
        if peer.endpoint:
            lines.append(f"Endpoint = {peer.endpoint}")
        if peer.keepalive:
            lines.append(f"PersistentKeepalive = {peer.keepalive}")
    return "\n".join(lines) + "\n"


def latest_handshakes(text: str) -> dict[str, int]:
    """`wg show IFACE latest-handshakes` → {peer public key: unix time, 0 for never}."""
    found = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise WireGuardConfigError(f"latest-handshakes line {n}: cannot read {line!r}")
        found[parts[0]] = int(parts[1])
    return found


def socket_path(iface: str) -> Path:
    return SOCKET_DIR / f"{iface}.sock"


def _answers(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


class WireGuardGo:
    """One wireguard-go in the foreground, its interface in `netns` (None: this one)."""

    def __init__(self, iface: str, netns: str | None = None) -> None:
        self.iface = check_iface(iface)
        self.netns = netns
        self.proc: subprocess.Popen[bytes] | None = None
        # Its last words, for the error when it dies; the rest of its log is dropped.
        self.tail: deque[str] = deque(maxlen=20)
        self._drainer: threading.Thread | None = None

    @property
    def socket(self) -> Path:
        return socket_path(self.iface)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Create the interface; return once `wg` can configure it."""
        sock = self.socket
        if sock.exists():
            if _answers(sock):
                raise WireGuardError(f"{self.iface}: a wireguard-go already answers on {sock}")
            sock.unlink()   # left by one that was killed
        self.proc = subprocess.Popen(
            full_argv(["wireguard-go", "-f", self.iface], self.netns),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "verbose"}, start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        # It logs every handshake and keepalive: keep its pipe drained or it blocks.
        self._drainer = threading.Thread(target=self._drain, daemon=True,
                                         name=f"wireguard-go {self.iface}")
        self._drainer.start()

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        seen = b""
        while READY_LINE not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise WireGuardError(f"{self.iface}: wireguard-go not ready after {timeout}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait()
                self.tail.extend(seen.decode(errors="replace").splitlines())
                raise WireGuardError(f"{self.iface}: wireguard-go exited with "
                                     f"{self.proc.returncode}: {' | '.join(self.tail)}")
            seen += chunk

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.tail.append(line.decode(errors="replace").rstrip())

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Remove the interface, which ends wireguard-go (it removes its socket); kill it if
        it lingers. Safe to call twice, or after a failed start."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                run_sync(["ip", "link", "delete", self.iface], netns=self.netns,
                         timeout=timeout)
            except CommandError:
                pass   # the interface or its namespace is already gone; kill below
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._drainer is not None:
            self._drainer.join(timeout)   # it ends at the pipe's end, now that wg-go has
            self._drainer = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self.socket.exists() and not _answers(self.socket):
            self.socket.unlink(missing_ok=True)
