"""The owner's trust in a provider, kept in sys-sec's folder (`provider/`): the provider's
TUF root (`root.json`, where the subscription starts), the keys that may sign bundles
(`keys/<key id>.pub`) and how many must (threshold), the provider CA for its channel
(`ca.pem`), the highest bundle version applied, what the owner shares, and whether the
provider is cut off (`state.json`).

Every file is written atomically (temporary file, fsync, rename, fsync of the folder), and
`state.json` is written last and names the keys in force: a crash during an enrollment
leaves the old key set or the new one, never a mix. Everything given to `enroll` is checked
before the first byte is written, so bad input changes nothing.

A recorded version that is no bundle version (not an integer, or outside 0 to MAX_VERSION:
an older release recorded a signed 2**64) leaves the rest of the state readable, so the
channel still answers and a revocation still holds, but the anti-rollback floor is
unknown: no bundle applies until the owner enrolls the provider again. Clamping is no way
out: clamped to MAX_VERSION no bundle could ever be newer; clamped lower, or to the bundles
folder's highest name, every signed bundle above it could be replayed, and sys-sec cannot
tell which of them the provider issued before its bogus one. The owner can.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from cryptography.x509 import load_pem_x509_certificate

from netsec.bundle import MAX_VERSION, BundleError, TrustedKeys, check_json_shape, key_id
from netsec.trust_dir import DEFAULT_DIR, ENV_DIR, default_dir  # noqa: F401 (the store's own)

MAX_INPUT = 1 << 20     # a root, key or certificate bigger than this is not one


class TrustError(ValueError):
    """Input the trust store refuses, or a store it cannot read; the message says which."""


@dataclass
class TrustState:
    provider: str = ""
    enrolled: bool = False
    revoked: bool = False
    threshold: int = 1
    keys: list[str] = field(default_factory=list)    # key ids of keys/<id>.pub in force
    last_version: int | None = 0    # None: the file's record is no version (bad_version)
    share_alerts: bool = False
    disabled_sids: list[int] = field(default_factory=list)
    # The unusable record as found, written back as it was until the owner enrolls again.
    bad_version: Any = field(default=None, compare=False, repr=False)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "provider": str, "enrolled": bool, "revoked": bool, "threshold": int, "keys": list,
    "last_version": int, "share_alerts": bool, "disabled_sids": list}


def is_version(value: Any) -> bool:
    """A bundle version the channel can carry: GetStatusResponse's fields are uint64."""
    return type(value) is int and 0 <= value <= MAX_VERSION


def read_public_key(pem: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise TrustError(f"{where}: not a PEM public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise TrustError(f"{where}: a {type(key).__name__.removeprefix('_')}, but bundles are "
                         "signed with Ed25519 keys")
    return key


def _pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def root_targets_keys(root_json: bytes) -> tuple[list[Ed25519PublicKey], int]:
    """Check that `root_json` is TUF root metadata signed by its own root keys; return the
    Ed25519 keys of its targets role and that role's threshold. The provider signs bundles
    with its targets key, so enrolling the root alone pins the bundle keys too."""
    from tuf.api.exceptions import UnsignedMetadataError
    from tuf.api.metadata import Metadata, Root
    try:
        check_json_shape(root_json, "root.json")   # before tuf's json.loads holds it
    except BundleError as e:
        raise TrustError(str(e)) from None
    try:
        md = Metadata[Root].from_bytes(root_json)
        if not isinstance(md.signed, Root):
            raise TrustError(f"root.json: {md.signed.type} metadata, not root")
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except TrustError:
        raise
    except UnsignedMetadataError as e:
        raise TrustError(f"root.json: not signed by its own root keys ({e})") from None
    except Exception as e:   # tuf raises many kinds for malformed input; all mean "not a root"
        raise TrustError(f"root.json: not TUF root metadata ({type(e).__name__}: {e})") \
            from None
    role = md.signed.get_delegated_role("targets")
    keys = []
    for kid in role.keyids:
        tuf_key = md.signed.keys[kid]
        if tuf_key.keytype == "ed25519" and "public" in tuf_key.keyval:
            keys.append(Ed25519PublicKey.from_public_bytes(
                bytes.fromhex(tuf_key.keyval["public"])))
    return keys, role.threshold


class TrustStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_dir()

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def root_file(self) -> Path:
        return self.path / "root.json"

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> TrustState:
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return TrustState()
        except (OSError, ValueError) as e:
            raise TrustError(f"{self.state_file}: unreadable ({e})") from None
        if not isinstance(raw, dict):
            raise TrustError(f"{self.state_file}: not a JSON object")
        known: dict[str, Any] = {}
        for f in fields(TrustState):
            if f.name in raw and f.name in _TYPES:
                if f.name == "last_version" and not is_version(raw[f.name]):
                    known.update(last_version=None, bad_version=raw[f.name])
                elif not isinstance(raw[f.name], _TYPES[f.name]):
                    raise TrustError(f"{self.state_file}: {f.name} has the wrong type")
                else:
                    known[f.name] = raw[f.name]
        return TrustState(**known)

    def version_problem(self, state: TrustState) -> str:
        """Why `state` has no applied version, naming the file and the value; "" if it has."""
        if state.last_version is not None:
            return ""
        return (f"{self.state_file}: last_version {json.dumps(state.bad_version)[:60]} is not "
                f"a bundle version (an integer from 0 to {MAX_VERSION}), so which bundles "
                "would be a rollback is unknown; no bundle applies until the owner enrolls "
                "the provider again (hyperwall provider enroll), which starts the count over")

    @property
    def last_version(self) -> int | None:
        return self.load().last_version

    def trusted_keys(self) -> TrustedKeys:
        """The enrolled bundle keys; none at all when nothing is enrolled or it is revoked."""
        state = self.load()
        if not state.enrolled or state.revoked:
            return TrustedKeys({}, max(state.threshold, 1))
        keys = {}
        for kid in state.keys:
            path = self.path / "keys" / f"{kid}.pub"
            try:
                keys[kid] = read_public_key(path.read_bytes(), str(path))
            except OSError as e:
                raise TrustError(f"{path}: {e.strerror}") from None
        return TrustedKeys(keys, state.threshold)

    def provider_ca(self) -> bytes | None:
        ca = self.path / "ca.pem"
        return ca.read_bytes() if ca.exists() else None

    def root_json(self) -> bytes | None:
        return self.root_file.read_bytes() if self.root_file.exists() else None

    # -- changing --------------------------------------------------------------------------

    def save(self, state: TrustState) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = {k: v for k, v in asdict(state).items() if k in _TYPES}
        if state.last_version is None:
            record["last_version"] = state.bad_version
        _atomic(self.state_file, json.dumps(record, indent=1).encode())

    def enroll(self, root_json: bytes | None, bundle_keys: Sequence[bytes] = (),
               ca_pem: bytes | None = None, *, provider: str = "",
               threshold: int | None = None) -> TrustState:
        """Trust a provider: its TUF root, its bundle keys (PEM; taken from the root's
        targets role when none are given) and its channel CA. Replaces any earlier
        enrollment whole and lifts a revocation. The applied version is kept when the
        bundle keys stay the same (no rollback through a re-enrollment) and starts over
        for new keys (another provider numbers its bundles its own way) or when the record
        is no version (the owner's enrollment is the word sys-sec waited for); what the
        owner shares and the rules switched off stay, whoever is enrolled. A state file
        that cannot be read at all is kept beside as `state.json.unreadable`, and this
        enrollment starts from nothing (nothing shared, no rule switched off)."""
        for what, blob in (("root.json", root_json), ("provider CA", ca_pem),
                           *((f"bundle key {i + 1}", k) for i, k in enumerate(bundle_keys))):
            if blob is not None and len(blob) > MAX_INPUT:
                raise TrustError(f"{what}: {len(blob)} bytes, too big to be one")
        keys = [read_public_key(k, f"bundle key {i + 1}") for i, k in enumerate(bundle_keys)]
        root_threshold = 1
        if root_json is not None:
            from_root, root_threshold = root_targets_keys(root_json)
            if not keys:
                keys = from_root
                if not keys:
                    raise TrustError("root.json: its targets role has no Ed25519 key; give "
                                     "the bundle key with --bundle-key")
        if not keys:
            raise TrustError("no bundle-signing key: give the provider's root.json or a key")
        ids = sorted({key_id(k): k for k in keys})
        threshold = threshold if threshold is not None else \
            (root_threshold if not bundle_keys else 1)
        if not 1 <= threshold <= len(ids):
            raise TrustError(f"threshold {threshold} cannot be met by {len(ids)} key(s)")
        if ca_pem is not None:
            try:
                load_pem_x509_certificate(ca_pem)
            except ValueError as e:
                raise TrustError(f"provider CA: not a PEM certificate ({e})") from None
        try:
            before = self.load()
        except TrustError:
            before = TrustState()
            os.replace(self.state_file, self.state_file.with_name("state.json.unreadable"))
        # Checked; now written, state.json last (it names the keys in force).
        keys_dir = self.path / "keys"
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for k in keys:
            _atomic(keys_dir / f"{key_id(k)}.pub", _pem(k))
        for name, content in (("ca.pem", ca_pem), ("root.json", root_json)):
            if content is not None:
                _atomic(self.path / name, content)
            else:   # a new enrollment replaces the old one whole: no stale CA or root
                (self.path / name).unlink(missing_ok=True)
        same_keys = before.enrolled and sorted(before.keys) == ids
        state = TrustState(provider=provider or (before.provider if same_keys else ""),
                           enrolled=True, threshold=threshold, keys=ids,
                           last_version=(before.last_version or 0) if same_keys else 0,
                           share_alerts=before.share_alerts,
                           disabled_sids=before.disabled_sids)
        self.save(state)
        for stale in keys_dir.glob("*.pub"):
            if stale.stem not in ids:
                stale.unlink()
        return state

    def revoke(self) -> TrustState:
        """Cut the provider off: no bundle of it applies and its channel refuses it, until
        the owner enrolls again."""
        return self.update(revoked=True)

    def record_applied(self, version: int) -> None:
        state = self.load()
        state.last_version = max(state.last_version or 0, version)
        self.save(state)

    def update(self, **changes: Any) -> TrustState:
        state = self.load()
        for k, v in changes.items():
            if k not in _TYPES or not isinstance(v, _TYPES[k]):
                raise TrustError(f"trust setting {k}={v!r} unknown or of the wrong type")
            setattr(state, k, v)
        self.save(state)
        return state


def describe(trust: TrustStore) -> dict[str, Any]:
    """Everything the owner may want to see of the store, as JSON-ready data (what
    `hyperwall provider status --json` prints, read by root or through dom0d)."""
    state = trust.load()
    status = ("revoked" if state.revoked else "enrolled" if state.enrolled
              else "not enrolled")
    root: dict[str, Any] | None = None
    raw_root = trust.root_json()
    if raw_root is not None:
        signed = json.loads(raw_root).get("signed", {})
        root = {"version": signed.get("version"), "expires": signed.get("expires")}
    ca: dict[str, Any] | None = None
    raw_ca = trust.provider_ca()
    if raw_ca is not None:
        cert = load_pem_x509_certificate(raw_ca)
        ca = {"subject": cert.subject.rfc4514_string(),
              "expires": cert.not_valid_after_utc.isoformat()}
    return {"provider": state.provider, "status": status, "bundle_keys": state.keys,
            "threshold": state.threshold, "tuf_root": root, "provider_ca": ca,
            "last_version": state.last_version,
            "version_problem": trust.version_problem(state), "share_alerts": state.share_alerts,
            "disabled_sids": state.disabled_sids, "dir": str(trust.path)}


def _atomic(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    # The rename is durable only once the folder holding it is on disk.
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
