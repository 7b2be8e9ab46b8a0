"""The owner's trust in a provider, kept in sys-sec's folder (`provider/`): the keys that
may sign bundles, how many must (threshold), the provider CA for its channel, the highest
bundle version applied, what the owner shares, and whether the provider is cut off.

Every write is atomic (a temporary file renamed over the old one), so a crash leaves the
old trust or the new one, never half of either.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.x509 import load_pem_x509_certificate

from netsec.bundle import key_id


class TrustError(ValueError):
    pass


@dataclass
class TrustState:
    provider: str = ""
    enrolled: bool = False
    revoked: bool = False
    threshold: int = 1
    last_version: int = 0
    share_alerts: bool = False
    disabled_sids: list[int] = field(default_factory=list)


def read_public_key(pem: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(pem)
    except ValueError as e:
        raise TrustError(f"{where}: not a public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise TrustError(f"{where}: not an Ed25519 public key")
    return key


class TrustStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    def load(self) -> TrustState:
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return TrustState()
        except (OSError, ValueError) as e:
            raise TrustError(f"{self.state_file}: {e}") from None
        known = {k: v for k, v in raw.items() if k in TrustState.__dataclass_fields__}
        return TrustState(**known)

    def save(self, state: TrustState) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        _atomic(self.state_file, json.dumps(asdict(state), indent=1).encode())

    def enroll(self, provider: str, keys: list[bytes], *, ca_pem: bytes | None = None,
               threshold: int = 1, root_json: bytes | None = None) -> TrustState:
        """Trust `keys` (PEM) for `provider`; everything is checked before anything changes."""
        parsed = [read_public_key(k, f"key {i + 1}") for i, k in enumerate(keys)]
        if not parsed:
            raise TrustError("no bundle-signing key given")
        if not 1 <= threshold <= len(parsed):
            raise TrustError(f"threshold {threshold} with {len(parsed)} key(s)")
        if ca_pem is not None:
            try:
                load_pem_x509_certificate(ca_pem)
            except ValueError as e:
                raise TrustError(f"provider CA: not a PEM certificate: {e}") from None
        if root_json is not None:
            try:
                root = json.loads(root_json)
                assert root["signed"]["_type"] == "root"
            except (ValueError, KeyError, TypeError, AssertionError):
                raise TrustError("root.json: not TUF root metadata") from None
        keys_dir = self.path / "keys"
        keys_dir.mkdir(parents=True, exist_ok=True)
        for old in keys_dir.glob("*.pub"):
            old.unlink()
        for pem, key in zip(keys, parsed, strict=True):
            _atomic(keys_dir / f"{key_id(key)}.pub", pem)
        for name, content in (("ca.pem", ca_pem), ("root.json", root_json)):
            if content is not None:
                _atomic(self.path / name, content)
        state = self.load()
        state = TrustState(provider=provider, enrolled=True, threshold=threshold,
                           last_version=state.last_version, share_alerts=state.share_alerts)
        self.save(state)
        return state

    def revoke(self) -> TrustState:
        state = self.load()
        state.revoked = True
        self.save(state)
        return state

    def trusted_keys(self) -> dict[str, Ed25519PublicKey]:
        state = self.load()
        if not state.enrolled or state.revoked:
            return {}
        return {p.stem: read_public_key(p.read_bytes(), str(p))
                for p in sorted((self.path / "keys").glob("*.pub"))}

    def provider_ca(self) -> bytes | None:
        ca = self.path / "ca.pem"
        return ca.read_bytes() if ca.exists() else None

    def record_applied(self, version: int) -> None:
        state = self.load()
        state.last_version = max(state.last_version, version)
        self.save(state)

    def update(self, **changes: Any) -> TrustState:
        state = self.load()
        for k, v in changes.items():
            setattr(state, k, v)
        self.save(state)
        return state


def _atomic(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
