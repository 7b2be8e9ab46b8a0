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
    return build(rules=inputs / "rules", lists=inputs / "lists", policy=inputs / "policy.toml",
                 key=key, provider="acme", version=version, created=created, valid_days=days)


def trusted(key: Ed25519PrivateKey = KEY, threshold: int = 1) -> TrustedKeys:
    return TrustedKeys.of(key.public_key(), threshold=threshold)


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
