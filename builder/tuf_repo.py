"""Publishing bundles for fleets: a TUF repository (root, targets, snapshot, timestamp) in a
plain folder any static web server or CDN can serve. sys-sec's subscription client
(netsec/subscription.py) polls it with python-tuf's ngclient, so a provider serves many
laptops with ordinary web infrastructure and TUF's guarantees (signed, fresh, no rollback,
no mix-and-match) on top of the bundle's own signature.

    REPO/metadata/{1.root.json,root.json,targets.json,snapshot.json,timestamp.json}
    REPO/targets/sys-sec.bundle     the newest bundle

Keys: the targets role is the provider's bundle key (so the owner who enrolls the root has
pinned the bundle key too); root, snapshot and timestamp each get their own key in a keys
folder kept apart from REPO, made at the first publish. Without a keys folder one key signs
every role (tests, small setups).
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from builder.bundle import BuildError, keygen, load_key
from netsec.bundle import BundleError, TrustedKeys, verify

TARGET = "sys-sec.bundle"
ROLES = ("root", "targets", "snapshot", "timestamp")
ROOT_DAYS = 365


def _signer(key: Ed25519PrivateKey) -> CryptoSigner:
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


@dataclass(frozen=True)
class RepoKeys:
    signers: dict[str, CryptoSigner]     # role -> its signer

    @classmethod
    def single(cls, key: Ed25519PrivateKey) -> RepoKeys:
        return cls({role: _signer(key) for role in ROLES})

    @classmethod
    def in_folder(cls, folder: Path, targets: Ed25519PrivateKey) -> RepoKeys:
        """`targets` for targets; FOLDER/<role>.key for the others, made when missing."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        signers = {"targets": _signer(targets)}
        for role in ("root", "snapshot", "timestamp"):
            path = folder / f"{role}.key"
            if not path.exists():
                keygen(path)
            signers[role] = _signer(load_key(path))
        return cls(signers)


def _write(path: Path, content: bytes) -> None:
    """Whole or not at all: a web server never serves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def _sign_and_write(signed: Root | Targets | Snapshot | Timestamp, signer: CryptoSigner,
                    path: Path) -> None:
    # Metadata's T is constrained to one role at a time; the four are signed alike.
    md: Metadata[Any] = Metadata(signed)  # type: ignore[type-var]
    md.sign(signer)
    _write(path, md.to_bytes(JSONSerializer(compact=False)))


def published_version(repo: Path) -> int:
    """The bundle version the repository serves now (0 when none)."""
    path = repo / "metadata" / "targets.json"
    if not path.exists():
        return 0
    target = Metadata[Targets].from_bytes(path.read_bytes()).signed.targets.get(TARGET)
    return int(target.custom.get("version", 0)) if target else 0


def publish(repo: Path, key: Ed25519PrivateKey, bundle: bytes, *, now: dt.datetime,
            expires_days: int = 7, keys_dir: Path | None = None) -> int:
    """Serve `bundle` (signed by `key`, newer than what REPO serves) as the newest target;
    returns the targets metadata version now served."""
    try:
        version = verify(bundle, TrustedKeys.of(key.public_key()), now=now,
                         min_version=0).version
    except BundleError as e:
        raise BuildError(f"not publishing it: {e}") from None
    current = published_version(repo)
    if version <= current:
        raise BuildError(f"not publishing it: bundle {version} is not newer than the "
                         f"{current} {repo} serves (sys-sec would refuse it as a rollback)")
    keys = RepoKeys.in_folder(keys_dir, key) if keys_dir else RepoKeys.single(key)
    meta, targets_dir = repo / "metadata", repo / "targets"
    meta.mkdir(parents=True, exist_ok=True)
    targets_dir.mkdir(exist_ok=True)
    expires = now + dt.timedelta(days=expires_days)
    if not (meta / "root.json").exists():
        root = Root(expires=now + dt.timedelta(days=ROOT_DAYS), consistent_snapshot=False)
        for role in ROLES:
            root.add_key(keys.signers[role].public_key, role)
        _sign_and_write(root, keys.signers["root"], meta / "1.root.json")
        _write(meta / "root.json", (meta / "1.root.json").read_bytes())
        targets, snapshot, timestamp = Targets(), Snapshot(), Timestamp()
        targets.version = snapshot.version = timestamp.version = 0
    else:
        root = Metadata[Root].from_bytes((meta / "root.json").read_bytes()).signed
        for role in ROLES:
            if keys.signers[role].public_key.keyid not in root.roles[role].keyids:
                raise BuildError(f"{repo}: its root does not list this {role} key (another "
                                 "key or keys folder set the repository up)")
        targets = Metadata[Targets].from_bytes((meta / "targets.json").read_bytes()).signed
        snapshot = Metadata[Snapshot].from_bytes((meta / "snapshot.json").read_bytes()).signed
        timestamp = Metadata[Timestamp].from_bytes(
            (meta / "timestamp.json").read_bytes()).signed
    # The order clients read in reverse: target, targets, snapshot, then timestamp last.
    _write(targets_dir / TARGET, bundle)
    target = TargetFile.from_data(TARGET, bundle)
    target.unrecognized_fields["custom"] = {"version": version}
    targets.targets = {TARGET: target}
    targets.version += 1
    snapshot.meta = {"targets.json": MetaFile(version=targets.version)}
    snapshot.version += 1
    timestamp.snapshot_meta = MetaFile(version=snapshot.version)
    timestamp.version += 1
    for name, signed in (("targets", targets), ("snapshot", snapshot),
                         ("timestamp", timestamp)):
        signed.expires = expires
        _sign_and_write(signed, keys.signers[name], meta / f"{name}.json")
    return targets.version
