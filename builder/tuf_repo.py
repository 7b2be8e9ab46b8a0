"""Publishing bundles for fleets: a TUF repository (root, targets, snapshot, timestamp) in a
plain folder any static web server or CDN can serve. sys-sec's subscription client
(netsec/subscription.py) polls it with python-tuf's ngclient, so a provider serves many
laptops with ordinary web infrastructure and TUF's guarantees (signed, fresh, no rollback,
no mix-and-match) on top of the bundle's own signature.

    REPO/metadata/{1.root.json,root.json,targets.json,snapshot.json,timestamp.json}
    REPO/targets/sys-sec.bundle     the newest bundle
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

TARGET = "sys-sec.bundle"
ROLES = ("root", "targets", "snapshot", "timestamp")


def _signer(key: Ed25519PrivateKey) -> CryptoSigner:
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


def publish(repo: Path, key: Ed25519PrivateKey, bundle: bytes, *, now: dt.datetime,
            expires_days: int = 7) -> int:
    """Add `bundle` as the newest target; returns the targets version now served."""
    meta, targets_dir = repo / "metadata", repo / "targets"
    meta.mkdir(parents=True, exist_ok=True)
    targets_dir.mkdir(exist_ok=True)
    signer = _signer(key)
    expires = now + dt.timedelta(days=expires_days)
    serializer = JSONSerializer(compact=False)
    if not (meta / "root.json").exists():
        root = Root(expires=now + dt.timedelta(days=365), consistent_snapshot=False)
        for role in ROLES:
            root.add_key(signer.public_key, role)
        md_root = Metadata(root)
        md_root.sign(signer)
        md_root.to_file(str(meta / "1.root.json"), serializer)
        shutil.copy(meta / "1.root.json", meta / "root.json")
        targets, snapshot, timestamp = Targets(), Snapshot(), Timestamp()
        targets.version = snapshot.version = timestamp.version = 0
    else:
        targets = Metadata[Targets].from_file(str(meta / "targets.json")).signed
        snapshot = Metadata[Snapshot].from_file(str(meta / "snapshot.json")).signed
        timestamp = Metadata[Timestamp].from_file(str(meta / "timestamp.json")).signed
    (targets_dir / TARGET).write_bytes(bundle)
    targets.targets = {TARGET: TargetFile.from_data(TARGET, bundle)}
    targets.version += 1
    snapshot.meta = {"targets.json": MetaFile(version=targets.version)}
    snapshot.version += 1
    timestamp.snapshot_meta = MetaFile(version=snapshot.version)
    timestamp.version += 1
    for name, signed in (("targets", targets), ("snapshot", snapshot),
                         ("timestamp", timestamp)):
        signed.expires = expires
        md = Metadata(signed)
        md.sign(signer)
        md.to_file(str(meta / f"{name}.json"), serializer)
    return targets.version
