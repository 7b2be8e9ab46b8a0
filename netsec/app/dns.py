"""DNS messages (RFC 1035) over UDP, and over TCP with the 2-byte length prefix.

Each message is a transaction: a query gives an inspection with `dns.query` (the list of
question names as dotted bytes, no trailing dot) and an EVE record; a response with the
id of a pending query shares its tx_id. EVE records follow Suricata's dns v2 format.
Names may be compressed; following pointers is bounded (no loop can hang the parser).
"""
from __future__ import annotations

from socket import AF_INET, AF_INET6, inet_ntop
from struct import unpack_from
from typing import Any

from netsec.app import AppOutput

MAX_POINTERS = 16         # compression pointers followed in one name
MAX_NAME = 255
MAX_TCP_MESSAGE = 65535
MAX_PENDING = 1024        # queries awaiting a response, per flow

RRTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
           33: "SRV", 35: "NAPTR", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
           64: "SVCB", 65: "HTTPS", 255: "ANY"}
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
          "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE")


class DnsError(ValueError):
    """A malformed DNS message."""


def read_name(msg: bytes, off: int) -> tuple[bytes, int]:
    """(dotted name, offset after the name in place); follows compression pointers."""
    labels: list[bytes] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if off >= len(msg):
            raise DnsError(f"name runs past the message at offset {off}")
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise DnsError(f"truncated compression pointer at offset {off}")
            jumps += 1
            if jumps > MAX_POINTERS:
                raise DnsError("too many compression pointers (a loop?)")
            if end < 0:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if n & 0xC0:
            raise DnsError(f"unsupported label type at offset {off}")
        total += n + 1
        if total > MAX_NAME or off + 1 + n > len(msg):
            raise DnsError(f"label overruns the name or the message at offset {off}")
        labels.append(msg[off + 1:off + 1 + n])
        off += 1 + n
    return b".".join(labels), (end if end >= 0 else off)


def _rrtype(t: int) -> str:
    return RRTYPES.get(t, str(t))


def _rdata(msg: bytes, rtype: int, off: int, rdlen: int) -> str | None:
    if rtype == 1 and rdlen == 4:
        return inet_ntop(AF_INET, msg[off:off + 4])
    if rtype == 28 and rdlen == 16:
        return inet_ntop(AF_INET6, msg[off:off + 16])
    if rtype in (2, 5, 12):
        return read_name(msg, off)[0].decode("latin-1")
    if rtype == 15:
        return read_name(msg, off + 2)[0].decode("latin-1")
    if rtype == 16 and rdlen:
        return msg[off + 1:off + 1 + msg[off]].decode("latin-1")
    return None


def parse_message(msg: bytes) -> dict[str, Any]:
    """The parsed message: id, flags, questions [(name, type)], answers; raises DnsError."""
    if len(msg) < 12:
        raise DnsError(f"message of {len(msg)} bytes is shorter than the header")
    mid, flags, qd, an, ns, ar = unpack_from("!HHHHHH", msg, 0)
    off = 12
    questions = []
    for _ in range(qd):
        name, off = read_name(msg, off)
        if off + 4 > len(msg):
            raise DnsError(f"truncated question at offset {off}")
        qtype = unpack_from("!H", msg, off)[0]
        off += 4
        questions.append((name, qtype))
    answers = []
    for _ in range(an):
        name, off = read_name(msg, off)
        if off + 10 > len(msg):
            raise DnsError(f"truncated resource record at offset {off}")
        rtype, _cls, ttl, rdlen = unpack_from("!HHIH", msg, off)
        off += 10
        if off + rdlen > len(msg):
            raise DnsError(f"rdata overruns the message at offset {off}")
        answers.append((name, rtype, ttl, _rdata(msg, rtype, off, rdlen)))
        off += rdlen
    return {"id": mid, "flags": flags, "questions": questions, "answers": answers,
            "authorities": ns, "additionals": ar}


def looks_like_dns(data: bytes) -> bool:
    """True when `data` parses as a DNS header plus its questions (Suricata's probe)."""
    if len(data) < 12:
        return False
    flags, qd = unpack_from("!HH", data, 2)
    if (flags >> 11) & 0xF > 6 or not 0 < qd <= 16:
        return False
    try:
        off = 12
        for _ in range(qd):
            name, off = read_name(data, off)
            if off + 4 > len(data):
                return False
            off += 4
    except DnsError:
        return False
    return True


class DnsParser:
    proto = "dns"

    def __init__(self, tcp: bool) -> None:
        self.tcp = tcp
        self._buf = [b"", b""]       # TCP: partial messages per direction (client = 1)
        self._pending: dict[int, int] = {}  # query id -> tx_id
        self._next_tx = 0
        self.failed = False
        self.events: list[str] = []   # no bounds of its own: messages are length-prefixed

    def feed(self, data: bytes, to_server: bool) -> list[AppOutput]:
        if self.failed:
            return []
        if not self.tcp:
            return self._message(data, to_server)
        side = 1 if to_server else 0
        buf = self._buf[side] + data
        out: list[AppOutput] = []
        while len(buf) >= 2:
            n = int.from_bytes(buf[:2], "big")
            if len(buf) < 2 + n:
                break
            out.extend(self._message(buf[2:2 + n], to_server))
            buf = buf[2 + n:]
        self._buf[side] = buf
        return out

    def end_of_stream(self, to_server: bool) -> list[AppOutput]:
        return []

    def finish(self) -> list[AppOutput]:
        return []

    def _message(self, msg: bytes, to_server: bool) -> list[AppOutput]:
        try:
            m = parse_message(msg)
        except DnsError:
            return []
        response = bool(m["flags"] & 0x8000)
        mid = m["id"]
        if response and mid in self._pending:
            tx_id = self._pending.pop(mid)
        else:
            tx_id = self._next_tx
            self._next_tx += 1
            if not response and len(self._pending) < MAX_PENDING:
                self._pending[mid] = tx_id
        names: list[bytes] = [name for name, _ in m["questions"]]
        record = _eve(m, tx_id, response)
        buffers: dict[str, bytes | list[bytes]] | None = (
            None if response else {"dns.query": names})
        return [AppOutput(tx_id, to_server, buffers, record)]


def _eve(m: dict[str, Any], tx_id: int, response: bool) -> dict[str, Any]:
    """Suricata's EVE dns v2 object for one message."""
    flags = m["flags"]
    q = m["questions"][0] if m["questions"] else (b"", 0)
    rec: dict[str, Any] = {"version": 2, "type": "answer" if response else "query", "id": m["id"],
                 "tx_id": tx_id, "opcode": (flags >> 11) & 0xF,
                 "rrname": q[0].decode("latin-1"), "rrtype": _rrtype(q[1])}
    if not response:
        return rec
    rcode = flags & 0xF
    rec.update({"flags": f"{flags:x}", "qr": True, "rd": bool(flags & 0x100),
                "ra": bool(flags & 0x80), "rcode": RCODES[rcode] if rcode < len(RCODES)
                else str(rcode)})
    if flags & 0x400:
        rec["aa"] = True
    if flags & 0x200:
        rec["tc"] = True
    answers = []
    grouped: dict[str, list[str]] = {}
    for name, rtype, ttl, rdata in m["answers"]:
        a = {"rrname": name.decode("latin-1"), "rrtype": _rrtype(rtype), "ttl": ttl}
        if rdata is not None:
            a["rdata"] = rdata
            grouped.setdefault(_rrtype(rtype), []).append(rdata)
        answers.append(a)
    if answers:
        rec["answers"] = answers
        rec["grouped"] = grouped
    return rec
