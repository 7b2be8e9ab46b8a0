"""Traffic shapes for the evasion suite (tests/integration/test_evasion.py), both ends.

Run with the repository as the working directory (`python -m tests.evasion_shapes ...`):

  serve ADDR CERT_DIR HTTP_PORTS TLS_PORTS   the far side: HTTP on each of HTTP_PORTS and
      HTTPS on each of TLS_PORTS (comma-separated) at ADDR; keep-alive and pipelining as
      HTTP/1.1 has them. Logs each request it is asked, as one JSON line
      {"port", "tls", "sni", "host", "target"} (a TLS handshake's SNI also on its own, as
      {"port", "sni"}, before the request), and prints "ready" first. The host it answers
      for is the absolute URI's authority if there is one, else the Host header (RFC 9112
      §3.2.2), lower-cased and without a trailing dot, and `GET /` answers
      "hello from HOST". `GET /body/evil|clean/SHAPE` (SHAPE percent-encoded: a request
      target has no spaces, see body_target) answers BODY_BEFORE + EICAR (or as
      many x) + BODY_AFTER in the response shape SHAPE (RESPONSE_SHAPES).
  http HOST PORT SHAPE REQUEST_HEX...   the client: sends the requests in SHAPE
      (REQUEST_SHAPES), prints {"received": hex} of all that arrived before the server
      closed, the flow was reset, or IDLE passed.
  tls HOST PORT SHAPE SNI                a TLS client whose ClientHello goes out in SHAPE
      (HELLO_SHAPES), then `GET /`; prints {"received": hex} of the decrypted response.
  dns SERVER SHAPE NAME...               asks SERVER:53 for each NAME's A record over
      SHAPE ("udp", "tcp", "tcp, 1-byte segments"); prints {"answers": [address or
      "rcode N" or an error, ...]}.
  raw HOST PORT SHAPE GOOD_HEX BAD_HEX   a TCP client written with scapy that sends one
      request's (or ClientHello's) bytes out of order or overlapping (RAW_SHAPES); prints
      {"received": hex}.

Every piece a sender writes goes out once the previous one was acknowledged (TCP_INFO's
unacked count), so the kernel never merges two of them into one segment.
"""
from __future__ import annotations

import gzip
import json
import random
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, unquote

from dom0.sim.servers import EICAR, tls_context
from netsec.app.dns import TYPE_A, build_query, parse_message

SIG = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"     # what the platform's drop rule looks for
BODY_BEFORE = b"harmless text before the file\n" * 4
BODY_AFTER = b"and a harmless tail after it\n" * 4
IDLE = 2.0          # a client gives up when nothing arrived for this long
ACK_WAIT = 2.0      # a sender gives up on a piece the peer never acknowledged
FLUSH_GAP = 0.05    # between a flushing server's chunks


def body(kind: str) -> bytes:
    return BODY_BEFORE + (EICAR if kind == "evil" else b"x" * len(EICAR)) + BODY_AFTER


def body_target(kind: str, shape: str) -> str:
    """The request target asking for `kind`'s body in response shape `shape`."""
    return f"/body/{kind}/{quote(shape)}"


def _sig_cut(data: bytes) -> int:
    """An offset inside the signature (where a shape splits it), or the middle."""
    at = data.find(SIG)
    return at + len(SIG) // 2 if at >= 0 else len(data) // 2


def _chunk(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


_CHUNKED = b"Transfer-Encoding: chunked\r\n"


def _length(data: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(data), extra)


def _gzip_chunks(data: bytes) -> list[bytes]:
    packed = gzip.compress(data)
    return [_chunk(packed[i:i + 16]) for i in range(0, len(packed), 16)] + [b"0\r\n\r\n"]


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


# shape -> (the response as pieces, written one per segment; a pause between pieces)
RESPONSE_SHAPES: dict[str, Callable[[bytes], tuple[list[bytes], float]]] = {
    "length": lambda b: ([_length(b) + b], 0),
    "1-byte segments": lambda b: ([_length(b)] + _pieces(b, 1), 0),
    "split in signature": lambda b: ([_length(b) + b[:_sig_cut(b)], b[_sig_cut(b):]], 0),
    "chunk boundary in signature": lambda b: (
        [b"HTTP/1.1 200 OK\r\n" + _CHUNKED + b"\r\n" + _chunk(b[:_sig_cut(b)])
         + _chunk(b[_sig_cut(b):]) + b"0\r\n\r\n"], 0),
    "flushed chunks": lambda b: (
        [b"HTTP/1.1 200 OK\r\n" + _CHUNKED + b"\r\n"]
        + [_chunk(b[i:i + 8]) for i in range(0, len(b), 8)] + [b"0\r\n\r\n"], FLUSH_GAP),
    "gzip": lambda b: ([_length(gzip.compress(b), b"Content-Encoding: gzip\r\n")
                        + gzip.compress(b)], 0),
    "deflate": lambda b: ([_length(zlib.compress(b), b"Content-Encoding: deflate\r\n")
                           + zlib.compress(b)], 0),
    "gzip flushed chunks": lambda b: (
        [b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n" + _CHUNKED + b"\r\n"]
        + _gzip_chunks(b), FLUSH_GAP),
    # header names and values in upper case: a parser matching them case-sensitively
    # would read the chunked or compressed body as plain bytes
    "upper-case chunked": lambda b: (
        [b"HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n"
         + b"".join(_chunk(b[i:i + 8]) for i in range(0, len(b), 8)) + b"0\r\n\r\n"], 0),
    "upper-case gzip": lambda b: ([_length(gzip.compress(b), b"CONTENT-ENCODING: GZIP\r\n")
                                   + gzip.compress(b)], 0),
    # a header block of 8 KB before the body, over several segments
    "8 KB headers": lambda b: (_pieces(_length(b, b"X-Pad: %s\r\n" % (b"p" * 90) * 85) + b,
                                       1400), 0),
    "until close": lambda b: ([b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
                               + b[:_sig_cut(b)], b[_sig_cut(b):]], 0),
}


def _unacked(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 24)[0])   # tcpi_unacked


def send_apart(sock: socket.socket, pieces: list[bytes], gap: float = 0) -> bool:
    """Write each piece as its own segment; False once one went unacknowledged."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for piece in pieces:
        sock.sendall(piece)
        deadline = time.monotonic() + ACK_WAIT
        while _unacked(sock):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)   # TCP_INFO has no event to wait on; ACK_WAIT bounds it
        if gap:
            time.sleep(gap)      # the shape itself: a server flushing its output slowly
    return True


# ---- the far side ---------------------------------------------------------------------

def asked_host(target: str, host_header: str) -> str:
    if "://" in target:
        host_header = target.split("://", 1)[1].split("/", 1)[0]
    return host_header.rsplit(":", 1)[0].rstrip(".").lower() if host_header else ""


_LOG_LOCK = threading.Lock()


def _log(**record: object) -> None:
    # One write per record under a lock: print() writes the text and the newline
    # separately, so two connections' threads could run their records together.
    with _LOG_LOCK:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


def _serve_conn(conn: socket.socket | ssl.SSLSocket, port: int, sni: str | None) -> None:
    buf = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buf:
                got = conn.recv(65536)
                if not got:
                    return
                buf += got
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            _, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
            header = next((line.split(":", 1)[1].strip() for line in lines[1:]
                           if line.lower().startswith("host:")), "")
            host = asked_host(target, header)
            _log(port=port, tls=sni is not None, sni=sni, host=host, target=target)
            path = "/" + target.split("://", 1)[1].partition("/")[2] if "://" in target \
                else target
            if path.startswith("/body/"):
                _, _, kind, shape = path.split("/", 3)
                pieces, gap = RESPONSE_SHAPES[unquote(shape)](body(kind))
            else:
                text = f"hello from {host}\n".encode()
                pieces, gap = [_length(text) + text], 0
            if isinstance(conn, ssl.SSLSocket):
                for piece in pieces:
                    conn.sendall(piece)
            elif not send_apart(conn, pieces, gap):
                return
            if pieces[0].find(b"Connection: close") >= 0 or b"connection: close" in head.lower():
                return


SNI: dict[int, str] = {}    # the name each TLS connection's client asked for, by socket


def _tls_context(cert_dir: Path, port: int) -> ssl.SSLContext:
    """simnet's context, each hello's SNI logged and kept for its connection."""
    def seen(sock: ssl.SSLObject, name: str | None) -> None:
        _log(port=port, sni=name)
        SNI[id(sock)] = name or ""
    return tls_context(cert_dir, seen)


def _accept_loop(srv: socket.socket, port: int, ctx: ssl.SSLContext | None) -> None:
    while True:
        conn, _ = srv.accept()
        conn.settimeout(10)

        def handle(conn: socket.socket = conn) -> None:
            try:
                if ctx is None:
                    _serve_conn(conn, port, None)
                    return
                tls = ctx.wrap_socket(conn, server_side=True)
                _serve_conn(tls, port, SNI.pop(id(tls), ""))
            except (OSError, ValueError, KeyError):
                conn.close()
        threading.Thread(target=handle, daemon=True).start()


def serve(addr: str, cert_dir: Path, http_ports: list[int], tls_ports: list[int]) -> None:
    threads = []
    for port, tls in [(p, False) for p in http_ports] + [(p, True) for p in tls_ports]:
        srv = socket.create_server((addr, port), reuse_port=True)
        ctx = _tls_context(cert_dir, port) if tls else None
        threads.append(threading.Thread(target=_accept_loop, args=(srv, port, ctx),
                                        daemon=True))
    for t in threads:
        t.start()
    print("ready", flush=True)
    threading.Event().wait()


# ---- the client -------------------------------------------------------------------------

def _split_at(data: bytes, word: bytes) -> list[bytes]:
    """Two pieces, cut in the middle of the last occurrence of `word` (a host name)."""
    at = data.rfind(word)
    cut = at + len(word) // 2 if at >= 0 else len(data) // 2
    return [data[:cut], data[cut:]]


def _recv_all(s: socket.socket | ssl.SSLSocket, until: Callable[[bytes], bool] | None = None
              ) -> bytes:
    got = b""
    s.settimeout(IDLE)
    try:
        while chunk := s.recv(65536):
            got += chunk
            if until is not None and until(got):
                break
    except (TimeoutError, ConnectionResetError, ssl.SSLError, OSError):
        pass
    return got


def complete_responses(raw: bytes) -> int:
    """How many HTTP responses in `raw` have arrived whole (one without a length never
    has: it ends when the server closes)."""
    n = 0
    while b"\r\n\r\n" in raw:
        head, raw = raw.split(b"\r\n\r\n", 1)
        fields = _fields(head)
        if b"chunked" in fields.get(b"transfer-encoding", b""):
            at = raw.find(b"\r\n0\r\n\r\n")
            if at < 0 and not raw.startswith(b"0\r\n\r\n"):
                return n
            raw = raw[at + 7:] if at >= 0 else raw[5:]
        elif b"content-length" in fields:
            length = int(fields[b"content-length"])
            if len(raw) < length:
                return n
            raw = raw[length:]
        else:
            return n
        n += 1
    return n


def http_client(host: str, port: int, shape: str, requests: list[bytes]) -> bytes:
    """Send `requests` over one connection in `shape`: each once the previous answer came
    ("keep-alive"), else all at once (pipelined when more than one) as one segment, a
    byte per segment ("1-byte segments") or two cut inside a word ("split in WORD").
    Returns what arrived until all the answers did, the flow ended or IDLE passed."""
    try:
        s = socket.create_connection((host, port), timeout=IDLE)
    except OSError:
        return b""
    with s:
        if shape == "keep-alive":
            got = b""
            for i, req in enumerate(requests, 1):
                s.sendall(req)
                got += _recv_all(s, lambda g: complete_responses(g) >= 1)
                if complete_responses(got) < i:
                    break
            return got
        wire = b"".join(requests)
        if shape == "1-byte segments":
            send_apart(s, _pieces(wire, 1))
        elif shape.startswith("split in "):
            send_apart(s, _split_at(wire, shape.removeprefix("split in ").encode()))
        else:
            s.sendall(wire)
        return _recv_all(s, lambda g: complete_responses(g) >= len(requests))


def _records(hello: bytes, cut: int) -> bytes:
    """One TLS record holding the handshake, re-framed as two records cut at `cut` of its
    handshake bytes (a receiver reassembles handshake messages across records)."""
    rtype, version = hello[0], hello[1:3]
    hs = hello[5:]
    return b"".join(bytes([rtype]) + version + struct.pack("!H", len(p)) + p
                    for p in (hs[:cut], hs[cut:]))


# shape -> the ClientHello's bytes as the pieces written one per segment
HELLO_SHAPES: dict[str, Callable[[bytes, bytes], list[bytes]]] = {
    "one segment": lambda h, sni: [h],
    "1-byte segments": lambda h, sni: _pieces(h, 1),
    "split in SNI": lambda h, sni: _split_at(h, sni),
    "two records, cut in SNI": lambda h, sni: [_records(h, h.find(sni) - 5 + len(sni) // 2)],
    "two records in two segments": lambda h, sni: _split_at(
        _records(h, h.find(sni) - 5 + len(sni) // 2), sni[len(sni) // 2:]),
    "2 KB hello over segments": lambda h, sni: _pieces(h, 500),
}


def _tls_start(sni: str, big: bool = False) -> tuple[ssl.SSLObject, ssl.MemoryBIO,
                                                    ssl.MemoryBIO, bytes]:
    """A TLS client for `sni` over memory (its object, incoming and outgoing BIOs) and
    its ClientHello record; `big`: browser-sized, 2 KB."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    if big:
        # A browser's hello is 1.5-2 KB (GREASE, post-quantum key shares); long ALPN names
        # make this one as big.
        ctx.set_alpn_protocols([f"x{i}".ljust(200, "x") for i in range(9)] + ["http/1.1"])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return obj, inc, out, out.read()


def client_hello(sni: str) -> bytes:
    """A ClientHello record asking for `sni`: the same length for names of one length."""
    return _tls_start(sni)[3]


def tls_client(host: str, port: int, shape: str, sni: str) -> bytes:
    obj, inc, out, hello = _tls_start(sni, big=shape.startswith("2 KB"))
    try:
        s = socket.create_connection((host, port), timeout=IDLE)
    except OSError:
        return b""
    with s:
        if not send_apart(s, HELLO_SHAPES[shape](hello, sni.encode())):
            return b""
        s.settimeout(IDLE)
        got = b""
        try:
            while True:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if pending := out.read():
                        s.sendall(pending)
                    data = s.recv(65536)
                    if not data:
                        return b""
                    inc.write(data)
            obj.write(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            s.sendall(out.read())
            while True:
                try:
                    got += obj.read(65536)
                except ssl.SSLWantReadError:
                    data = s.recv(65536)
                    if not data:
                        break
                    inc.write(data)
        except (OSError, ssl.SSLError):
            pass
        return got


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    """(the chunked body's bytes that arrived, what follows its last chunk)."""
    out = b""
    while b"\r\n" in data:
        size_line, rest = data.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return out, rest.split(b"\r\n", 1)[-1]
        out += rest[:size]
        data = rest[size + 2:]
        if len(rest) < size:
            break
    return out, b""


def _fields(head: bytes) -> dict[bytes, bytes]:
    return {k.strip().lower(): v.strip().lower() for k, _, v in
            (line.partition(b":") for line in head.split(b"\r\n")[1:])}


def bodies(raw: bytes) -> bytes:
    """The bodies of the HTTP responses in `raw`, one after the other, de-chunked and
    decompressed as far as they arrived: what a browser would have of them."""
    out = b""
    while b"\r\n\r\n" in raw:
        head, raw = raw.split(b"\r\n\r\n", 1)
        fields = _fields(head)
        if b"chunked" in fields.get(b"transfer-encoding", b""):
            data, raw = _dechunk(raw)
        elif b"content-length" in fields:
            n = int(fields[b"content-length"])
            data, raw = raw[:n], raw[n:]
        else:
            data, raw = raw, b""
        coding = fields.get(b"content-encoding", b"")
        if coding in (b"gzip", b"deflate"):
            try:
                data = zlib.decompressobj(47 if coding == b"gzip" else 15).decompress(data)
            except zlib.error:
                data = b""
        out += data
    return out


def _dns_answer(reply: bytes) -> str:
    m = parse_message(reply)
    return next((r.rdata for r in m.answers if r.rtype == TYPE_A and r.rdata),
                f"rcode {m.header.flags & 15}")


# shape -> how a client asks for each name: udp, or tcp (segmenting, several in a row)
def dns_client(server: str, shape: str, names: list[str]) -> list[str]:
    queries = [build_query(name, 0x4800 + i) for i, name in enumerate(names)]
    answers = []
    try:
        if shape == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(IDLE)
                for q in queries:
                    s.sendto(q, (server, 53))
                    answers.append(_dns_answer(s.recv(4096)))
            return answers
        with socket.create_connection((server, 53), timeout=IDLE) as s:
            wire = b"".join(struct.pack("!H", len(q)) + q for q in queries)
            if shape == "tcp, 1-byte segments":
                send_apart(s, _pieces(wire, 1))
            else:
                s.sendall(wire)
            got = b""
            while len(answers) < len(queries):
                while len(got) < 2 or len(got) < 2 + struct.unpack_from("!H", got)[0]:
                    chunk = s.recv(4096)
                    if not chunk:
                        return answers + ["closed"]
                    got += chunk
                n = struct.unpack_from("!H", got)[0]
                answers.append(_dns_answer(got[2:2 + n]))
                got = got[2 + n:]
    except OSError as e:
        answers.append(type(e).__name__)
    return answers


# ---- out-of-order and overlapping segments, with scapy -----------------------------------

# shape -> the (offset, good|bad) pieces of the request, in the order they are sent. In each
# the receiving Linux stack ends up with BAD's bytes; an engine that reassembles otherwise
# than the receiver sees GOOD's.
RAW_SHAPES: dict[str, Callable[[int], list[tuple[int, int, str]]]] = {
    # 8-byte pieces, the last one first
    "out of order": lambda n: [(i, min(i + 8, n), "bad") for i in range(0, n, 8)][::-1],
    # the tail of GOOD ahead of a hole, then the whole of BAD in order: Linux drops the
    # out-of-order bytes the in-order segment covers
    "overlap, out-of-order first": lambda n: [(16, n, "good"), (0, n, "bad")],
    # BAD in order, then a retransmission of its range carrying GOOD: Linux keeps the first
    "overlap, retransmission differs": lambda n: [(0, n, "bad"), (0, n, "good")],
    # two pieces ahead of a hole at one start, the second longer: Linux keeps its tail
    "longer at a buffered start": lambda n: [(16, 24, "bad"), (16, n, "bad"), (0, 16, "bad")],
}


def raw_client(host: str, port: int, shape: str, good: bytes, bad: bytes) -> bytes:
    # slow to import
    from scapy.all import AsyncSniffer, conf, send, sr1
    from scapy.layers.inet import IP, TCP
    conf.verb = 0
    sport = random.randint(20000, 60000)
    # The kernel knows nothing of this connection and would reset it on the SYN-ACK.
    rule = ["OUTPUT", "-p", "tcp", "--sport", str(sport), "--tcp-flags", "RST", "RST",
            "-j", "DROP"]
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        # The kernel's choice of source address: scapy derives it from the gateway's
        # subnet, and a guest's /32 address with an on-link gateway has none (0.0.0.0).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))
            ip = IP(src=probe.getsockname()[0], dst=host)
        synack = sr1(ip / TCP(sport=sport, dport=port, flags="S", seq=1000), timeout=IDLE)
        if synack is None or not synack.haslayer(TCP):
            return b""
        ack = synack[TCP].seq + 1
        listening = threading.Event()
        sniffer = AsyncSniffer(filter=f"tcp and src host {host} and src port {port}",
                               store=True, started_callback=listening.set)
        sniffer.start()
        if not listening.wait(IDLE):
            return b""
        send(ip / TCP(sport=sport, dport=port, flags="A", seq=1001, ack=ack))
        for start, end, which in RAW_SHAPES[shape](len(bad)):
            data = (bad if which == "bad" else good)[start:end]
            send(ip / TCP(sport=sport, dport=port, flags="PA", seq=1001 + start, ack=ack)
                 / data)
        time.sleep(IDLE)   # what the server sends, if it answers, within IDLE
        packets = list(sniffer.stop() or [])
        send(ip / TCP(sport=sport, dport=port, flags="R", seq=1001 + len(bad)))
        got: dict[int, bytes] = {}
        for p in packets:
            if p.haslayer(TCP) and bytes(p[TCP].payload):
                got[p[TCP].seq] = bytes(p[TCP].payload)
        return b"".join(got[k] for k in sorted(got))
    finally:
        subprocess.run(["iptables", "-D", *rule], check=False)


def main(argv: list[str]) -> None:
    cmd, rest = argv[0], argv[1:]
    if cmd == "serve":
        serve(rest[0], Path(rest[1]), [int(p) for p in rest[2].split(",") if p],
              [int(p) for p in rest[3].split(",") if p])
        return
    if cmd == "dns":
        print(json.dumps({"answers": dns_client(rest[0], rest[1], rest[2:])}))
        return
    host, port, shape = rest[0], int(rest[1]), rest[2]
    if cmd == "http":
        got = http_client(host, port, shape, [bytes.fromhex(r) for r in rest[3:]])
    elif cmd == "tls":
        got = tls_client(host, port, shape, rest[3])
    else:
        got = raw_client(host, port, shape, bytes.fromhex(rest[3]), bytes.fromhex(rest[4]))
    print(json.dumps({"received": got.hex()}))


if __name__ == "__main__":
    main(sys.argv[1:])
