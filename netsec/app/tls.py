"""TLS handshakes: ClientHello (SNI, JA3), ServerHello (version, JA3S) and the server's
Certificate (subject, issuer, serial), across records and TCP segments.

Records are reassembled across TCP segments and handshake messages across records (a
1.5-2 KB ClientHello over several segments or records is parsed once whole); a message is
inspected on the segment that completes it. Bounds: a record longer than `record_limit`
raises "applayer.tls.record_too_long", a handshake message longer than `handshake_limit`
"applayer.tls.handshake_too_long" (in `events`); that direction is not parsed further.

The whole handshake is one transaction (tx_id 0). Inspections: at the ClientHello
(`tls.sni`, `ja3.hash`, `ja3.string`), at the ServerHello (`ja3s.hash`, `ja3s.string`) and at
the Certificate (`tls.cert_subject`, `tls.cert_issuer`, `tls.cert_serial`, `tls.certs`).
One EVE `tls` record when the server's certificate has been seen, or when the server starts
encrypting (TLS 1.3 hides the certificate), or at flow end. JA3 ignores GREASE values.
"""
from __future__ import annotations

import hashlib
from struct import error as StructError
from struct import unpack_from
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from netsec.app import AppOutput, normalize

_HANDSHAKE = 22
VERSIONS = {0x0300: "SSLv3", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2",
            0x0304: "TLS 1.3"}
_SHORT_NAMES = {
    NameOID.COUNTRY_NAME: "C", NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L", NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.DOMAIN_COMPONENT: "DC", NameOID.STREET_ADDRESS: "street",
}


class TlsError(ValueError):
    """A malformed handshake message."""


def is_grease(v: int) -> bool:
    return v & 0x0F0F == 0x0A0A and v >> 8 == v & 0xFF


def _u16s(data: bytes) -> list[int]:
    return [v for v in unpack_from(f"!{len(data) // 2}H", data) if not is_grease(v)]


def _extensions(body: bytes, off: int) -> list[tuple[int, bytes]]:
    if off + 2 > len(body):
        return []
    end = off + 2 + unpack_from("!H", body, off)[0]
    off += 2
    exts = []
    while off + 4 <= min(end, len(body)):
        etype, elen = unpack_from("!HH", body, off)
        exts.append((etype, body[off + 4:off + 4 + elen]))
        off += 4 + elen
    return exts


def client_hello(body: bytes) -> dict[str, Any]:
    """SNI and JA3 of a ClientHello body (after the 4-byte handshake header)."""
    if len(body) < 39:
        raise TlsError("ClientHello shorter than its fixed fields")
    version = unpack_from("!H", body, 0)[0]
    off = 34
    off += 1 + body[off]
    cs_len = unpack_from("!H", body, off)[0]
    ciphers = _u16s(body[off + 2:off + 2 + cs_len])
    off += 2 + cs_len
    off += 1 + body[off]
    sni = b""
    ext_ids, curves, points = [], [], []
    for etype, data in _extensions(body, off):
        if is_grease(etype):
            continue
        ext_ids.append(etype)
        if etype == 0 and len(data) >= 5 and data[2] == 0:
            sni = data[5:5 + unpack_from("!H", data, 3)[0]]
        elif etype == 10 and len(data) >= 2:
            curves = _u16s(data[2:2 + unpack_from("!H", data, 0)[0]])
        elif etype == 11 and data:
            points = list(data[1:1 + data[0]])
    ja3 = ",".join([str(version), "-".join(map(str, ciphers)), "-".join(map(str, ext_ids)),
                    "-".join(map(str, curves)), "-".join(map(str, points))])
    return {"version": version, "sni": sni, "ja3": ja3}


def server_hello(body: bytes) -> dict[str, Any]:
    """Version (supported_versions honoured) and JA3S of a ServerHello body."""
    if len(body) < 38:
        raise TlsError("ServerHello shorter than its fixed fields")
    version = unpack_from("!H", body, 0)[0]
    off = 34
    off += 1 + body[off]
    if off + 3 > len(body):
        raise TlsError("ServerHello truncated before its cipher suite")
    cipher = unpack_from("!H", body, off)[0]
    off += 3
    ext_ids = []
    negotiated = version
    for etype, data in _extensions(body, off):
        ext_ids.append(etype)
        if etype == 43 and len(data) == 2:
            negotiated = unpack_from("!H", data, 0)[0]
    ja3s = f"{version},{cipher},{'-'.join(map(str, ext_ids))}"
    return {"version": negotiated, "ja3s": ja3s}


def render_name(name: x509.Name) -> str:
    """A certificate name as Suricata prints it: "C=US, O=Example, CN=example.com"."""
    parts = []
    for rdn in name.rdns:
        for attr in rdn:
            key = _SHORT_NAMES.get(attr.oid, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def certificate(body: bytes) -> dict[str, Any]:
    """Subject, issuer, serial, SHA-1 fingerprint and validity of the first certificate of a
    Certificate message (as Suricata's EVE tls object shows them)."""
    if len(body) < 6:
        raise TlsError("Certificate message too short")
    total = int.from_bytes(body[:3], "big")
    certs = []
    off = 3
    while off + 3 <= min(3 + total, len(body)):
        n = int.from_bytes(body[off:off + 3], "big")
        certs.append(body[off + 3:off + 3 + n])
        off += 3 + n
    if not certs:
        raise TlsError("Certificate message without certificates")
    try:
        cert = x509.load_der_x509_certificate(certs[0])
        subject, issuer = render_name(cert.subject), render_name(cert.issuer)
        serial = cert.serial_number
        validity = (cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%S"),
                    cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S"))
    except ValueError as e:
        raise TlsError(f"unparsable certificate: {e}") from e
    raw = serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=False)
    if len(raw) > 1 and raw[0] == 0 and raw[1] < 0x80:
        raw = raw[1:]
    return {"subject": subject, "issuer": issuer,
            "serial": ":".join(f"{b:02X}" for b in raw), "certs": certs,
            "fingerprint": ":".join(f"{b:02x}" for b in hashlib.sha1(certs[0]).digest()),
            "notbefore": validity[0], "notafter": validity[1]}


class TlsParser:
    proto = "tls"

    def __init__(self, record_limit: int = (1 << 14) + 2048,
                 handshake_limit: int = 256 * 1024) -> None:
        self.record_limit = record_limit
        self.handshake_limit = handshake_limit
        self.events: list[str] = []     # anomalies since the caller last emptied it
        self._records = [b"", b""]      # unparsed record bytes per direction (client = 1)
        self._handshake = [b"", b""]    # handshake bytes reassembled across records
        self._done = [False, False]     # the direction went encrypted or broke
        self._record: dict[str, Any] = {}
        self._logged = False

    def feed(self, data: bytes, to_server: bool) -> list[AppOutput]:
        side = 1 if to_server else 0
        if self._done[side]:
            return []
        buf = self._records[side] + data
        out: list[AppOutput] = []
        while len(buf) >= 5 and not self._done[side]:
            rtype, _ver, rlen = unpack_from("!BHH", buf, 0)
            if rlen > self.record_limit:
                self.events.append("applayer.tls.record_too_long")
                self._done[side] = True
                buf = b""
                break
            if len(buf) < 5 + rlen:
                break
            fragment, buf = buf[5:5 + rlen], buf[5 + rlen:]
            if rtype == _HANDSHAKE:
                self._handshake[side] += fragment
                self._messages(side, out)
            else:   # ChangeCipherSpec, alert, application data: the rest is encrypted
                self._done[side] = True
                if not to_server:
                    self._log(out)
        self._records[side] = buf
        return out

    def end_of_stream(self, to_server: bool) -> list[AppOutput]:
        return []

    def finish(self) -> list[AppOutput]:
        out: list[AppOutput] = []
        self._log(out)
        return out

    def _messages(self, side: int, out: list[AppOutput]) -> None:
        hs = self._handshake[side]
        while len(hs) >= 4:
            mtype = hs[0]
            n = int.from_bytes(hs[1:4], "big")
            if n > self.handshake_limit:
                self.events.append("applayer.tls.handshake_too_long")
                self._done[side] = True
                hs = b""
                break
            if len(hs) < 4 + n:
                break
            body, hs = hs[4:4 + n], hs[4 + n:]
            try:
                self._message(mtype, body, side, out)
            except (TlsError, IndexError, ValueError, StructError):
                self._done[side] = True
                hs = b""
        self._handshake[side] = hs

    def _message(self, mtype: int, body: bytes, side: int, out: list[AppOutput]) -> None:
        rec = self._record
        if mtype == 1 and side:
            ch = client_hello(body)
            ja3_hash = hashlib.md5(ch["ja3"].encode()).hexdigest()
            rec["ja3"] = {"hash": ja3_hash, "string": ch["ja3"]}
            bufs: dict[str, bytes | list[bytes]] = {
                "ja3.hash": ja3_hash.encode(), "ja3.string": ch["ja3"].encode()}
            if ch["sni"]:
                rec["sni"] = ch["sni"].decode("latin-1")   # EVE: as sent, as Suricata
                # rules and block lists see the name normalised: case, trailing dot, IDN
                bufs["tls.sni"] = normalize.name(ch["sni"])
            out.append(AppOutput(0, True, bufs))
        elif mtype == 2 and not side:
            sh = server_hello(body)
            ja3s_hash = hashlib.md5(sh["ja3s"].encode()).hexdigest()
            rec["version"] = VERSIONS.get(sh["version"], f"0x{sh['version']:04x}")
            rec["ja3s"] = {"hash": ja3s_hash, "string": sh["ja3s"]}
            out.append(AppOutput(0, False, {"ja3s.hash": ja3s_hash.encode(),
                                            "ja3s.string": sh["ja3s"].encode(),
                                            "tls.version": rec["version"].encode()}))
        elif mtype == 11 and not side:
            cert = certificate(body)
            rec.update(subject=cert["subject"], issuerdn=cert["issuer"],
                       serial=cert["serial"], fingerprint=cert["fingerprint"],
                       notbefore=cert["notbefore"], notafter=cert["notafter"])
            out.append(AppOutput(0, False, {
                "tls.cert_subject": cert["subject"].encode(),
                "tls.cert_issuer": cert["issuer"].encode(),
                "tls.cert_serial": cert["serial"].encode(), "tls.certs": cert["certs"]}))
            self._log(out)

    def _log(self, out: list[AppOutput]) -> None:
        if not self._logged and self._record:
            self._logged = True
            out.append(AppOutput(0, False, None, dict(self._record)))
