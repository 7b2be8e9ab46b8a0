"""An HTTP server that sends its response bodies a few bytes per TCP segment, and the client
that records exactly which bytes of a response arrived, for the inline tests.

  trickle_http.py serve HOST PORT        prints "ready"; serves GET /<evil|clean>/<shape>
  trickle_http.py fetch HOST PORT PATH   prints {"received": hex} (what arrived before the
                                         server closed, the flow was reset, or IDLE passed)
Shapes: "length" (Content-Length, 1 byte per segment), "chunked" (5-byte chunks, one per
segment, as a server flushing its output). Each piece is written once the previous one was
acknowledged (TCP_INFO's unacked count), so the kernel never merges two of them.
"""
from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time

EICAR = (rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
SIG = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"   # what the test's drop rule looks for
BODY_BEFORE = b"harmless text before the file\n" * 6
BODY_AFTER = b"and a long harmless tail after it\n" * 10
IDLE = 3.0          # the client gives up when nothing arrived for this long
ACK_WAIT = 2.0      # the server gives up on a piece the client never acknowledged


def pieces(path: str) -> list[bytes]:
    """The response to PATH as the segments the server writes (headers first)."""
    _, kind, shape = path.split("/")
    body = BODY_BEFORE + (EICAR if kind == "evil" else b"x" * len(EICAR)) + BODY_AFTER
    if shape == "length":
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        return [head] + [body[i:i + 1] for i in range(len(body))]
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    return [head] + [b"%x\r\n%s\r\n" % (len(body[i:i + 5]), body[i:i + 5])
                     for i in range(0, len(body), 5)] + [b"0\r\n\r\n"]


def match_point(path: str) -> int:
    """Index in the whole response of the byte that completes SIG (its last byte)."""
    wire = b"".join(pieces(path))
    body_at = wire.index(b"\r\n\r\n") + 4
    if path.endswith("length"):
        return wire.index(SIG) + len(SIG) - 1
    # chunked: walk the chunks to the body offset of SIG's last byte
    last = (BODY_BEFORE + EICAR).index(SIG) + len(SIG) - 1
    return body_at + (last // 5) * (len(b"5\r\n") + 5 + 2) + len(b"5\r\n") + last % 5


def _unacked(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 24)[0])   # tcpi_unacked


def _serve_one(conn: socket.socket) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = b""
        while b"\r\n\r\n" not in request:
            got = conn.recv(4096)
            if not got:
                return
            request += got
        path = request.split(b" ", 2)[1].decode()
        for piece in pieces(path):
            conn.sendall(piece)
            deadline = time.monotonic() + ACK_WAIT
            while _unacked(conn):
                if time.monotonic() > deadline:
                    return   # dropped on the way: the client will never see the rest
                time.sleep(0.0005)


def serve(host: str, port: int) -> None:
    srv = socket.create_server((host, port))
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_serve_one, args=(conn,), daemon=True).start()


def fetch(host: str, port: int, path: str) -> bytes:
    got = b""
    with socket.create_connection((host, port), timeout=IDLE) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        try:
            while chunk := s.recv(65536):
                got += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return got


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        print(json.dumps({"received": fetch(sys.argv[2], int(sys.argv[3]), sys.argv[4]).hex()}))
