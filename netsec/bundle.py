"""A provider's security bundle, verified (pure): everything sys-sec takes from a provider
passes through `verify`, and only what it returns is ever applied.

A bundle is an uncompressed, deterministic tar (built by builder/bundle.py) holding, in
order: `manifest.json` (format, provider, version, created, expires, and every file's size
and SHA-256), `signatures.json` (Ed25519 signatures of the manifest's bytes, by key id),
then the files: `rules/<name>.rules`, `lists/<category>.txt`, `selftest/<name>.pcap`
(captures the staging self-test replays) and `policy.toml`.

Uncompressed on purpose: the bytes checked against the size limits are the bytes held, so
no decompression bomb can get past them; rules and lists compress on the wire (HTTP) where
size matters.

`verify` refuses, with a reason naming what is wrong: an archive that does not parse or is
truncated, a member that is not a plain file or escapes its folder, too much data, a
missing, extra or altered file, a signature that does not verify, one by a key the owner
did not enroll, too few signatures for the threshold, an expired bundle, a version not above
the last one applied (replay, rollback), and a policy that tries to configure anything but
sys-sec's own content.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import re
import tarfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FORMAT = 1
MANIFEST, SIGNATURES, POLICY = "manifest.json", "signatures.json", "policy.toml"
# Limits: a hostile bundle is refused before it can make sys-sec hold much more than this.
MAX_BUNDLE = 64 << 20          # the whole archive
MAX_FILE = 32 << 20            # any one file in it
MAX_META = 1 << 20             # manifest.json, signatures.json, policy.toml
MAX_FILES = 4096
# What a provider's policy may set: sys-sec's content, nothing of any domain's.
POLICY_KEYS = frozenset({"schedules", "clean", "doh_addresses", "disabled_sids", "selftest"})
# Every file a bundle may ship; anything else is refused by name.
CONTENT_NAME = re.compile(r"rules/[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.rules"
                          r"|lists/[a-z0-9][a-z0-9_-]{0,63}\.txt"
                          r"|selftest/[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.pcap"
                          r"|policy\.toml")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BundleError(ValueError):
    """A bundle refused; the message says why."""


@dataclass(frozen=True)
class TrustedKeys:
    """The keys the owner enrolled for bundles (by key id) and how many must have signed."""
    keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    threshold: int = 1

    @classmethod
    def of(cls, *keys: Ed25519PublicKey, threshold: int = 1) -> TrustedKeys:
        return cls({key_id(k): k for k in keys}, threshold)


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
    selftest: dict[str, bytes] = field(default_factory=dict)   # <name>.pcap -> capture
    sha256: str = ""               # of the whole bundle, to name it in logs


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def check_name(name: str) -> None:
    """Refuse a member name that escapes the bundle or is not content sys-sec takes."""
    if name.startswith("/") or "\\" in name or ".." in name.split("/"):
        raise BundleError(f"{name}: a path outside the bundle")
    if not CONTENT_NAME.fullmatch(name):
        raise BundleError(f"{name}: not a rules file (rules/NAME.rules), a block list "
                          "(lists/CATEGORY.txt), a self-test capture (selftest/NAME.pcap) "
                          "or the policy (policy.toml)")


def check_policy(raw: bytes) -> dict[str, Any]:
    """policy.toml parsed, refused when it sets anything that is not sys-sec's content."""
    try:
        policy = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise BundleError(f"{POLICY}: {e}") from None
    for key in policy:
        if key not in POLICY_KEYS:
            allowed = ", ".join(sorted(POLICY_KEYS))
            raise BundleError(f"{POLICY}: {key!r} is not the provider's to set (a provider "
                              f"configures sys-sec's content only: {allowed})")
    for key in ("schedules", "selftest"):
        if not isinstance(policy.get(key, {}), dict):
            raise BundleError(f"{POLICY}: [{key}] must be a table")
    for key in ("clean", "doh_addresses", "disabled_sids"):
        if not isinstance(policy.get(key, []), list):
            raise BundleError(f"{POLICY}: {key} must be a list")
    if not all(isinstance(s, int) and not isinstance(s, bool)
               for s in policy.get("disabled_sids", [])):
        raise BundleError(f"{POLICY}: disabled_sids must be a list of sids (integers)")
    return policy


def _members(data: bytes) -> dict[str, bytes]:
    if len(data) > MAX_BUNDLE:
        raise BundleError(f"bundle is {len(data)} bytes, over the {MAX_BUNDLE} limit")
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                name = info.name
                if len(out) >= MAX_FILES:
                    raise BundleError(f"bundle holds more than {MAX_FILES} files")
                if not info.isfile():
                    raise BundleError(f"{name}: not a plain file")
                if name not in (MANIFEST, SIGNATURES):
                    check_name(name)
                limit = MAX_META if name in (MANIFEST, SIGNATURES, POLICY) else MAX_FILE
                if info.size > limit:
                    raise BundleError(f"{name}: {info.size} bytes, over the {limit} limit")
                if name in out:
                    raise BundleError(f"{name}: in the bundle twice")
                f = tar.extractfile(info)
                assert f is not None    # a regular file always has a reader
                content = f.read()
                if len(content) != info.size:
                    raise BundleError(f"{name}: truncated")
                out[name] = content
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BundleError(f"not a readable bundle (truncated or damaged): {e}") from None
    if not out:
        raise BundleError("not a readable bundle: the archive is empty")
    return out


def _check_signatures(manifest: bytes, raw: bytes, trust: TrustedKeys) -> None:
    try:
        sigs = json.loads(raw)
        if not isinstance(sigs, list) or not all(isinstance(s, dict) for s in sigs):
            raise ValueError
    except ValueError:
        raise BundleError(f"{SIGNATURES} is not a list of signatures") from None
    good: set[str] = set()
    bad: set[str] = set()
    unknown: set[str] = set()
    for s in sigs:
        kid = str(s.get("keyid"))
        key = trust.keys.get(kid)
        if key is None:
            unknown.add(kid)
            continue
        try:
            key.verify(base64.b64decode(str(s.get("sig", "")), validate=True), manifest)
            good.add(kid)
        except (InvalidSignature, ValueError):
            bad.add(kid)
    if len(good) >= trust.threshold:
        return
    if bad:
        raise BundleError(f"signature by enrolled key {', '.join(sorted(bad))} does not "
                          "verify: the manifest or its signature was altered")
    if not good:
        who = ", ".join(sorted(unknown)) or "no key at all"
        raise BundleError(f"signed by {who}, not a key the owner enrolled "
                          "(signed with the wrong key)")
    raise BundleError(f"signed by {len(good)} of the enrolled keys, {trust.threshold} needed")


@dataclass(frozen=True)
class _Manifest:
    provider: str
    version: int
    created: str
    expires: dt.datetime
    files: dict[str, tuple[int, str]]      # name -> (size, sha256)


def _parse_manifest(raw: bytes) -> _Manifest:
    try:
        m = json.loads(raw)
        if not isinstance(m, dict):
            raise ValueError("not a JSON object")
        if m.get("format") != FORMAT:
            raise BundleError(f"{MANIFEST}: format {m.get('format')!r}, this sys-sec reads "
                              f"{FORMAT}")
        version, provider, files = m["version"], m["provider"], m["files"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"version {version!r} is not a positive integer")
        if not isinstance(provider, str) or not provider:
            raise ValueError("provider must be a name")
        created = str(m["created"])
        dt.datetime.fromisoformat(created)
        expires = dt.datetime.fromisoformat(m["expires"])
        if not isinstance(files, dict):
            raise ValueError("files must be an object")
        listed: dict[str, tuple[int, str]] = {}
        for name, meta in files.items():
            size, digest = meta["size"], meta["sha256"]
            if not isinstance(size, int) or not isinstance(digest, str) \
                    or not _SHA256.fullmatch(digest):
                raise ValueError(f"{name}: size and sha256 malformed")
            listed[name] = (size, digest)
    except BundleError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise BundleError(f"{MANIFEST}: {type(e).__name__}: {e}") from None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.UTC)
    return _Manifest(provider, version, created, expires, listed)


def read_manifest(data: bytes) -> dict[str, Any]:
    """What a bundle says of itself, NOT verified: for the publisher's own checks (is this
    newer than what the repository serves?), never for a decision on sys-sec."""
    manifest = _members(data).get(MANIFEST)
    if manifest is None:
        raise BundleError(f"{MANIFEST} missing")
    m = _parse_manifest(manifest)
    return {"provider": m.provider, "version": m.version, "created": m.created,
            "expires": m.expires.isoformat(),
            "files": {n: {"size": size, "sha256": digest}
                      for n, (size, digest) in sorted(m.files.items())}}


def verify(data: bytes, trust: TrustedKeys, *, now: dt.datetime, min_version: int) -> Bundle:
    """The bundle in `data` if it is whole, signed by `trust.threshold` of the enrolled keys,
    unexpired at `now` and newer than `min_version`; BundleError naming the reason if not."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    members = _members(data)
    for required in (MANIFEST, SIGNATURES):
        if required not in members:
            raise BundleError(f"{required} missing")
    manifest_raw = members.pop(MANIFEST)
    # The signature first: nothing of an unsigned manifest is read, let alone believed.
    _check_signatures(manifest_raw, members.pop(SIGNATURES), trust)
    m = _parse_manifest(manifest_raw)
    if m.expires <= now:
        raise BundleError(f"expired at {m.expires.isoformat()} (now {now.isoformat()})")
    if m.version <= min_version:
        raise BundleError(f"version {m.version} is not newer than the applied {min_version} "
                          "(a replayed or rolled-back bundle)")
    if set(m.files) != set(members):
        missing, extra = set(m.files) - set(members), set(members) - set(m.files)
        raise BundleError("files differ from the manifest: " + "; ".join(
            [*(f"{n} missing" for n in sorted(missing)),
             *(f"{n} not in the manifest" for n in sorted(extra))]))
    for name, content in members.items():
        size, digest = m.files[name]
        if len(content) != size or hashlib.sha256(content).hexdigest() != digest:
            raise BundleError(f"{name}: does not match the manifest's size and SHA-256 "
                              "(altered)")
    texts: dict[str, str] = {}
    for name, content in members.items():
        if name.endswith((".rules", ".txt")):
            try:
                texts[name] = content.decode("utf-8")
            except UnicodeDecodeError as e:
                raise BundleError(f"{name}: not UTF-8 text ({e})") from None
    rules = {n: t for n, t in texts.items() if n.startswith("rules/")}
    lists = {n.removeprefix("lists/").removesuffix(".txt"): t
             for n, t in texts.items() if n.startswith("lists/")}
    selftest = {n.removeprefix("selftest/"): c for n, c in members.items()
                if n.startswith("selftest/")}
    policy = check_policy(members.get(POLICY, b""))
    return Bundle(m.provider, m.version, m.created, m.expires, rules, lists, policy, members,
                  selftest, hashlib.sha256(data).hexdigest())
