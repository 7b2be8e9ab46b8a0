"""An HTTP server for the in-flight scanning tests: serves the files of a folder in three
shapes, one connection per response (Connection: close).

  file_http.py serve HOST PORT DIR    prints "ready"; serves GET /<shape>/<name>
Shapes: "plain" (Content-Length, one write), "chunked" (16-byte chunks, each its own write
with TCP_NODELAY, the last one written with the terminating chunk so that the packet that
completes the file carries file bytes), "gzip" (Content-Encoding: gzip, Content-Length).
The client is tests/trickle_http.py's `fetch`, which records every byte that arrived.
"""
from __future__ import annotations

import gzip
import socket
import sys
import threading
from pathlib import Path

CHUNK = 16


def response(shape: str, body: bytes) -> list[bytes]:
    """The writes that make up the response."""
    if shape == "plain":
        return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % len(body) + body]
    if shape == "gzip":
        packed = gzip.compress(body)
        return [b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % len(packed) + packed]
    if shape == "chunked":
        chunks = [b"%x\r\n%s\r\n" % (len(body[i:i + CHUNK]), body[i:i + CHUNK])
                  for i in range(0, len(body), CHUNK)]
        chunks[-1] += b"0\r\n\r\n"
        return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                *chunks]
    raise ValueError(f"unknown shape {shape!r}")


def _serve_one(conn: socket.socket, folder: Path) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = b""
        while b"\r\n\r\n" not in request:
            got = conn.recv(4096)
            if not got:
                return
            request += got
        _, shape, name = request.split(b" ", 2)[1].decode().split("/")
        try:
            for piece in response(shape, (folder / Path(name).name).read_bytes()):
                conn.sendall(piece)
        except OSError:
            pass   # reset by the wall: nothing more to send


def serve(host: str, port: int, folder: Path) -> None:
    srv = socket.create_server((host, port))
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_serve_one, args=(conn, folder), daemon=True).start()


if __name__ == "__main__":
    serve(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
