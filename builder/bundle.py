"""Making a provider's security bundle: rules, block lists, self-test captures, a ClamAV
database folder, YARA rules and a policy,
signed with the provider's Ed25519 key, byte for byte the same from the same inputs (what
netsec/bundle.py verifies). Nothing in it depends on the clock or the machine: `created`
is given (the CLI takes SOURCE_DATE_EPOCH), tar entries are sorted, with owner 0, mode
0644 and mtime 0, and the manifest is JSON with sorted keys. Ed25519 signatures are
deterministic (RFC 8032), so the signature is the same bytes too.

The builder refuses what sys-sec would refuse (names, policy, YARA rules that do not
compile) and block lists that hold no domain, so a provider learns of a mistake before
shipping it, not from its customers.
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

from netsec.blocklist import parse_lines
from netsec.bundle import (
    FORMAT,
    MANIFEST,
    MAX_VALIDITY,
    MAX_VERSION,
    POLICY,
    SIGNATURES,
    BundleError,
    check_name,
    check_policy,
    key_id,
)


class BuildError(ValueError):
    """Input the builder refuses; the message names the file and what is wrong."""


def keygen(private_path: Path) -> Path:
    """A new provider key: PEM private key at `private_path` (mode 0600, never overwritten),
    public key beside it (.pub); returns the public key's path."""
    key = Ed25519PrivateKey.generate()
    public = private_path.with_suffix(".pub")
    if private_path.exists() or public.exists():
        raise BuildError(f"{private_path}: a key is already there; not overwriting it")
    fd = private_path.open("xb")
    with fd:
        private_path.chmod(0o600)
        fd.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM,
                                                     PublicFormat.SubjectPublicKeyInfo))
    return public


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), None)
    except OSError as e:
        raise BuildError(f"{path}: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise BuildError(f"{path}: not a PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BuildError(f"{path}: not an Ed25519 key")
    return key


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise BuildError(f"{path}: {e.strerror}") from None


def _folder(folder: Path | None, into: str, files: dict[str, bytes]) -> None:
    """Every file of a clamav/ or yara/ folder; sys-sec's name check refuses the others."""
    if folder is None:
        return
    found = sorted(p for p in folder.iterdir() if p.is_file())
    if not found:
        raise BuildError(f"{folder}: no files")
    for f in found:
        files[f"{into}/{f.name}"] = _read(f)


def collect(rules: Path, lists: Path | None = None, policy: Path | None = None,
            selftest: Path | None = None, clamav: Path | None = None,
            yara: Path | None = None) -> dict[str, bytes]:
    """The files a bundle ships, by their names in it, checked as sys-sec will check them."""
    for given in (rules, lists, policy, selftest, clamav, yara):
        if given is not None and not given.exists():
            raise BuildError(f"{given}: no such file or folder")
    files: dict[str, bytes] = {}
    rule_files = [rules] if rules.is_file() else sorted(rules.glob("*.rules"))
    if not rule_files:
        raise BuildError(f"{rules}: no .rules files")
    for f in rule_files:
        files[f"rules/{f.name}"] = _read(f)
    for f in sorted(lists.glob("*.txt")) if lists else []:
        content = _read(f)
        try:
            domains, report = parse_lines(content.decode("utf-8").splitlines(), str(f))
        except UnicodeDecodeError as e:
            raise BuildError(f"{f}: not UTF-8 text ({e})") from None
        if not domains:
            raise BuildError(f"{f}: no domain in it ({len(report.skipped)} lines skipped; "
                             "hosts, plain-domain and AdBlock ||domain^ lines are read)")
        files[f"lists/{f.name}"] = content
    for f in sorted(selftest.glob("*.pcap")) if selftest else []:
        files[f"selftest/{f.name}"] = _read(f)
    _folder(clamav, "clamav", files)
    _folder(yara, "yara", files)
    if policy is not None:
        files[POLICY] = _read(policy)
    try:
        for name in files:
            check_name(name)
        check_policy(files.get(POLICY, b""), files)
    except BundleError as e:
        raise BuildError(f"sys-sec would refuse this bundle: {e}") from None
    if yara is not None:
        # sys-sec's own compile (yara-python; loaded only for a bundle that has rules)
        from domains.syssec.antivirus import YaraRulesError, compile_rules
        try:
            compile_rules(yara)
        except YaraRulesError as e:
            raise BuildError(f"sys-sec would refuse this bundle: {e}") from None
    return files


def _entry(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(content), 0, 0o644, 0, 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(content))


def assemble(files: dict[str, bytes], *, key: Ed25519PrivateKey, provider: str, version: int,
             created: dt.datetime, valid_days: int) -> bytes:
    """The signed bundle of `files` (names as in the bundle)."""
    if not provider:
        raise BuildError("the provider needs a name")
    if version < 1:
        raise BuildError(f"version {version}: bundle versions start at 1")
    if version > MAX_VERSION:
        raise BuildError(f"version {version}: over {MAX_VERSION}, the most the provider "
                         "channel carries (uint64)")
    if valid_days < 1:
        raise BuildError(f"--expires {valid_days}: a bundle must be valid for a day at least")
    if valid_days > MAX_VALIDITY.days:
        raise BuildError(f"--expires {valid_days}: over the {MAX_VALIDITY.days}-day limit "
                         "sys-sec holds bundles to")
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
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
        _entry(tar, MANIFEST, manifest)
        _entry(tar, SIGNATURES, signatures)
        for name, content in sorted(files.items()):
            _entry(tar, name, content)
    return out.getvalue()


def build(*, rules: Path, lists: Path | None, policy: Path | None, key: Ed25519PrivateKey,
          provider: str, version: int, created: dt.datetime, valid_days: int,
          selftest: Path | None = None, clamav: Path | None = None,
          yara: Path | None = None) -> bytes:
    return assemble(collect(rules, lists, policy, selftest, clamav, yara), key=key,
                    provider=provider,
                    version=version, created=created, valid_days=valid_days)
