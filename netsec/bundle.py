"""A provider's security bundle, verified (pure): everything sys-sec takes from a provider
passes through `verify`, and only what it returns is ever applied.

A bundle is an uncompressed, deterministic tar (see builder/bundle.py) holding, in order:
`manifest.json` (format, provider, version, created, expires, and every file's size and
SHA-256), `signatures.json` (Ed25519 signatures of the manifest's bytes, by key id), then
the files: `rules/*.rules`, `lists/<category>.txt`, `policy.toml`.

`verify` refuses, with a reason naming what is wrong: an archive that does not parse or is
truncated, a member that is not a plain file or escapes its folder, too much data, a
missing, extra or altered file, too few valid signatures from the enrolled keys, an
expired bundle, a version not above the last one applied (replay, rollback), and a policy
that tries to configure anything but sys-sec's own content.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import tarfile
import tomllib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FORMAT = 1
MAX_BUNDLE = 64 << 20
MAX_FILES = 4096
# What a provider's policy may set: sys-sec's content, nothing of any domain's.
POLICY_KEYS = {"schedules", "clean", "doh_addresses", "disabled_sids", "selftest"}


class BundleError(ValueError):
    """A bundle refused; the message says why."""


@dataclass(frozen=True)
class Bundle:
    provider: str
    version: int
    created: str
    expires: dt.datetime
    rules: dict[str, str]          # rules/<name>.rules -> text
    lists: dict[str, str]          # category -> list text
    policy: dict[str, Any]
    files: dict[str, bytes]        # every file, as shipped (written out on apply)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def _members(data: bytes) -> dict[str, bytes]:
    if len(data) > MAX_BUNDLE:
        raise BundleError(f"bundle is {len(data)} bytes, over the {MAX_BUNDLE} limit")
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                if len(out) >= MAX_FILES:
                    raise BundleError(f"bundle holds more than {MAX_FILES} files")
                name = info.name
                if not info.isfile():
                    raise BundleError(f"{name}: not a plain file")
                if name.startswith("/") or ".." in name.split("/") or "\\" in name:
                    raise BundleError(f"{name}: a path outside the bundle")
                if name in out:
                    raise BundleError(f"{name}: in the bundle twice")
                f = tar.extractfile(info)
                assert f is not None
                content = f.read()
                if len(content) != info.size:
                    raise BundleError(f"{name}: truncated")
                out[name] = content
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BundleError(f"not a readable bundle (truncated or damaged): {e}") from None
    return out


def _check_signatures(manifest: bytes, raw: bytes, trusted: dict[str, Ed25519PublicKey],
                      threshold: int) -> None:
    try:
        sigs = json.loads(raw)
        assert isinstance(sigs, list)
    except (ValueError, AssertionError):
        raise BundleError("signatures.json is not a list of signatures") from None
    good: set[str] = set()
    for s in sigs:
        if not isinstance(s, dict):
            continue
        key = trusted.get(str(s.get("keyid")))
        if key is None:
            continue
        try:
            key.verify(base64.b64decode(str(s.get("sig", "")), validate=True), manifest)
            good.add(str(s["keyid"]))
        except (InvalidSignature, ValueError):
            continue
    if len(good) < threshold:
        raise BundleError(f"signed by {len(good)} of the enrolled keys, {threshold} needed "
                          "(tampered, or signed with a key the owner did not enroll)")


def _check_policy(raw: bytes) -> dict[str, Any]:
    try:
        policy = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise BundleError(f"policy.toml: {e}") from None
    for key in policy:
        if key not in POLICY_KEYS:
            allowed = ", ".join(sorted(POLICY_KEYS))
            raise BundleError(f"policy.toml: {key!r} is not the provider's to set (a provider "
                              f"configures sys-sec's content only: {allowed})")
    return policy


def verify(data: bytes, trusted: dict[str, Ed25519PublicKey], *, now: dt.datetime,
           min_version: int, threshold: int = 1) -> Bundle:
    members = _members(data)
    for required in ("manifest.json", "signatures.json"):
        if required not in members:
            raise BundleError(f"{required} missing")
    manifest_raw = members.pop("manifest.json")
    _check_signatures(manifest_raw, members.pop("signatures.json"), trusted, threshold)
    try:
        manifest = json.loads(manifest_raw)
        version = int(manifest["version"])
        expires = dt.datetime.fromisoformat(manifest["expires"])
        listed: dict[str, dict[str, Any]] = manifest["files"]
        provider, created = str(manifest["provider"]), str(manifest["created"])
        fmt = manifest["format"]
    except (ValueError, KeyError, TypeError) as e:
        raise BundleError(f"manifest.json: {e}") from None
    if fmt != FORMAT:
        raise BundleError(f"manifest.json: format {fmt!r}, this sys-sec reads {FORMAT}")
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.UTC)
    if expires <= now:
        raise BundleError(f"expired at {expires.isoformat()}")
    if version <= min_version:
        raise BundleError(f"version {version} is not newer than the applied {min_version} "
                          "(a replayed or rolled-back bundle)")
    if set(listed) != set(members):
        missing, extra = set(listed) - set(members), set(members) - set(listed)
        raise BundleError("files differ from the manifest: " + "; ".join(
            [*(f"{m} missing" for m in sorted(missing)),
             *(f"{e} not in the manifest" for e in sorted(extra))]))
    for name, content in members.items():
        meta = listed[name]
        if len(content) != meta.get("size") or \
                hashlib.sha256(content).hexdigest() != meta.get("sha256"):
            raise BundleError(f"{name}: does not match the manifest (altered)")
        if not (name.startswith(("rules/", "lists/")) or name == "policy.toml"):
            raise BundleError(f"{name}: not a rules file, a block list or the policy")
    try:
        rules = {n: c.decode("utf-8") for n, c in members.items() if n.startswith("rules/")}
        lists = {n.removeprefix("lists/").removesuffix(".txt"): c.decode("utf-8")
                 for n, c in members.items() if n.startswith("lists/")}
    except UnicodeDecodeError as e:
        raise BundleError(f"a rules file or list is not UTF-8: {e}") from None
    policy = _check_policy(members.get("policy.toml", b""))
    return Bundle(provider, version, created, expires, rules, lists, policy, members)
