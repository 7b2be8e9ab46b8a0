"""One probe from inside a test namespace, its outcome printed as one word or address.

Usage:
  net_probe.py dns SERVER NAME   the A record SERVER gives for NAME, or NXDOMAIN / TIMEOUT
  net_probe.py tcp HOST PORT     OPEN (the server greeted), REFUSED (reset) or TIMEOUT
Timeouts are short: the callers probe things that either work at once or never.
"""
from __future__ import annotations

import socket
import sys

from netsec.app.dns import RCODE_NXDOMAIN, TYPE_A, build_query, parse_message

TIMEOUT = 1.0


def dns(server: str, name: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT)
        s.sendto(build_query(name, 0x4857), (server, 53))
        try:
            reply, _ = s.recvfrom(4096)
        except TimeoutError:
            return "TIMEOUT"
    m = parse_message(reply)
    if m.header.flags & 0x0F == RCODE_NXDOMAIN:
        return "NXDOMAIN"
    return next((r.rdata for r in m.answers if r.rtype == TYPE_A and r.rdata), "NOANSWER")


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
