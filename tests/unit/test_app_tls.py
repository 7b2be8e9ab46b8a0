"""TLS: ClientHello SNI and JA3 (GREASE excluded), ServerHello JA3S, the server certificate."""
from __future__ import annotations

import datetime
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from scapy.layers.tls.extensions import (
    ServerName,
    TLS_Ext_ServerName,
    TLS_Ext_SupportedGroups,
    TLS_Ext_SupportedPointFormat,
)
from scapy.layers.tls.handshake import TLSClientHello, TLSServerHello
from scapy.layers.tls.record import TLS

from netsec.app.tls import TlsParser, is_grease


def client_hello_record(sni: str) -> bytes:
    ch = TLSClientHello(version=0x0303, ciphers=[0x0A0A, 0xC02B, 0x002F], ext=[
        TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())]),
        TLS_Ext_SupportedGroups(groups=[0x1A1A, 29, 23]),
        TLS_Ext_SupportedPointFormat(ecpl=[0])])
    return bytes(TLS(version=0x0301, msg=[ch]))


def _record(rtype: int, body: bytes) -> bytes:
    return bytes((rtype, 3, 3)) + len(body).to_bytes(2, "big") + body


def _handshake(mtype: int, body: bytes) -> bytes:
    return bytes((mtype,)) + len(body).to_bytes(3, "big") + body


def _cert_der(serial: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "Example CA")])
    now = datetime.datetime(2025, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(serial).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_client_hello_sni_and_ja3_without_grease() -> None:
    [out] = TlsParser().feed(client_hello_record("a.example"), True)
    ja3 = "771,49195-47,0-10-11,29-23,0"
    assert out.buffers == {"tls.sni": b"a.example", "ja3.string": ja3.encode(),
                           "ja3.hash": hashlib.md5(ja3.encode()).hexdigest().encode()}
    assert out.tx_id == 0 and out.to_server


def test_client_hello_split_byte_by_byte_and_across_records() -> None:
    rec = client_hello_record("b.example")
    p = TlsParser()
    outs = [o for i in range(len(rec)) for o in p.feed(rec[i:i + 1], True)]
    assert [o.buffers["tls.sni"] for o in outs] == [b"b.example"]
    # the same handshake message split over two records
    hs = rec[5:]
    two = _record(22, hs[:20]) + _record(22, hs[20:])
    [o] = TlsParser().feed(two, True)
    assert o.buffers["tls.sni"] == b"b.example"


def test_server_hello_certificate_and_eve_record() -> None:
    p = TlsParser()
    p.feed(client_hello_record("c.example"), True)
    sh = bytes(TLS(version=0x0303, msg=[TLSServerHello(version=0x0303, cipher=0xC02B)]))
    der = _cert_der(0x00AB12)
    certs = (len(der) + 3).to_bytes(3, "big") + len(der).to_bytes(3, "big") + der
    out = p.feed(sh + _record(22, _handshake(11, certs)), False)
    assert out[0].buffers["ja3s.string"] == b"771,49195,"
    assert out[0].buffers["ja3s.hash"] == hashlib.md5(b"771,49195,").hexdigest().encode()
    cert = out[1].buffers
    assert cert["tls.cert_subject"] == b"C=US, O=Example, CN=example.com"
    assert cert["tls.cert_issuer"] == b"C=US, CN=Example CA"
    # the DER INTEGER bytes, as Suricata prints them: a high first bit keeps its 00 byte
    assert cert["tls.cert_serial"] == b"00:AB:12"
    assert cert["tls.certs"] == [der]
    rec = out[2].record
    assert rec["sni"] == "c.example" and rec["version"] == "TLS 1.2"
    assert rec["subject"] == "C=US, O=Example, CN=example.com" and rec["serial"] == "00:AB:12"
    assert rec["fingerprint"] == ":".join(f"{b:02x}" for b in hashlib.sha1(der).digest())
    assert (rec["notbefore"], rec["notafter"]) == ("2025-01-01T00:00:00", "2025-01-31T00:00:00")
    assert rec["ja3"]["string"] == "771,49195-47,0-10-11,29-23,0" and "hash" in rec["ja3s"]
    assert p.finish() == []   # logged once


def test_encrypted_records_end_parsing_and_garbage_is_ignored() -> None:
    p = TlsParser()
    assert p.feed(_record(20, b"\x01") + client_hello_record("x"), True) == []
    assert TlsParser().feed(_record(22, _handshake(1, b"\x03\x03short")), True) == []


def test_grease_values() -> None:
    assert all(is_grease(v) for v in (0x0A0A, 0x1A1A, 0xFAFA))
    assert not any(is_grease(v) for v in (0x0A1A, 0x002F, 0xC02B))
