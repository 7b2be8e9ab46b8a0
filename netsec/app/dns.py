"""DNS messages (RFC 1035) over UDP, and over TCP with the 2-byte length prefix.

The one DNS codec of the project: the engine's parser below, and the messages the
resolver, the uplink check and the simulated internet parse and build (`parse_message`,
`build_query`, `build_answer`, `build_error`).

Each message is a transaction: a query gives an inspection with `dns.query` (the list of
question names as dotted bytes, no trailing dot) and an EVE record; a response with the
id of a pending query shares its tx_id. EVE records follow Suricata's dns v2 format.
Names may be compressed; following pointers is bounded (no loop can hang the parser).
"""
from __future__ import annotations

from socket import AF_INET, AF_INET6, inet_ntop
from struct import Struct, pack, unpack_from
from typing import Any, NamedTuple

from netsec.app import AppOutput

MAX_POINTERS = 16         # compression pointers followed in one name
MAX_NAME = 255           # bytes of a name (RFC 1035 2.3.4)
MAX_LABEL = 63
MAX_PENDING = 1024        # queries awaiting a response, per flow

RRTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
           33: "SRV", 35: "NAPTR", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
           64: "SVCB", 65: "HTTPS", 255: "ANY"}
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
          "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE")
RCODE_FORMERR, RCODE_NXDOMAIN = 1, 3
TYPE_A, TYPE_AAAA = 1, 28
CLASS_IN = 1
FLAG_QR, FLAG_AA, FLAG_RD, FLAG_RA = 0x8000, 0x0400, 0x0100, 0x0080
HEADER = Struct("!HHHHHH")   # id, flags, qd/an/ns/ar counts


class DnsError(ValueError):
    """A malformed DNS message, or a name that cannot be one; says what and at which offset."""


class Header(NamedTuple):
    id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int


class Question(NamedTuple):
    name: bytes        # dotted, no trailing dot, case as sent
    qtype: int
    qclass: int
    wire: bytes        # the question as sent, which an answer echoes


class Record(NamedTuple):
    name: bytes
    rtype: int
    ttl: int
    rdata: str | None  # presentation form for the types EVE shows, else None


class Message(NamedTuple):
    header: Header
    questions: list[Question]
    answers: list[Record]


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
                raise DnsError(f"more than {MAX_POINTERS} compression pointers in the name "
                               f"at offset {off} (a loop?)")
            if end < 0:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if n & 0xC0:
            raise DnsError(f"label length {n} at offset {off} is over {MAX_LABEL} "
                           "(a reserved label type)")
        total += n + 1
        if total > MAX_NAME:
            raise DnsError(f"name longer than {MAX_NAME} bytes at offset {off}")
        if off + 1 + n > len(msg):
            raise DnsError(f"label runs past the message at offset {off}")
        labels.append(msg[off + 1:off + 1 + n])
        off += 1 + n
    return b".".join(labels), (end if end >= 0 else off)


def parse_header(msg: bytes) -> Header:
    if len(msg) < HEADER.size:
        raise DnsError(f"message of {len(msg)} bytes is shorter than a DNS header "
                       f"({HEADER.size})")
    return Header(*HEADER.unpack_from(msg))


def read_question(msg: bytes, off: int) -> tuple[Question, int]:
    """The question at `off` and the offset after it."""
    name, end = read_name(msg, off)
    if end + 4 > len(msg):
        raise DnsError(f"question has no type and class at offset {end}")
    qtype, qclass = unpack_from("!HH", msg, end)
    return Question(name, qtype, qclass, msg[off:end + 4]), end + 4


def _rrtype(t: int) -> str:
    return RRTYPES.get(t, str(t))


def _rdata(msg: bytes, rtype: int, off: int, rdlen: int) -> str | None:
    if rtype == TYPE_A and rdlen == 4:
        return inet_ntop(AF_INET, msg[off:off + 4])
    if rtype == TYPE_AAAA and rdlen == 16:
        return inet_ntop(AF_INET6, msg[off:off + 16])
    if rtype in (2, 5, 12):
        return read_name(msg, off)[0].decode("latin-1")
    if rtype == 15:
        return read_name(msg, off + 2)[0].decode("latin-1")
    if rtype == 16 and rdlen:
        return msg[off + 1:off + 1 + msg[off]].decode("latin-1")
    return None


def parse_message(msg: bytes) -> Message:
    """The header, questions and answers (authority and additional records are counted in
    the header, not read); raises DnsError."""
    header = parse_header(msg)
    off = HEADER.size
    questions = []
    for _ in range(header.qdcount):
        q, off = read_question(msg, off)
        questions.append(q)
    answers = []
    for _ in range(header.ancount):
        name, off = read_name(msg, off)
        if off + 10 > len(msg):
            raise DnsError(f"truncated resource record at offset {off}")
        rtype, _cls, ttl, rdlen = unpack_from("!HHIH", msg, off)
        off += 10
        if off + rdlen > len(msg):
            raise DnsError(f"rdata overruns the message at offset {off}")
        answers.append(Record(name, rtype, ttl, _rdata(msg, rtype, off, rdlen)))
        off += rdlen
    return Message(header, questions, answers)


def parse_query(msg: bytes) -> tuple[Header, Question | None]:
    """A query's header and its one question; None for the question when the message is a
    response, asks other than one question, or the question is malformed (a server
    answers FORMERR). Raises DnsError when not even the header can be read."""
    header = parse_header(msg)
    if header.flags & FLAG_QR or header.qdcount != 1:
        return header, None
    try:
        return header, read_question(msg, HEADER.size)[0]
    except DnsError:
        return header, None


def looks_like_dns(data: bytes) -> bool:
    """True when `data` parses as a DNS header plus its questions (Suricata's probe)."""
    if len(data) < HEADER.size:
        return False
    flags, qd = unpack_from("!HH", data, 2)
    if (flags >> 11) & 0xF > 6 or not 0 < qd <= 16:
        return False
    try:
        off = HEADER.size
        for _ in range(qd):
            _, off = read_question(data, off)
    except DnsError:
        return False
    return True


# -- building messages (the resolver, the uplink check, the simulated internet) ----------

def encode_name(name: str) -> bytes:
    """`name` (dotted, a trailing dot optional, IDNA for non-ASCII) in wire form."""
    labels = name.removesuffix(".").split(".")
    try:
        wire = [label.encode("idna") for label in labels]
    except UnicodeError as e:
        raise DnsError(f"{name!r} is not a DNS name: {e}") from None
    for label in wire:
        if not 0 < len(label) <= MAX_LABEL:
            raise DnsError(f"{name!r} is not a DNS name: a label of {len(label)} bytes "
                           f"(1 to {MAX_LABEL})")
    out = b"".join(bytes([len(label)]) + label for label in wire) + b"\0"
    if len(out) > MAX_NAME:
        raise DnsError(f"{name!r} is not a DNS name: {len(out)} bytes (at most {MAX_NAME})")
    return out


def build_query(name: str, tid: int, qtype: int = TYPE_A) -> bytes:
    """A recursive (RD) query for `name`, class IN."""
    return HEADER.pack(tid, FLAG_RD, 1, 0, 0, 0) + encode_name(name) + pack("!HH", qtype,
                                                                            CLASS_IN)


def build_answer(query: Header, q: Question, rdata: bytes | None, ttl: int = 60) -> bytes:
    """An authoritative answer to `query`, whose first question is `q`: echoes `q` (any
    other record of the query, EDNS's say, is dropped) and adds one record of `q`'s type
    carrying `rdata` (None: none, an empty NOERROR answer)."""
    flags = FLAG_QR | FLAG_AA | (query.flags & FLAG_RD) | FLAG_RA
    out = HEADER.pack(query.id, flags, 1, 0 if rdata is None else 1, 0, 0) + q.wire
    if rdata is not None:
        # The record's name is a pointer to the question's, at offset 12.
        out += pack("!HHHIH", 0xC000 | HEADER.size, q.qtype, q.qclass, ttl, len(rdata)) + rdata
    return out


def build_error(query: Header, rcode: int) -> bytes:
    """A bare reply to `query` with `rcode` (FORMERR, NXDOMAIN, ...): header only."""
    flags = FLAG_QR | (query.flags & FLAG_RD) | FLAG_RA | rcode
    return HEADER.pack(query.id, flags, 0, 0, 0, 0)


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
        response = bool(m.header.flags & FLAG_QR)
        mid = m.header.id
        if response and mid in self._pending:
            tx_id = self._pending.pop(mid)
        else:
            tx_id = self._next_tx
            self._next_tx += 1
            if not response and len(self._pending) < MAX_PENDING:
                self._pending[mid] = tx_id
        names: list[bytes] = [q.name for q in m.questions]
        record = _eve(m, tx_id, response)
        buffers: dict[str, bytes | list[bytes]] | None = (
            None if response else {"dns.query": names})
        return [AppOutput(tx_id, to_server, buffers, record)]


def _eve(m: Message, tx_id: int, response: bool) -> dict[str, Any]:
    """Suricata's EVE dns v2 object for one message."""
    flags = m.header.flags
    qname, qtype = (m.questions[0].name, m.questions[0].qtype) if m.questions else (b"", 0)
    rec: dict[str, Any] = {"version": 2, "type": "answer" if response else "query",
                           "id": m.header.id, "tx_id": tx_id, "opcode": (flags >> 11) & 0xF,
                           "rrname": qname.decode("latin-1"), "rrtype": _rrtype(qtype)}
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
    for r in m.answers:
        a: dict[str, Any] = {"rrname": r.name.decode("latin-1"), "rrtype": _rrtype(r.rtype),
                             "ttl": r.ttl}
        if r.rdata is not None:
            a["rdata"] = r.rdata
            grouped.setdefault(_rrtype(r.rtype), []).append(r.rdata)
        answers.append(a)
    if answers:
        rec["answers"] = answers
        rec["grouped"] = grouped
    return rec
