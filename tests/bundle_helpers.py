"""Bundles for tests: a provider key, inputs made on the fly, and the bundle built from them."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from builder.bundle import build
from netsec.bundle import TrustedKeys

NOW = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)
RULE = ('alert http any any -> any any (msg:"provider rule {n}"; content:"evil{n}"; '
        'sid:{n}; rev:1;)\n')
KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()


def make(inputs: Path, version: int = 1, key: Ed25519PrivateKey = KEY, days: int = 30,
         created: dt.datetime = NOW) -> bytes:
    """The bundle of `inputs`: rules/, lists/, policy.toml, and clamav/, yara/ if there."""
    scanners = {name: inputs / name if (inputs / name).is_dir() else None
                for name in ("clamav", "yara")}
    return build(rules=inputs / "rules", lists=inputs / "lists", policy=inputs / "policy.toml",
                 key=key, provider="acme", version=version, created=created, valid_days=days,
                 **scanners)


def trusted(key: Ed25519PrivateKey = KEY, threshold: int = 1) -> TrustedKeys:
    return TrustedKeys.of(key.public_key(), threshold=threshold)


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


# -- archives no builder writes: what an attacker hands sys-sec -----------------------------

BLOCK = 512
GNU_MAGIC, USTAR_MAGIC = b"ustar  \0", b"ustar\x0000"


def octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def header(name: bytes | str, size: int = 0, kind: bytes = b"0", *, linkname: bytes = b"",
           magic: bytes = GNU_MAGIC, at: dict[int, bytes] | None = None) -> bytes:
    """One 512-byte tar header with a valid checksum; `at` puts raw bytes at offsets (the GNU
    sparse fields: 386 the map, 482 isextended, 483 realsize)."""
    raw = name.encode() if isinstance(name, str) else name
    h = bytearray(BLOCK)
    h[0:len(raw[:100])] = raw[:100]
    h[100:108], h[108:116], h[116:124] = octal(0o644, 8), octal(0, 8), octal(0, 8)
    h[124:136], h[136:148] = octal(size, 12), octal(0, 12)
    h[156:157] = kind
    h[157:157 + len(linkname[:100])] = linkname[:100]
    h[257:265] = magic
    for offset, value in (at or {}).items():
        h[offset:offset + len(value)] = value
    h[148:156] = b" " * 8
    h[148:156] = octal(sum(h), 7) + b" "
    return bytes(h)


def padded(content: bytes) -> bytes:
    return content + b"\0" * (-len(content) % BLOCK)


def member(name: bytes | str, content: bytes = b"", kind: bytes = b"0", **kw: object) -> bytes:
    return header(name, len(content), kind, **kw) + padded(content)  # type: ignore[arg-type]


def pax(records: dict[str, str], kind: bytes = b"x") -> bytes:
    """A pax extended header (`x`, or `g` for a global one) carrying these records."""
    body = b""
    for key, value in records.items():
        rec = f" {key}={value}\n".encode()
        n = len(rec) + 1     # a record's length counts its own digits
        while len(str(n)) + len(rec) != n:
            n += 1
        body += str(n).encode() + rec
    return member("././@PaxHeader", body, kind)


def gnu_sparse(name: str, realsize: int, stored: bytes = b"x") -> bytes:
    """An old-style GNU sparse member (type S): `stored` bytes on disk that read as
    `realsize` bytes, the rest a hole."""
    sparse_map = octal(realsize - len(stored), 12) + octal(len(stored), 12)
    return header(name, len(stored), b"S", at={386: sparse_map, 483: octal(realsize, 12)}) \
        + padded(stored)


def end() -> bytes:
    return b"\0" * (2 * BLOCK)


def sparse_bomb(members: int, realsize: int) -> bytes:
    """`members` GNU sparse rule files of `realsize` bytes each, a few KB on the wire."""
    return b"".join(gnu_sparse(f"rules/r{i}.rules", realsize) for i in range(members)) + end()


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def signed_members(manifest: bytes, key: Ed25519PrivateKey = KEY,
                   signatures: bytes | None = None) -> bytes:
    """manifest.json (signed with `key`, unless `signatures` replaces the signatures) and
    signatures.json as tar members, in a bundle's order."""
    import base64
    import json

    from netsec.bundle import key_id
    sigs = signatures if signatures is not None else json.dumps(
        [{"keyid": key_id(key.public_key()),
          "sig": base64.b64encode(key.sign(manifest)).decode()}]).encode()
    return member("manifest.json", manifest) + member("signatures.json", sigs)
