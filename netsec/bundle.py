"""A provider's security bundle, verified (pure): everything sys-sec takes from a provider
passes through `verify`, and only what it returns is ever applied.

A bundle is an uncompressed, deterministic ustar archive (built by builder/bundle.py)
holding, in order: `manifest.json` (format, provider, version, created, expires, and every
file's size and SHA-256), `signatures.json` (Ed25519 signatures of the manifest's bytes, by
key id), then the files: `rules/<name>.rules`, `lists/<category>.txt`,
`selftest/<name>.pcap` (captures the staging self-test replays), `clamav/<name>.<db>` (a
ClamAV database folder, `netsec.clamav.DATABASE_SUFFIXES`), `yara/<name>.yar` (YARA rules,
UTF-8) and `policy.toml`.

Everything is bounded before it is held. The archive is read by a reader of its own that
takes regular files only, each member's content a slice of the archive: what a member
says its size is, is the size it reads, so the members together never hold more than the
archive itself. It refuses every other member type by name: GNU sparse files (a sparse
member reads as more bytes than it stores; a signed bundle never needs one, so none is
taken rather than its expanded size counted), pax and GNU long-name headers, links,
devices, fifos and folders. JSON is measured (nesting depth, number of values) without
recursion before it is parsed; integers are held to their wire types (a version to the
provider channel's uint64, a sid to uint32); dates to the clock: a bundle created more
than CLOCK_SKEW after now, or valid for longer than MAX_VALIDITY, is refused. Peak memory
of `verify` is the archive once more (the files it returns) plus VERIFY_OVERHEAD.

Uncompressed on purpose: the bytes checked against the size limits are the bytes held, so
no decompression bomb can get past them; rules and lists compress on the wire (HTTP) where
size matters.

`verify` raises nothing but BundleError, whose message names what is wrong: an archive
that does not parse or is truncated, a member that is not a plain file or escapes its
folder, too much data, a missing, extra or altered file, a signature that does not verify,
one by a key the owner did not enroll, too few signatures for the threshold, a policy that
tries to configure anything but sys-sec's own content or does not parse whole. `NotNow`,
a BundleError, is a sound bundle refused for sys-sec's state only: expired, not yet
created by sys-sec's clock, or a version not above the last one applied (replay,
rollback); it is checked last, so a NotNow bundle is otherwise whole.
"""
from __future__ import annotations

import base64
import codecs
import datetime as dt
import hashlib
import ipaddress
import json
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from netsec.blocklist import BlocklistError, parse_window
from netsec.clamav import DATABASE_SUFFIXES

FORMAT = 1
MANIFEST, SIGNATURES, POLICY = "manifest.json", "signatures.json", "policy.toml"
# Limits: a hostile bundle is refused before it can make sys-sec hold much more than this.
MAX_BUNDLE = 64 << 20          # the whole archive
MAX_FILE = 32 << 20            # any one file in it
MAX_META = 1 << 20             # manifest.json (4096 files take ~600 KB)
MAX_SIGNATURES_FILE = 64 << 10
MAX_POLICY = 64 << 10          # policy.toml: a few schedules, addresses and self-tests
MAX_YARA_FILE = 4 << 20        # one YARA source file: rules, not data (compiling is costly)
MAX_FILES = 4096
MAX_SIGNATURES = 32
MAX_JSON_DEPTH = 8             # the manifest is 3 deep
MAX_JSON_VALUES = 8 * MAX_FILES + 256
MAX_VERSION = (1 << 64) - 1    # GetStatusResponse.bundle_version is a uint64
MAX_SID = (1 << 32) - 1        # sids are uint32 on the provider channel
CLOCK_SKEW = dt.timedelta(hours=1)       # how far ahead of sys-sec a provider's clock may be
MAX_VALIDITY = dt.timedelta(days=366)
MAX_WINDOWS, MAX_DOH, MAX_SELFTEST_SIDS = 32, 256, 1024
# What verify allocates beyond the files it returns (a copy of at most the archive): the
# parsed metadata within the limits above, tar headers, hashing, UTF-8 checks.
VERIFY_OVERHEAD = 48 << 20
# What a provider's policy may set: sys-sec's content, nothing of any domain's, and only
# keys sys-sec reads. `clean` (flows that skip inspection) and `disabled_sids` are the
# owner's: a provider exempting traffic from its own engine, or switching off rules the
# owner keeps, is refused; a provider drops a rule of its own by not shipping it, or with
# SetRuleEnabled, which the owner's trust store records.
POLICY_KEYS = frozenset({"schedules", "doh_addresses", "selftest"})
OWNER_KEYS = {"clean": "the owner's (syssec.toml clean): a provider cannot exempt traffic "
                       "from inspection",
              "disabled_sids": "the owner's trust store's (SetRuleEnabled): a provider "
                               "leaves a rule out of its bundle instead"}
# Every file a bundle may ship; anything else is refused by name.
_CLAMAV_SUFFIX = "|".join(s.removeprefix(".") for s in sorted(DATABASE_SUFFIXES))
CONTENT_NAME = re.compile(r"rules/[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.rules"
                          r"|lists/[a-z0-9][a-z0-9_-]{0,63}\.txt"
                          r"|selftest/[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.pcap"
                          rf"|clamav/[A-Za-z0-9][A-Za-z0-9_-]{{0,99}}\.(?:{_CLAMAV_SUFFIX})"
                          r"|yara/[A-Za-z0-9][A-Za-z0-9_-]{0,99}\.yara?"
                          r"|policy\.toml")
TEXT_SUFFIXES = (".rules", ".txt", ".yar", ".yara")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Tar: 512-byte blocks; the two magics are POSIX ustar's and GNU tar's for plain members.
BLOCK = 512
_MAGICS = (b"ustar\x0000", b"ustar  \x00")
_REGULAR = (b"0", b"\0")
_KINDS = {b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device",
          b"4": "a block device", b"5": "a folder", b"6": "a fifo", b"7": "a contiguous file",
          b"x": "a pax extended header", b"g": "a pax global header",
          b"L": "a GNU long name", b"K": "a GNU long link name", b"S": "a GNU sparse file",
          b"D": "a GNU dump folder", b"M": "a GNU multi-volume part", b"V": "a volume label"}
# A string's closing quote is optional, so an unterminated one ends the scan in one pass
# instead of being retried from every later quote (quadratic on a hostile megabyte).
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{},:]', re.DOTALL)


class BundleError(ValueError):
    """A bundle refused; the message says why."""


class NotNow(BundleError):
    """A whole, signed bundle refused for sys-sec's state: expired, dated ahead of sys-sec's
    clock, or not newer than the one applied."""


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
    policy: dict[str, Any]
    files: dict[str, bytes]        # every file, as shipped (written out on apply)
    selftest: dict[str, bytes] = field(default_factory=dict)   # <name>.pcap -> capture
    sha256: str = ""               # of the whole bundle, to name it in logs

    @property
    def rules(self) -> dict[str, str]:
        """rules/<name>.rules -> text (UTF-8, checked by verify)."""
        return {n: c.decode() for n, c in self.files.items() if n.startswith("rules/")}

    @property
    def lists(self) -> dict[str, str]:
        """category -> list text."""
        return {n.removeprefix("lists/").removesuffix(".txt"): c.decode()
                for n, c in self.files.items() if n.startswith("lists/")}


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def check_name(name: str) -> None:
    """Refuse a member name that escapes the bundle or is not content sys-sec takes."""
    if name.startswith("/") or "\\" in name or ".." in name.split("/"):
        raise BundleError(f"{name[:120]!r}: a path outside the bundle")
    if not CONTENT_NAME.fullmatch(name):
        raise BundleError(f"{name[:120]}: not a rules file (rules/NAME.rules), a block list "
                          "(lists/CATEGORY.txt), a self-test capture (selftest/NAME.pcap), "
                          "a ClamAV database (clamav/NAME" + "|".join(sorted(DATABASE_SUFFIXES))
                          + "), YARA rules (yara/NAME.yar|.yara) or the policy (policy.toml)")


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_policy(raw: bytes, names: Collection[str] = ()) -> dict[str, Any]:
    """policy.toml parsed and validated whole against the bundle's files (`names`): every
    key one sys-sec reads, every schedule parsing and naming a category the bundle ships,
    every DoH endpoint an IP address, every self-test naming a capture it carries. Refused
    when it sets anything that is not sys-sec's content."""
    if len(raw) > MAX_POLICY:
        raise BundleError(f"{POLICY}: {len(raw)} bytes, over the {MAX_POLICY} limit")
    try:
        policy = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise BundleError(f"{POLICY}: {e}") from None
    except RecursionError:
        # tomllib is pure Python: nesting costs frames, not C stack, and unwinds cleanly.
        raise BundleError(f"{POLICY}: nested too deep") from None
    for key in policy:
        if key in OWNER_KEYS:
            raise BundleError(f"{POLICY}: {key!r} is {OWNER_KEYS[key]}")
        if key not in POLICY_KEYS:
            allowed = ", ".join(sorted(POLICY_KEYS))
            raise BundleError(f"{POLICY}: {key!r} is not the provider's to set (a provider "
                              f"configures sys-sec's content only: {allowed})")
    for key in ("schedules", "selftest"):
        if not isinstance(policy.get(key, {}), dict):
            raise BundleError(f"{POLICY}: [{key}] must be a table")
    categories = {n.removeprefix("lists/").removesuffix(".txt") for n in names
                  if n.startswith("lists/")}
    for category, windows in policy.get("schedules", {}).items():
        where = f"{POLICY}: [schedules] {category[:64]!r}"
        if category not in categories:
            raise BundleError(f"{where}: not a category the bundle ships (lists/"
                              f"{category[:64]}.txt); a provider schedules only its own")
        if not isinstance(windows, list) or not 1 <= len(windows) <= MAX_WINDOWS \
                or not all(isinstance(w, str) for w in windows):
            raise BundleError(f"{where}: must be a list of 1 to {MAX_WINDOWS} time windows")
        for w in windows:
            try:
                parse_window(w)
            except BlocklistError as e:
                raise BundleError(f"{where}: {e}") from None
    doh = policy.get("doh_addresses", [])
    if not isinstance(doh, list) or len(doh) > MAX_DOH:
        raise BundleError(f"{POLICY}: doh_addresses must be a list of at most {MAX_DOH} "
                          "addresses")
    for address in doh:
        try:
            ipaddress.ip_address(address)
        except (ValueError, TypeError):
            raise BundleError(f"{POLICY}: doh_addresses: {str(address)[:64]!r} is not an IP "
                              "address") from None
    for capture, sids in policy.get("selftest", {}).items():
        where = f"{POLICY}: [selftest] {capture[:100]!r}"
        if f"selftest/{capture}" not in names:
            raise BundleError(f"{where}: the bundle carries no selftest/{capture[:100]}")
        if not isinstance(sids, list) or len(sids) > MAX_SELFTEST_SIDS \
                or not all(_int_in(s, 1, MAX_SID) for s in sids):
            raise BundleError(f"{where}: must be a list of at most {MAX_SELFTEST_SIDS} sids "
                              f"(1 to {MAX_SID})")
    return policy


def applied_policy(folder: Path) -> dict[str, Any]:
    """The policy of the applied bundle in `folder` (sys-sec's bundles/current), validated
    again as `verify` did, with every key present (empty when there is no bundle).
    `doh_addresses` is a list of IP address strings, for the firewall; `schedules` maps each
    of the bundle's categories to its time windows. Raises BundleError for a folder that
    does not hold what verify took (it changed on disk)."""
    empty: dict[str, Any] = {"schedules": {}, "doh_addresses": [], "selftest": {}}
    try:
        raw = (folder / POLICY).read_bytes()
    except FileNotFoundError:
        return empty
    except OSError as e:
        raise BundleError(f"{folder / POLICY}: {e.strerror}") from None
    names = [str(p.relative_to(folder)) for p in folder.glob("*/*") if p.is_file()]
    return empty | check_policy(raw, names)


def _octal(field_: bytes | memoryview, what: str) -> int:
    field_ = bytes(field_)
    digits = field_.rstrip(b" \0").lstrip(b" ")
    if field_[:1] and field_[0] & 0x80:
        raise BundleError(f"{what} in base-256 (beyond any limit here)")
    if not digits or len(digits) > 11 or not all(0x30 <= c <= 0x37 for c in digits):
        raise BundleError(f"{what} {field_!r} is not an octal number")
    return int(digits, 8)


def _members(data: bytes) -> dict[str, memoryview]:
    """The regular files of a ustar archive, each a view into `data` (nothing copied).
    Every header is checked before anything of its member is looked at."""
    if len(data) > MAX_BUNDLE:
        raise BundleError(f"bundle is {len(data)} bytes, over the {MAX_BUNDLE} limit")
    view = memoryview(data)
    out: dict[str, memoryview] = {}
    pos = 0
    while True:
        if pos + BLOCK > len(data):
            raise BundleError("not a readable bundle (truncated or damaged): no end-of-archive "
                              f"blocks after byte {pos}")
        head = view[pos:pos + BLOCK]
        if not any(head):
            if data.count(0, pos) != len(data) - pos:
                raise BundleError("not a readable bundle (truncated or damaged): data after "
                                  f"the end of the archive at byte {pos}")
            break
        where = f"not a readable bundle (truncated or damaged): header at byte {pos}"
        if bytes(head[257:265]) not in _MAGICS:
            raise BundleError(f"{where} is not a ustar header")
        if _octal(head[148:156], f"{where}: checksum") != \
                sum(head[:148]) + 8 * 0x20 + sum(head[156:]):
            raise BundleError(f"{where}: bad checksum")
        try:
            name = bytes(head[:100]).split(b"\0", 1)[0].decode("utf-8")
            if head[257:263] == b"ustar\0" and head[345]:
                name = bytes(head[345:500]).split(b"\0", 1)[0].decode("utf-8") + "/" + name
        except UnicodeDecodeError:
            raise BundleError(f"{where}: a member name that is not UTF-8") from None
        kind = bytes(head[156:157])
        if kind not in _REGULAR:
            what = _KINDS.get(kind, f"an unknown member type {kind!r}")
            raise BundleError(f"{name[:120]!r}: not a plain file ({what})")
        if len(out) >= MAX_FILES:
            raise BundleError(f"bundle holds more than {MAX_FILES} files")
        if name not in (MANIFEST, SIGNATURES):
            check_name(name)
        size = _octal(head[124:136], f"{name}: size")
        limit = {MANIFEST: MAX_META, SIGNATURES: MAX_SIGNATURES_FILE,
                 POLICY: MAX_POLICY}.get(name, MAX_YARA_FILE if name.startswith("yara/")
                                         else MAX_FILE)
        if size > limit:
            raise BundleError(f"{name}: {size} bytes, over the {limit} limit")
        if name in out:
            raise BundleError(f"{name}: in the bundle twice")
        pos += BLOCK
        if pos + size > len(data):
            raise BundleError(f"not a readable bundle (truncated or damaged): {name} holds "
                              f"{len(data) - pos} of its {size} bytes")
        out[name] = view[pos:pos + size]
        pos += -(-size // BLOCK) * BLOCK
    if not out:
        raise BundleError("not a readable bundle: the archive is empty")
    return out


def check_json_shape(raw: bytes, what: str) -> None:
    """Refuse JSON deeper than MAX_JSON_DEPTH or of more than MAX_JSON_VALUES values,
    measured by a scan that holds one token at a time, before anything parses it (json
    recurses, and a value costs Python ~50 times its text). Also for TUF metadata."""
    depth = values = 0
    for token in _JSON_TOKEN.finditer(raw):
        c = token.group()[:1]
        if c in b"[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise BundleError(f"{what}: nested deeper than {MAX_JSON_DEPTH}")
        elif c in b"]}":
            depth -= 1
        if c in b"[{,":
            values += 1
            if values > MAX_JSON_VALUES:
                raise BundleError(f"{what}: more than {MAX_JSON_VALUES} values")


def _json(raw: bytes | memoryview, what: str) -> Any:
    """`raw` parsed once its shape is known to be small (check_json_shape)."""
    raw = bytes(raw)
    check_json_shape(raw, what)
    try:
        return json.loads(raw)
    except ValueError as e:    # JSONDecodeError, bad UTF-8, an int past 4300 digits
        raise BundleError(f"{what}: {type(e).__name__}: {e}") from None


def _check_signatures(manifest: memoryview, raw: memoryview, trust: TrustedKeys) -> None:
    sigs = _json(raw, SIGNATURES)
    if not isinstance(sigs, list) or not all(isinstance(s, dict) for s in sigs):
        raise BundleError(f"{SIGNATURES} is not a list of signatures")
    if len(sigs) > MAX_SIGNATURES:
        raise BundleError(f"{SIGNATURES}: {len(sigs)} signatures, over the {MAX_SIGNATURES} "
                          "limit")
    good: set[str] = set()
    bad: set[str] = set()
    unknown: set[str] = set()
    for s in sigs:
        kid = str(s.get("keyid"))[:64]
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
    created: dt.datetime
    expires: dt.datetime
    files: dict[str, tuple[int, str]]      # name -> (size, sha256)


def _when(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError(f"{what} {str(value)[:64]!r} is not an ISO 8601 time")
    when = dt.datetime.fromisoformat(value)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _parse_manifest(raw: memoryview) -> _Manifest:
    m = _json(raw, MANIFEST)
    try:
        if not isinstance(m, dict):
            raise ValueError("not a JSON object")
        if m.get("format") != FORMAT:
            raise BundleError(f"{MANIFEST}: format {str(m.get('format'))[:20]}, this sys-sec "
                              f"reads {FORMAT}")
        version, provider, files = m["version"], m["provider"], m["files"]
        if not _int_in(version, 1, MAX_VERSION):
            raise ValueError(f"version {repr(version)[:30]} is not a positive integer of at "
                             "most 64 bits")
        if not isinstance(provider, str) or not 0 < len(provider) <= 128:
            raise ValueError("provider must be a name (at most 128 characters)")
        created, expires = _when(m["created"], "created"), _when(m["expires"], "expires")
        if not created < expires:
            raise ValueError(f"expires {expires.isoformat()} is not after created")
        if expires - created > MAX_VALIDITY:
            raise ValueError(f"valid for {(expires - created).days} days, over the "
                             f"{MAX_VALIDITY.days}-day limit")
        if not isinstance(files, dict) or len(files) > MAX_FILES:
            raise ValueError(f"files must be an object of at most {MAX_FILES} files")
        listed: dict[str, tuple[int, str]] = {}
        for name, meta in files.items():
            size, digest = meta["size"], meta["sha256"]
            if not _int_in(size, 0, MAX_FILE) or not isinstance(digest, str) \
                    or not _SHA256.fullmatch(digest):
                raise ValueError(f"{name[:120]}: size and sha256 malformed")
            listed[name] = (size, digest)
    except BundleError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BundleError(f"{MANIFEST}: {type(e).__name__}: {str(e)[:200]}") from None
    return _Manifest(provider, version, created, expires, listed)


def read_manifest(data: bytes) -> dict[str, Any]:
    """What a bundle says of itself, NOT verified: for the publisher's own checks (is this
    newer than what the repository serves?), never for a decision on sys-sec."""
    manifest = _members(data).get(MANIFEST)
    if manifest is None:
        raise BundleError(f"{MANIFEST} missing")
    m = _parse_manifest(manifest)
    return {"provider": m.provider, "version": m.version, "created": m.created.isoformat(),
            "expires": m.expires.isoformat(),
            "files": {n: {"size": size, "sha256": digest}
                      for n, (size, digest) in sorted(m.files.items())}}


def _check_utf8(name: str, content: memoryview) -> None:
    """Decoded a MiB at a time, so that checking costs no copy of the file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    step = 1 << 20
    try:
        for at in range(0, len(content), step):
            decoder.decode(content[at:at + step])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as e:
        raise BundleError(f"{name}: not UTF-8 text ({e})") from None


def verify(data: bytes, trust: TrustedKeys, *, now: dt.datetime, min_version: int) -> Bundle:
    """The bundle in `data` if it is whole, signed by `trust.threshold` of the enrolled keys,
    created by `now` (give or take CLOCK_SKEW), unexpired and newer than `min_version`;
    BundleError naming the reason if not (NotNow when only the last three fail)."""
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
        if name.endswith(TEXT_SUFFIXES):
            _check_utf8(name, content)
    policy = check_policy(bytes(members.get(POLICY, b"")), members)
    # Last: what fails here is sys-sec's clock or state, not the bundle.
    if m.expires <= now:
        raise NotNow(f"expired at {m.expires.isoformat()} (now {now.isoformat()})")
    if m.created > now + CLOCK_SKEW:
        raise NotNow(f"created {m.created.isoformat()}, later than now ({now.isoformat()}) "
                     f"give or take {CLOCK_SKEW}: a bundle from the future")
    if m.version <= min_version:
        raise NotNow(f"version {m.version} is not newer than the applied {min_version} "
                     "(a replayed or rolled-back bundle)")
    files = {name: bytes(content) for name, content in members.items()}
    selftest = {n.removeprefix("selftest/"): c for n, c in files.items()
                if n.startswith("selftest/")}
    return Bundle(m.provider, m.version, m.created.isoformat(), m.expires, policy, files,
                  selftest, hashlib.sha256(data).hexdigest())
