"""Making a provider's security bundle: rules, block lists and a policy, signed with the
provider's Ed25519 key, byte for byte the same from the same inputs (what netsec/bundle.py
verifies). Nothing in it depends on the clock or the machine: `created` is given (or taken
from SOURCE_DATE_EPOCH), tar entries are sorted with fixed owners, modes and times.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import tarfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from netsec.bundle import FORMAT, key_id


class BuildError(ValueError):
    pass


def keygen(private_path: Path) -> Path:
    """A new provider key: PEM private key at `private_path`, public key beside it (.pub)."""
    key = Ed25519PrivateKey.generate()
    private_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                               NoEncryption()))
    private_path.chmod(0o600)
    public = private_path.with_suffix(".pub")
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM,
                                                     PublicFormat.SubjectPublicKeyInfo))
    return public


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: not a private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BuildError(f"{path}: not an Ed25519 key")
    return key


def _inputs(rules: Path, lists: Path | None, policy: Path | None) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    rule_files = [rules] if rules.is_file() else sorted(rules.glob("*.rules"))
    if not rule_files:
        raise BuildError(f"{rules}: no .rules files")
    for f in rule_files:
        files[f"rules/{f.name}"] = f.read_bytes()
    for f in sorted(lists.glob("*.txt")) if lists else []:
        files[f"lists/{f.name}"] = f.read_bytes()
    if policy is not None:
        files["policy.toml"] = policy.read_bytes()
    return files


def _entry(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(content), 0, 0o644, 0, 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(content))


def build(*, rules: Path, lists: Path | None, policy: Path | None, key: Ed25519PrivateKey,
          provider: str, version: int, created: dt.datetime, valid_days: int) -> bytes:
    files = _inputs(rules, lists, policy)
    manifest = json.dumps({
        "format": FORMAT, "provider": provider, "version": version,
        "created": created.isoformat(),
        "expires": (created + dt.timedelta(days=valid_days)).isoformat(),
        "files": {n: {"size": len(c), "sha256": hashlib.sha256(c).hexdigest()}
                  for n, c in sorted(files.items())}}, sort_keys=True, indent=1).encode()
    signatures = json.dumps([{"keyid": key_id(key.public_key()),
                              "sig": base64.b64encode(key.sign(manifest)).decode()}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.USTAR_FORMAT) as tar:
        _entry(tar, "manifest.json", manifest)
        _entry(tar, "signatures.json", signatures)
        for name, content in sorted(files.items()):
            _entry(tar, name, content)
    return out.getvalue()
