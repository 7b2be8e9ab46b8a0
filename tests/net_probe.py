"""One probe from inside a test namespace, its outcome printed as one word or address.

Usage:
  net_probe.py dns SERVER NAME   the A record SERVER gives for NAME, or NXDOMAIN / TIMEOUT
  net_probe.py tcp HOST PORT     OPEN (the server greeted), REFUSED (reset) or TIMEOUT
Timeouts are short: the callers probe things that either work at once or never.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
import sys

TIMEOUT = 1.0


def dns(server: str, name: str) -> str:
    query = struct.pack("!HHHHHH", 0x4857, 0x0100, 1, 0, 0, 0) + b"".join(
        bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0" + \
        struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT)
        s.sendto(query, (server, 53))
        try:
            reply, _ = s.recvfrom(4096)
        except TimeoutError:
            return "TIMEOUT"
    if reply[3] & 0x0F == 3:
        return "NXDOMAIN"
    if struct.unpack_from("!H", reply, 6)[0] == 0:
        return "NOANSWER"
    # One question echoed, then one A answer whose last four bytes are the address.
    return str(ipaddress.IPv4Address(reply[-4:]))


def tcp(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT) as s:
            return "OPEN" if s.recv(16).startswith(b"hello") else "CLOSED"
    except ConnectionRefusedError:
        return "REFUSED"
    except (TimeoutError, OSError):
        return "TIMEOUT"


if __name__ == "__main__":
    kind, where, what = sys.argv[1:4]
    print(dns(where, what) if kind == "dns" else tcp(where, int(what)))
